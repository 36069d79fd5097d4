/**
 * Opens the store a server is configured for: PostgreSQL when BERTH_DATABASE_URL is a
 * postgres:// URL, else SQLite in a file of the data directory (WAL, so readers never wait for
 * the writer). The drivers load only for the database chosen.
 */
import { chmodSync, closeSync, mkdirSync, openSync, statSync } from 'node:fs';
import path from 'node:path';
import { Kysely, PostgresDialect, SqliteDialect, type SqliteDatabase } from 'kysely';
import { BerthError } from '../domain/errors.js';
import type { Database } from './schema.js';
import { KyselyStore } from './kysely-store.js';
import { databaseCause } from './database-trouble.js';

export interface StoreLocation {
  /** postgres://… or postgresql://…; else SQLite. */
  databaseUrl?: string;
  /** The data directory, for SQLite's file (`berth.db`). */
  dataDir: string;
  /**
   * PostgreSQL: connections of this server process (BERTH_DATABASE_POOL_SIZE). Every waiting
   * request holds none; a lease, a report or a log batch holds one for one statement or a short
   * transaction. Plus the one listening connection of the wake-ups (see notifications.ts).
   */
  poolSize?: number;
  /**
   * PostgreSQL: a connection the pool held idle was lost (a database restart, an idle timeout of
   * a proxy): said here; the pool opens a new one on its next use. Default: one line on stderr.
   */
  onTrouble?: (message: string) => void;
}

export const DEFAULT_POOL_SIZE = 20;

export async function openStore(location: StoreLocation): Promise<KyselyStore> {
  const url = location.databaseUrl?.trim();
  if (url && /^postgres(ql)?:\/\//.test(url)) {
    const { default: pg } = await import('pg');
    const pool = new pg.Pool({
      connectionString: url,
      max: location.poolSize ?? DEFAULT_POOL_SIZE,
    });
    // Without a listener, an idle connection's error would end the process (an 'error' event).
    const trouble =
      location.onTrouble ?? ((message: string) => process.stderr.write(`berth: ${message}\n`));
    pool.on('error', (err) => {
      trouble(
        `lost an idle connection to the database at ${redact(url)} (${databaseCause(err)}); the next query opens a new one`,
      );
    });
    const store = new KyselyStore(
      new Kysely<Database>({ dialect: new PostgresDialect({ pool }) }),
      'postgres',
    );
    return store;
  }
  if (url) {
    throw new BerthError(
      'BERTH_USAGE',
      `BERTH_DATABASE_URL=${redact(url)} is not a postgres:// URL`,
      {
        hint: 'Use postgres://USER:PASSWORD@HOST:PORT/DATABASE, or unset it to use SQLite in the data directory.',
      },
    );
  }
  mkdirSync(location.dataDir, { recursive: true, mode: 0o700 });
  const file = path.join(location.dataDir, 'berth.db');
  // The database holds the runs' logs and the sealed secrets: berth's user alone reads it (SQLite
  // gives its -wal and -shm files the same mode). One made readable by others before is closed.
  closeSync(openSync(file, 'a', 0o600));
  for (const own of [file, `${file}-wal`, `${file}-shm`]) {
    const stat = statSync(own, { throwIfNoEntry: false });
    // Only berth's own files: one another user made is the operator's to set.
    if (stat && stat.uid === process.getuid?.() && (stat.mode & 0o077) !== 0) chmodSync(own, 0o600);
  }
  const { default: Sqlite } = await import('better-sqlite3');
  const database = new Sqlite(file);
  database.pragma('journal_mode = WAL');
  database.pragma('busy_timeout = 5000');
  database.pragma('foreign_keys = ON');
  return new KyselyStore(
    new Kysely<Database>({
      dialect: new SqliteDialect({ database: withStatementCache(database) }),
    }),
    'sqlite',
  );
}

/**
 * SQLite with its prepared statements kept (the most recent `size` of them): Kysely prepares
 * every query anew, which was a tenth of the server's CPU time while it took log batches. Safe
 * because better-sqlite3 runs a statement to its end synchronously, and the store never
 * streams rows (a statement being iterated could not be run again meanwhile).
 */
function withStatementCache(database: SqliteDatabase, size = 256): SqliteDatabase {
  const cache = new Map<string, ReturnType<SqliteDatabase['prepare']>>();
  return {
    close: () => database.close(),
    prepare: (sqlText) => {
      let statement = cache.get(sqlText);
      if (statement) {
        cache.delete(sqlText);
      } else {
        statement = database.prepare(sqlText);
        if (cache.size >= size) cache.delete(cache.keys().next().value as string);
      }
      cache.set(sqlText, statement);
      return statement;
    },
  };
}

/** A database URL without its password, for messages. */
export function redact(url: string): string {
  // Up to the last @: a password with an unencoded @ or / in it is hidden too (hiding more than
  // the password does no harm here).
  return url.replace(/(\/\/[^:/@]+:).*@/, '$1*****@');
}
