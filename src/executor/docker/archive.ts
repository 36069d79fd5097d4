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
  const stats: TreeStats = { files: 0, bytes: 0, skipped: [] };
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
          await addTree(pack, entry.sourceDir, entry.name, entry.owner, stats);
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

/** One node of a job directory as both deliveries (archive, host directory) copy it. */
export type TreeNode =
  | { kind: 'symlink'; name: string; target: string; mtime: Date }
  | { kind: 'directory'; name: string; mode: number; mtime: Date }
  | { kind: 'file'; name: string; source: string; size: number; mode: number; mtime: Date };

export interface TreeStats {
  files: number;
  bytes: number;
  skipped: string[];
}

/**
 * Walks a job directory depth-first, children in name order: symlinks as symlinks, directories
 * kept writable by their owner (0700 added), files readable and writable by it (0600 added);
 * sockets, devices and pipes are skipped and listed in `stats.skipped`. The directory itself may
 * be reached through a symlink (the user's choice).
 */
export async function walkJobDirectory(
  sourceDir: string,
  name: string,
  stats: TreeStats,
  visit: (node: TreeNode) => Promise<void>,
): Promise<void> {
  const root = await realpath(sourceDir).catch((err: unknown) => {
    throw unreadable(sourceDir, err);
  });
  await walk(root, name, stats, visit);
}

async function walk(
  source: string,
  name: string,
  stats: TreeStats,
  visit: (node: TreeNode) => Promise<void>,
): Promise<void> {
  const info = await statOrExplain(source);
  const mode = Number(info.mode);
  if (info.isSymbolicLink()) {
    await visit({ kind: 'symlink', name, target: await readlink(source), mtime: info.mtime });
    return;
  }
  if (info.isDirectory()) {
    await visit({ kind: 'directory', name, mode: (mode & 0o7777) | 0o700, mtime: info.mtime });
    let children: string[];
    try {
      children = (await readdir(source)).sort();
    } catch (err) {
      throw unreadable(source, err);
    }
    for (const child of children) {
      await walk(path.join(source, child), `${name}/${child}`, stats, visit);
    }
    return;
  }
  if (!info.isFile()) {
    stats.skipped.push(source);
    return;
  }
  stats.files += 1;
  stats.bytes += Number(info.size);
  const size = Number(info.size);
  await visit({
    kind: 'file',
    name,
    source,
    size,
    mode: (mode & 0o7777) | 0o600,
    mtime: info.mtime,
  });
}

function addTree(
  pack: tar.Pack,
  sourceDir: string,
  name: string,
  owner: ArchiveOwner,
  stats: TreeStats,
): Promise<void> {
  return walkJobDirectory(sourceDir, name, stats, async (node) => {
    const common = { ...ids(owner), mtime: node.mtime };
    if (node.kind === 'symlink') {
      await addEntry(pack, {
        name: node.name,
        type: 'symlink',
        linkname: node.target,
        mode: 0o777,
        ...common,
      });
    } else if (node.kind === 'directory') {
      await addEntry(pack, {
        name: `${node.name}/`,
        type: 'directory',
        mode: node.mode,
        ...common,
      });
    } else {
      await addFile(pack, node.source, {
        name: node.name,
        type: 'file',
        size: node.size,
        mode: node.mode,
        ...common,
      });
    }
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

export function unreadable(file: string, err: unknown): BerthError {
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

/**
 * From a tar stream: the names of its directories, and the contents of the regular files that
 * `wanted` picks by name (at most `limit` bytes each). A wanted name that is not a regular file
 * (a link, a hard link) or is larger is named in `refused`. Everything else is read past.
 */
export async function readArchiveFiles(
  stream: Readable,
  wanted: (name: string) => boolean,
  limit: number,
): Promise<{ directories: string[]; files: Map<string, Buffer>; refused: string[] }> {
  const extract = tar.extract();
  const directories: string[] = [];
  const files = new Map<string, Buffer>();
  const refused: string[] = [];
  const reading = (async () => {
    for await (const entry of extract) {
      const { name, type, size } = entry.header;
      if (type === 'directory') directories.push(name);
      if (!wanted(name)) {
        entry.resume();
        continue;
      }
      if (type !== 'file' || (size ?? 0) > limit) {
        refused.push(name);
        entry.resume();
        continue;
      }
      const chunks: Buffer[] = [];
      for await (const chunk of entry) chunks.push(chunk as Buffer);
      files.set(name, Buffer.concat(chunks));
    }
  })();
  stream.on('error', (err) => extract.destroy(err));
  stream.pipe(extract);
  await reading;
  return { directories, files, refused };
}

/** The first entry's header of a tar stream (a directory's own entry, for GET …/archive). */
export async function readFirstHeader(
  stream: Readable,
): Promise<{ name: string; type: string; mode: number; uid: number; gid: number } | null> {
  const extract = tar.extract();
  stream.on('error', (err) => extract.destroy(err));
  stream.pipe(extract);
  try {
    for await (const entry of extract) {
      const { name, type, mode, uid, gid } = entry.header;
      return { name, type: type ?? 'file', mode: mode ?? 0, uid: uid ?? -1, gid: gid ?? -1 };
    }
    return null;
  } finally {
    stream.unpipe(extract);
    stream.destroy();
    extract.destroy();
  }
}
