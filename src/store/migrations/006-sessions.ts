/**
 * 006: browser sessions of the web page, stored as the SHA-256 of their cookie's value; and where
 * a run's runner image was chosen (the web page shows it).
 */
import type { Kysely } from 'kysely';

export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('sessions')
    .addColumn('token_hash', 'text', (c) => c.primaryKey())
    .addColumn('caller_kind', 'text', (c) => c.notNull())
    .addColumn('caller_id', 'text', (c) => c.notNull())
    .addColumn('created_at', 'text', (c) => c.notNull())
    .addColumn('expires_at', 'text', (c) => c.notNull())
    .execute();
  await db.schema.alterTable('runs').addColumn('image_choice', 'text').execute();
  await db.schema.createIndex('sessions_expiry').on('sessions').columns(['expires_at']).execute();
}
