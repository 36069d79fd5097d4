/**
 * Migrations: numbered modules in ./migrations, listed here in order, applied once each and never
 * changed after release. On PostgreSQL several servers may start at once: Kysely's migrator takes
 * a lock on its own table while it works.
 */
import { Migrator, type Kysely, type Migration, type MigrationProvider } from 'kysely';
import * as initial from './migrations/001-initial.js';
import * as savedWorkspaces from './migrations/002-saved-workspaces.js';
import * as logSizes from './migrations/003-log-sizes.js';
import * as dispatch from './migrations/004-dispatch.js';
import * as sessions from './migrations/006-sessions.js';
import * as serverSettings from './migrations/007-server-settings.js';
import * as workerLeft from './migrations/008-worker-left.js';
import * as tokenNames from './migrations/009-token-names.js';
import * as stopRequests from './migrations/010-stop-requests.js';

const MIGRATIONS: Record<string, Migration> = {
  '001-initial': initial,
  '002-saved-workspaces': savedWorkspaces,
  '003-log-sizes': logSizes,
  '004-dispatch': dispatch,
  '006-sessions': sessions,
  '007-server-settings': serverSettings,
  '008-worker-left': workerLeft,
  '009-token-names': tokenNames,
  '010-stop-requests': stopRequests,
};

const provider: MigrationProvider = {
  getMigrations: () => Promise.resolve(MIGRATIONS),
};

/**
 * Applies the migrations not yet applied, all of them or (`upTo`, for a test of one migration on
 * a database as an earlier berth left it) those up to and including the one named.
 */
export async function migrateToLatest<T>(db: Kysely<T>, upTo?: string): Promise<void> {
  const migrator = new Migrator({ db, provider });
  const { error, results } =
    upTo === undefined ? await migrator.migrateToLatest() : await migrator.migrateTo(upTo);
  if (error) {
    const failed = results?.find((r) => r.status === 'Error')?.migrationName;
    // Before any migration ran (no connection, no such database): the driver's error as it is.
    if (!failed && error instanceof Error) throw error;
    throw new Error(
      `database migration ${failed ?? 'before the first'} failed: ${(error as Error).message}`,
      {
        cause: error,
      },
    );
  }
}
