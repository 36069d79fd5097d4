/**
 * 002: what a tracked run waiting for confirmation needs on the server. The workspace itself is
 * a blob file (server/blob-store.ts); its run row keeps the seal that opens it, sealed again with
 * the server's secrets key, and the id of the image the plan ran in (the apply runs in the same).
 */
import type { Kysely } from 'kysely';

export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable('runs').addColumn('workspace_seal', 'text').execute();
  await db.schema.alterTable('runs').addColumn('image_id', 'text').execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable('runs').dropColumn('image_id').execute();
  await db.schema.alterTable('runs').dropColumn('workspace_seal').execute();
}
