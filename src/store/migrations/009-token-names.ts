/**
 * 009: a token's name is unique (`api_tokens_name`). The API refused a second token of a name
 * already, by a look before the insert; two requests at once could both pass it. Names that a
 * database holds twice from before are made unique first: the server's own admin token (id
 * `admin`) keeps its name, then the oldest token of each name; the others get their id appended,
 * `NAME (ID)`, which `berth token list` shows and `berth token revoke` takes as well as the id.
 * The name `admin` is the server's own admin token's (a start recreates that token when it is
 * gone, and `--new-admin-token` replaces it): another token holding it is renamed the same way.
 */
import { sql, type Kysely } from 'kysely';

export async function up(db: Kysely<unknown>): Promise<void> {
  const { rows } = await sql<{ id: string; name: string }>`
    select id, name from api_tokens
    order by case when id = 'admin' then 0 else 1 end, created_at, id`.execute(db);
  const taken = new Set<string>();
  for (const row of rows) {
    if (!taken.has(row.name) && (row.name !== 'admin' || row.id === 'admin')) {
      taken.add(row.name);
      continue;
    }
    const renamed = `${row.name} (${row.id})`;
    taken.add(renamed);
    await sql`update api_tokens set name = ${renamed} where id = ${row.id}`.execute(db);
  }
  await db.schema.createIndex('api_tokens_name').on('api_tokens').column('name').unique().execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropIndex('api_tokens_name').execute();
}
