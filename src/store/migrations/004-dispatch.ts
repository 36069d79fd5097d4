/**
 * 004: cheaper dispatch. `runs.state_seq` is the sequence number of the run's last state record,
 * kept on the run row so that the statement that changes a run's state also numbers its history
 * entry (the row lock it holds makes the number safe; no `max(seq)` over the history, which a
 * single-statement lease on PostgreSQL could not read safely). `runs_dispatch` is a partial index
 * of the dispatchable runs only, oldest first per pool: a lease finds the next run without
 * walking past finished ones.
 *
 * (Helper-numbered 004 so that renumbering it is only a rename of this file and its key in
 * migrate.ts.)
 */
import { sql, type Kysely } from 'kysely';

export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .alterTable('runs')
    .addColumn('state_seq', 'integer', (c) => c.notNull().defaultTo(0))
    .execute();
  await sql`update runs set state_seq = coalesce((select max(s.seq) from run_states s where s.run_id = runs.id), 0)`.execute(
    db,
  );
  await db.schema
    .createIndex('runs_dispatch')
    .on('runs')
    .columns(['pool_id', 'id'])
    .where(sql.ref('state'), 'in', ['READY', 'CONFIRMED'])
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropIndex('runs_dispatch').execute();
  await db.schema.alterTable('runs').dropColumn('state_seq').execute();
}
