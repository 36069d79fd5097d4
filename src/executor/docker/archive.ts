/**
 * Tar archives for the Engine API's archive endpoints: the workspace and berth's scripts go into
 * the container as one archive whose headers carry the ownership (the engine keeps header
 * ownership when it extracts), so the job's files belong to UID 1983 without any chown in the
 * container and without root on the host. The user's directory is only read.
 */
import { createReadStream } from 'node:fs';
import type { Stats } from 'node:fs';
import { lstat, readdir, readlink, realpath } from 'node:fs/promises';
import path from 'node:path';
import tar from 'tar-stream';
import { Readable } from 'node:stream';
import { BerthError } from '../../domain/errors.js';

export interface ArchiveOwner {
  uid: number;
  gid: number;
}

export type ArchiveEntry =
  | { kind: 'directory'; name: string; mode: number; owner: ArchiveOwner }
  | { kind: 'file'; name: string; mode: number; owner: ArchiveOwner; content: string | Buffer }
  | { kind: 'tree'; name: string; sourceDir: string; owner: ArchiveOwner }
  | { kind: 'hostFile'; name: string; sourceFile: string; mode: number; owner: ArchiveOwner };

export interface ArchiveResult {
  stream: Readable;
  /** Settles when every entry has been written (rejects on an unreadable source file). */
  done: Promise<{ files: number; bytes: number; skipped: string[] }>;
}

/**
 * Streams a tar archive of `entries`. Names are relative to the extraction root (no leading
 * slash). Trees are walked depth-first; sockets and devices are skipped and reported.
 */
export function createArchive(entries: readonly ArchiveEntry[]): ArchiveResult {
  const pack = tar.pack();
  const stats = { files: 0, bytes: 0, skipped: [] as string[] };
  const done = (async () => {
    try {
      for (const entry of entries) {
        if (entry.kind === 'directory') {
          await addEntry(pack, {
            name: entry.name,
            type: 'directory',
            mode: entry.mode,
            ...ids(entry.owner),
          });
        } else if (entry.kind === 'file') {
          const content = Buffer.from(entry.content);
          await addEntry(
            pack,
            {
              name: entry.name,
              type: 'file',
              mode: entry.mode,
              size: content.length,
              ...ids(entry.owner),
            },
            content,
          );
        } else if (entry.kind === 'hostFile') {
          const info = await statOrExplain(entry.sourceFile);
          await addFile(pack, entry.sourceFile, {
            name: entry.name,
            type: 'file',
            size: Number(info.size),
            mode: entry.mode,
            mtime: info.mtime,
            ...ids(entry.owner),
          });
        } else {
          // The job directory may be reached through a symlink (the user's choice); what is
          // below it is copied as it is, symlinks as symlinks.
          const root = await realpath(entry.sourceDir).catch((err: unknown) => {
            throw unreadable(entry.sourceDir, err);
          });
          await addTree(pack, root, entry.name, entry.owner, stats);
        }
      }
      pack.finalize();
      return stats;
    } catch (err) {
      pack.destroy(err instanceof Error ? err : new Error(String(err)));
      throw err;
    }
  })();
  // The caller may stop reading early (the upload failed); don't let that become unhandled.
  done.catch(() => undefined);
  // tar-stream's streams are streamx streams; hand the engine client a plain Node stream.
  return { stream: Readable.from(pack, { objectMode: false }), done };
}

function ids(owner: ArchiveOwner): { uid: number; gid: number } {
  return { uid: owner.uid, gid: owner.gid };
}

function addEntry(
  pack: tar.Pack,
  header: Partial<tar.Header> & { name: string },
  content?: Buffer,
): Promise<void> {
  return new Promise((resolve, reject) => {
    pack.entry(header, content ?? Buffer.alloc(0), (err) => (err ? reject(err) : resolve()));
  });
}

