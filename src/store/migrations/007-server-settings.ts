/**
 * 007: settings every server on one database shares, by name. The first is the secrets key check
 * (server/secrets.ts): a known text sealed with the key the database's sealed values need, so a
 * server started with another key refuses to start instead of failing runs later.
 */
import type { Kysely } from 'kysely';

export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('server_settings')
    .addColumn('name', 'text', (c) => c.primaryKey())
    .addColumn('value', 'text', (c) => c.notNull())
    .execute();
}
