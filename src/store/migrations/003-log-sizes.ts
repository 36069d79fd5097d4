/**
 * 003: how many bytes of each run's log are stored, and whether the server stopped storing more
 * (the log reached the server's limit). Kept beside the chunks, not summed from them, so that
 * appending a batch reads one row.
 */
import type { Kysely } from 'kysely';

export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('log_sizes')
    .addColumn('run_id', 'text', (c) => c.primaryKey().references('runs.id').onDelete('cascade'))
    .addColumn('bytes', 'integer', (c) => c.notNull())
    .addColumn('full', 'integer', (c) => c.notNull().defaultTo(0))
    .execute();
}
