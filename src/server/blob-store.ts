/**
 * The server's blob store: the saved workspaces of tracked runs waiting for confirmation, one
 * file per run in a directory (the data directory's `blobs/` by default; several servers on one
 * PostgreSQL share one directory, e.g. a network file system).
 *
 * Each file is the workspace as the worker sealed it (AES-256-GCM). What opens it (the seal) is
 * not here: it is in the run's row, sealed again with the server's secrets key (see
 * docs/security.md), so the directory alone, a backup of it or a copy, reads as noise.
 *
 * Writes are streamed to a temporary file in the same directory and renamed into place, so a
 * reader never sees half a workspace and an upload that breaks leaves only a temporary file,
 * which `sweep` removes. Sizes are checked while the bytes stream, never after.
 */
import { randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, readFile, readdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { BerthError } from '../domain/errors.js';

const SUFFIX = '.workspace';
/** The file naming the store (see checkBlobStore); not a blob, so the sweep leaves it. */
const MARK_FILE = '.berth-blob-store';
/** The setting that holds the id of the blob store every server of the database uses. */
const BLOB_STORE_SETTING = 'blob_store_id';
const TEMP_MARK = '.upload-';
/** An upload older than this is a broken one (the largest workspace streams far faster). */
const STALE_UPLOAD_MS = 6 * 60 * 60_000;

export class BlobStore {
  private constructor(
    readonly dir: string,
    /** The most one blob may be, in bytes (the saved-workspace limit). */
    readonly limitBytes: number,
  ) {}

  static async open(dir: string, limitBytes: number): Promise<BlobStore> {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    return new BlobStore(dir, limitBytes);
  }

  /** The file of a run's blob; run ids are ULIDs (checked by the routes' schemas). */
  private file(runId: string): string {
    if (!/^[0-9A-Z]{26}$/.test(runId)) throw new Error(`not a run id: ${runId}`);
    return path.join(this.dir, `${runId}${SUFFIX}`);
  }

  /**
   * Stores `body` as the run's blob (replacing an earlier one whole); returns its size. More
   * than the limit fails with `tooLarge(bytes)` and keeps nothing.
   */
  async put(runId: string, body: Readable, tooLarge: (bytes: number) => Error): Promise<number> {
    const target = this.file(runId);
    const temp = `${target}${TEMP_MARK}${randomBytes(6).toString('hex')}`;
    let seen = 0;
    const limit = this.limitBytes;
    const counted = new Transform({
      transform(chunk: Buffer, _encoding, done) {
        seen += chunk.length;
        if (seen > limit) done(tooLarge(seen));
        else done(null, chunk);
      },
    });
    try {
      await pipeline(body, counted, createWriteStream(temp, { mode: 0o600, flags: 'wx' }));
      await rename(temp, target);
    } catch (err) {
      await rm(temp, { force: true });
      throw err;
    }
    return seen;
  }

  /** A stream of the run's blob and its size; null when there is none. */
  async get(runId: string): Promise<{ stream: Readable; bytes: number } | null> {
    const file = this.file(runId);
    try {
      const { size } = await stat(file);
      return { stream: createReadStream(file), bytes: size };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw err;
    }
  }

  async has(runId: string): Promise<boolean> {
    try {
      await stat(this.file(runId));
      return true;
    } catch {
      return false;
    }
  }

  /** The id written in this directory's mark file, or null when it has none. */
  async readMark(): Promise<string | null> {
    try {
      return (await readFile(path.join(this.dir, MARK_FILE), 'utf8')).trim() || null;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw err;
    }
  }

  /** Marks this directory with a new id (or, when a server beside this one did first, its id). */
  async mark(): Promise<string> {
    const id = randomBytes(12).toString('hex');
    try {
      await writeFile(path.join(this.dir, MARK_FILE), `${id}\n`, { mode: 0o600, flag: 'wx' });
      return id;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      return (await this.readMark()) ?? id;
    }
  }

  async delete(runId: string): Promise<void> {
    await rm(this.file(runId), { force: true });
  }

  /**
   * Removes what no run needs any more: blobs of runs `needed` says no to (ended, deleted), and
   * uploads that broke long ago. Returns the names removed.
   */
  async sweep(needed: (runId: string) => Promise<boolean>, now: Date): Promise<string[]> {
    const removed: string[] = [];
    for (const name of await readdir(this.dir)) {
      const file = path.join(this.dir, name);
      if (name.includes(TEMP_MARK)) {
        const { mtimeMs } = await stat(file).catch(() => ({ mtimeMs: now.getTime() }));
        if (now.getTime() - mtimeMs < STALE_UPLOAD_MS) continue;
      } else if (name.endsWith(SUFFIX)) {
        if (await needed(name.slice(0, -SUFFIX.length))) continue;
      } else {
        continue;
      }
      await rm(file, { force: true });
      removed.push(name);
    }
    return removed;
  }
}

/** The database's settings, as checkBlobStore needs them. */
export interface BlobStoreSettings {
  readSetting(name: string): Promise<string | null>;
  claimSetting(name: string, value: string): Promise<string>;
}

/**
 * Makes sure this server keeps saved workspaces where the database's other servers do, before it
 * serves anything. Two servers on one PostgreSQL, each with a directory of its own, start fine
 * and then fail every apply whose plan was uploaded through the other one. The first server marks
 * its directory with an id and records the id in the database; every later start must find that
 * id in its directory.
 */
export async function checkBlobStore(settings: BlobStoreSettings, blobs: BlobStore): Promise<void> {
  const recorded = await settings.readSetting(BLOB_STORE_SETTING);
  const marked = await blobs.readMark();
  if (recorded !== null && marked === recorded) return;
  if (recorded === null) {
    const mine = marked ?? (await blobs.mark());
    const claimed = await settings.claimSetting(BLOB_STORE_SETTING, mine);
    if (claimed === mine) return;
    throw blobStoreMismatch(blobs.dir, claimed, mine);
  }
  throw blobStoreMismatch(blobs.dir, recorded, marked);
}

function blobStoreMismatch(dir: string, recorded: string, marked: string | null): BerthError {
  const mark = path.join(dir, MARK_FILE);
  return new BerthError(
    'BERTH_BLOB_STORE_MISMATCH',
    marked === null
      ? `the blob directory ${dir} is not the one this database's servers keep saved workspaces in: it has no ${MARK_FILE}, and the database's store is marked ${recorded}`
      : `the blob directory ${dir} is not the one this database's servers keep saved workspaces in: it is marked ${marked}, the database's store ${recorded}`,
    {
      hint: `Every server on one database needs the same blob directory (a shared volume): set BERTH_BLOB_DIR to the directory whose ${MARK_FILE} holds ${recorded}. If ${dir} is that store, emptied or moved on purpose: echo ${recorded} > ${mark}`,
    },
  );
}
