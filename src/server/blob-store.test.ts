/**
 * The blob store on a real directory: a workspace is written whole or not at all (a broken or
 * oversized upload leaves neither a file nor a trace of itself beside the earlier blob), and the
 * sweep removes what no run needs and broken uploads left long ago, nothing else.
 */
import {
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { openStore } from '../store/open-store.js';
import type { Store } from '../store/store.js';
import { BlobStore, checkBlobStore } from './blob-store.js';

const RUN = '01JDZQ4V7D3W8M5X2K9T6R1B0C';
const OTHER = '01JDZQ4V7D3W8M5X2K9T6R1B0D';
const dirs: string[] = [];

async function store(limit = 1024): Promise<BlobStore> {
  const dir = mkdtempSync(path.join(tmpdir(), 'berth-blobs-'));
  dirs.push(dir);
  return BlobStore.open(path.join(dir, 'blobs'), limit);
}

afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

const tooLarge = (bytes: number): Error => new Error(`too large: ${bytes}`);

describe('the blob store', () => {
  it('stores a workspace and reads it back', async () => {
    const blobs = await store();
    expect(
      await blobs.put(RUN, Readable.from([Buffer.from('abc'), Buffer.from('def')]), tooLarge),
    ).toBe(6);
    const got = await blobs.get(RUN);
    expect(got?.bytes).toBe(6);
    const chunks: Buffer[] = [];
    for await (const chunk of got?.stream ?? []) chunks.push(chunk as Buffer);
    expect(Buffer.concat(chunks).toString()).toBe('abcdef');
    expect(await blobs.get(OTHER)).toBeNull();
  });

  it('keeps the earlier blob whole when an upload breaks or grows past the limit', async () => {
    const blobs = await store(8);
    await blobs.put(RUN, Readable.from([Buffer.from('first')]), tooLarge);
    await expect(
      blobs.put(RUN, Readable.from([Buffer.from('12345'), Buffer.from('6789')]), tooLarge),
    ).rejects.toThrow('too large: 9');
    const broken = new Readable({
      read() {
        this.push(Buffer.from('ab'));
        this.destroy(new Error('connection reset'));
      },
    });
    await expect(blobs.put(RUN, broken, tooLarge)).rejects.toThrow('connection reset');
    expect(readdirSync(blobs.dir)).toEqual([`${RUN}.workspace`]);
    expect(readFileSync(path.join(blobs.dir, `${RUN}.workspace`), 'utf8')).toBe('first');
  });

  it('sweeps blobs no run needs and uploads broken off long ago, and nothing else', async () => {
    const blobs = await store();
    await blobs.put(RUN, Readable.from([Buffer.from('kept')]), tooLarge);
    await blobs.put(OTHER, Readable.from([Buffer.from('ended')]), tooLarge);
    const stale = path.join(blobs.dir, `${RUN}.workspace.upload-0a0b0c0d0e0f`);
    const fresh = path.join(blobs.dir, `${RUN}.workspace.upload-1a1b1c1d1e1f`);
    writeFileSync(stale, 'half');
    writeFileSync(fresh, 'half');
    const now = new Date();
    const longAgo = new Date(now.getTime() - 7 * 60 * 60_000);
    utimesSync(stale, longAgo, longAgo);
    const removed = await blobs.sweep((id) => Promise.resolve(id === RUN), now);
    expect(removed.sort()).toEqual([path.basename(stale), `${OTHER}.workspace`].sort());
    expect(existsSync(path.join(blobs.dir, `${RUN}.workspace`))).toBe(true);
    expect(existsSync(fresh)).toBe(true);
    await blobs.delete(RUN);
    expect(await blobs.has(RUN)).toBe(false);
  });
});

/** A fresh SQLite store for `use`, closed after. */
async function withDatabase(use: (db: Store) => Promise<void>): Promise<void> {
  const dataDir = mkdtempSync(path.join(tmpdir(), 'berth-blobs-db-'));
  dirs.push(dataDir);
  const db = await openStore({ dataDir });
  try {
    await db.migrate();
    await use(db);
  } finally {
    await db.close();
  }
}

describe('the blob store every server of a database shares', () => {
  it('marks the first directory, records it, takes it again, and refuses any other', () =>
    withDatabase(async (db) => {
      const first = await store();
      await checkBlobStore(db, first);
      const id = readFileSync(path.join(first.dir, '.berth-blob-store'), 'utf8').trim();
      expect(id).toMatch(/^[0-9a-f]{24}$/);
      expect(await db.readSetting('blob_store_id')).toBe(id);
      await checkBlobStore(db, first);
      // The mark is no blob: the sweep leaves it.
      expect(await first.sweep(() => Promise.resolve(false), new Date())).toEqual([]);

      const unmarked = await store();
      await expect(checkBlobStore(db, unmarked)).rejects.toThrow(
        `the blob directory ${unmarked.dir} is not the one this database's servers keep saved workspaces in: it has no .berth-blob-store, and the database's store is marked ${id}`,
      );
      // Refused, it is left unmarked: a start with the right directory is not made harder.
      expect(readdirSync(unmarked.dir)).toEqual([]);
      const other = await store();
      writeFileSync(path.join(other.dir, '.berth-blob-store'), 'feedfacefeedfacefeedface\n');
      await expect(checkBlobStore(db, other)).rejects.toThrow(
        expect.objectContaining({
          code: 'BERTH_BLOB_STORE_MISMATCH',
          message: `the blob directory ${other.dir} is not the one this database's servers keep saved workspaces in: it is marked feedfacefeedfacefeedface, the database's store ${id}`,
        }),
      );
    }));

  it('takes a marked directory on a database that has recorded none yet', () =>
    withDatabase(async (db) => {
      const blobs = await store();
      writeFileSync(path.join(blobs.dir, '.berth-blob-store'), 'abcabcabcabcabcabcabcabc\n');
      await checkBlobStore(db, blobs);
      expect(await db.readSetting('blob_store_id')).toBe('abcabcabcabcabcabcabcabc');
    }));
});
