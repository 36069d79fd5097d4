/**
 * 008: when a worker said it leaves (a clean exit, `POST /worker/deregister`): the worker list
 * shows it OFFLINE at once rather than IDLE until its heartbeat grows old. A new registration or
 * heartbeat clears it.
 */
import type { Kysely } from 'kysely';

export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable('workers').addColumn('left_at', 'text').execute();
}