async function addTree(
  pack: tar.Pack,
  sourceDir: string,
  name: string,
  owner: ArchiveOwner,
  stats: { files: number; bytes: number; skipped: string[] },
): Promise<void> {
  const info = await statOrExplain(sourceDir);
  const mode = Number(info.mode);
  const common = { ...ids(owner), mtime: info.mtime };
  if (info.isSymbolicLink()) {
    const target = await readlink(sourceDir);
    await addEntry(pack, { name, type: 'symlink', linkname: target, mode: 0o777, ...common });
    return;
  }
  if (info.isDirectory()) {
    // Directories stay writable by the job's owner whatever their mode was on the host.
    await addEntry(pack, {
      name: `${name}/`,
      type: 'directory',
      mode: (mode & 0o7777) | 0o700,
      ...common,
    });
    let children: string[];
    try {
      children = (await readdir(sourceDir)).sort();
    } catch (err) {
      throw unreadable(sourceDir, err);
    }
    for (const child of children) {
      await addTree(pack, path.join(sourceDir, child), `${name}/${child}`, owner, stats);
    }
    return;
  }
  if (!info.isFile()) {
    stats.skipped.push(sourceDir);
    return;
  }
  stats.files += 1;
  stats.bytes += Number(info.size);
  await addFile(pack, sourceDir, {
    name,
    type: 'file',
    size: Number(info.size),
    mode: (mode & 0o7777) | 0o600,
    ...common,
  });
}

/** Streams one host file into the archive under `header`. */
async function addFile(
  pack: tar.Pack,
  source: string,
  header: Partial<tar.Header> & { name: string },
): Promise<void> {
  const entry = pack.entry(header);
  const written = new Promise<void>((resolve, reject) => {
    entry.on('finish', resolve);
    entry.on('error', reject);
  });
  try {
    for await (const chunk of createReadStream(source)) {
      if (!entry.write(chunk as Buffer))
        await new Promise<void>((resolve) => entry.once('drain', () => resolve()));
    }
    (entry as unknown as { end(): void }).end();
  } catch (err) {
    entry.destroy(err instanceof Error ? err : new Error(String(err)));
    throw unreadable(source, err);
  }
  await written;
}

async function statOrExplain(file: string): Promise<Stats> {
  try {
    return await lstat(file);
  } catch (err) {
    throw unreadable(file, err);
  }
}

function unreadable(file: string, err: unknown): BerthError {
  const code = (err as NodeJS.ErrnoException).code;
  return new BerthError(
    'BERTH_WORKSPACE_UNREADABLE',
    `cannot read ${file} to copy it into the job's workspace (${code ?? String(err)})`,
    {
      cause: err,
      hint: 'Make every file under the job directory readable by the user running berth, or remove the ones the job does not need.',
    },
  );
}

/**
 * Reads one regular file out of a tar stream (as GET /containers/{id}/archive returns), keeping
 * at most `maxBytes` + 1 bytes: a longer result tells the caller the file is larger than its limit
 * without holding more of it.
 */
export async function readFileFromArchive(
  stream: Readable,
  maxBytes: number,
): Promise<Buffer | null> {
  const extract = tar.extract();
  let found: Buffer | null = null;
  const reading = (async () => {
    for await (const entry of extract) {
      if (found === null && entry.header.type === 'file') {
        const chunks: Buffer[] = [];
        let size = 0;
        for await (const chunk of entry) {
          const room = maxBytes + 1 - size;
          if (room > 0) {
            const part = chunk as Buffer;
            chunks.push(part.length > room ? part.subarray(0, room) : part);
            size += Math.min(part.length, room);
          }
        }
        found = Buffer.concat(chunks);
      } else {
        entry.resume();
      }
    }
  })();
  stream.on('error', (err) => extract.destroy(err));
  stream.pipe(extract);
  await reading;
  return found;
}

/** Lists a tar stream's entries (names, kinds and modes), reading no content. */
export async function listArchive(
  stream: Readable,
): Promise<{ name: string; kind: 'file' | 'directory' | 'symlink' | 'other'; mode: number }[]> {
  const extract = tar.extract();
  const entries: {
    name: string;
    kind: 'file' | 'directory' | 'symlink' | 'other';
    mode: number;
  }[] = [];
  const reading = (async () => {
    for await (const entry of extract) {
      const type = entry.header.type;
      entries.push({
        name: entry.header.name,
        kind: type === 'file' || type === 'directory' || type === 'symlink' ? type : 'other',
        mode: entry.header.mode ?? 0,
      });
      entry.resume();
    }
  })();
  stream.on('error', (err) => extract.destroy(err));
  stream.pipe(extract);
  await reading;
  return entries;
}
