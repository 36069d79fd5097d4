/**
 * 010: a stop asked of a run that a worker holds (a cancel while its job runs). The run keeps its
 * state, its lease and its stack's lock until the worker says the job has ended; the reason and
 * the time are kept with the run, and the run view shows it as stopping.
 */
import type { Kysely } from 'kysely';

export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable('runs').addColumn('stop_reason', 'text').execute();
  await db.schema.alterTable('runs').addColumn('stop_requested_at', 'text').execute();
}
