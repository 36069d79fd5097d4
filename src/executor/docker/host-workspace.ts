/**
 * The workspace as a directory on the engine's own machine, bind-mounted into the job's container
 * (`BERTH_WORKSPACE=mount`): berth writes the files the archive would carry straight to disk, with
 * the same modes and owners, and the engine only mounts them. Docker 20.10 unpacks every archive
 * copy by re-executing its own 100 MB binary (about 60 ms of CPU a job); a mount costs nothing.
 *
 * Only berth writes here, and only before the job starts or where the job cannot write (the
 * control directory is root's and mounted read-only), so no path is followed through a link the
 * job made. Removal never follows links either. Setting owners needs root.
 */
import { constants, type Dirent } from 'node:fs';
import { spawn } from 'node:child_process';
import {
  chmod,
  copyFile,
  lchown,
  lstat,
  lutimes,
  mkdir,
  mkdtemp,
  open,
  readFile,
  readdir,
  realpath,
  rm,
  stat,
  symlink,
  utimes,
  writeFile,
} from 'node:fs/promises';
import path from 'node:path';
import { BerthError } from '../../domain/errors.js';
import { CONTROL_DIR, JOB_GID, JOB_UID, WORKSPACE_DIR } from '../executor.js';
import { type ArchiveEntry, type ArchiveOwner, unreadable, walkJobDirectory } from './archive.js';

/** A directory of the container that is mounted from the job's host directory. */
export interface HostPart {
  /** Its path inside the host directory (the container path without the leading slash). */
  inside: string;
  target: string;
  readOnly: boolean;
}

/**
 * What is mounted: the workspace (the job's), the control directory (root's, read-only), and the
 * job's HOME when the image has no directory there (a bind mount would hide the image's own).
 */
export function hostParts(home: string | null): HostPart[] {
  return [
    { inside: WORKSPACE_DIR.slice(1), target: WORKSPACE_DIR, readOnly: false },
    { inside: CONTROL_DIR.slice(1), target: CONTROL_DIR, readOnly: true },
    ...(home === null ? [] : [{ inside: home.slice(1), target: home, readOnly: false }]),
  ];
}

/** Whether an archive entry's name lies in a part that is mounted from the host directory. */
export function isHostPart(parts: readonly HostPart[], name: string): boolean {
  return parts.some(
    ({ inside }) => name === inside || name === `${inside}/` || name.startsWith(`${inside}/`),
  );
}

/** Creates the job's host directory (root's, 0700) and the mount sources in it. */
export async function createHostDir(dir: string, parts: readonly HostPart[]): Promise<void> {
  try {
    await mkdir(path.dirname(dir), { recursive: true, mode: 0o700 });
    await mkdir(dir, { mode: 0o700 });
    for (const { inside } of parts) await ensureDir(within(dir, inside), dir);
  } catch (err) {
    throw notWritten(dir, err);
  }
}

/** `name` (relative, as an archive names it) under `dir`; never a path outside it. */
function within(dir: string, name: string): string {
  const at = path.resolve(dir, name);
  if (!at.startsWith(`${dir}/`)) throw new Error(`${name} is not a path inside ${dir}`);
  return at;
}

/**
 * Removes a job's host directory and everything the job left in it, once no process of the job
 * is left (its container is gone): never following a link. A tree Node's path-based removal
 * cannot take (nested deeper than PATH_MAX, which a job can make) goes to `rm -rf`, which works
 * from directory handles.
 */
export async function removeHostDir(dir: string): Promise<void> {
  try {
    await rm(dir, { recursive: true, force: true, maxRetries: 3 });
  } catch {
    await new Promise<void>((resolve, reject) => {
      const child = spawn('rm', ['-rf', '--', dir], {
        stdio: ['ignore', 'ignore', 'pipe'],
      });
      let stderr = '';
      child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
      child.on('error', reject);
      child.on('close', (code) =>
        code === 0 ? resolve() : reject(new Error(`rm -rf ${dir}: ${stderr.trim()}`)),
      );
    });
  }
}

/**
 * Writes `entries` (as an archive would carry them: names relative to the container's root) under
 * `dir`. `onBytes` hears the size of each file written.
 */
export async function writeHostEntries(
  dir: string,
  entries: readonly ArchiveEntry[],
  onBytes?: (bytes: number) => void,
): Promise<void> {
  const at = (name: string): string => within(dir, name.replace(/\/+$/, ''));
  try {
    for (const entry of entries) {
      if (entry.kind === 'directory') {
        await ensureDir(at(entry.name), dir);
        await own(at(entry.name), entry.mode, entry.owner);
      } else if (entry.kind === 'file') {
        await ensureDir(path.dirname(at(entry.name)), dir);
        await writeFile(at(entry.name), entry.content, { mode: 0o600 });
        await own(at(entry.name), entry.mode, entry.owner);
        onBytes?.(Buffer.byteLength(entry.content));
      } else if (entry.kind === 'hostFile') {
        await ensureDir(path.dirname(at(entry.name)), dir);
        await copyHostFile(entry.sourceFile, at(entry.name));
        await own(at(entry.name), entry.mode, entry.owner);
        onBytes?.((await stat(entry.sourceFile)).size);
      } else {
        await writeTree(entry.sourceDir, at(entry.name), entry.owner, dir, onBytes);
      }
    }
  } catch (err) {
    throw notWritten(dir, err);
  }
}

async function writeTree(
  sourceDir: string,
  target: string,
  owner: ArchiveOwner,
  base: string,
  onBytes?: (bytes: number) => void,
): Promise<void> {
  // A directory's time is set once its children are in (each of them changes it).
  const directories: { at: string; mtime: Date }[] = [];
  await ensureDir(path.dirname(target), base);
  await walkJobDirectory(sourceDir, target, { files: 0, bytes: 0, skipped: [] }, async (node) => {
    if (node.kind === 'symlink') {
      await symlink(node.target, node.name);
      await lchown(node.name, owner.uid, owner.gid);
      await lutimes(node.name, node.mtime, node.mtime);
    } else if (node.kind === 'directory') {
      await mkdir(node.name).catch(existing);
      await own(node.name, node.mode, owner);
      directories.push({ at: node.name, mtime: node.mtime });
    } else {
      await copyHostFile(node.source, node.name);
      await own(node.name, node.mode, owner);
      await utimes(node.name, node.mtime, node.mtime);
      onBytes?.(node.size);
    }
  });
  for (const { at, mtime } of directories.reverse()) await utimes(at, mtime, mtime);
}

/** Copies a file berth reads from the user's side; a source it cannot open is said as such. */
async function copyHostFile(source: string, target: string): Promise<void> {
  try {
    await copyFile(source, target, constants.COPYFILE_EXCL);
  } catch (err) {
    if (isDiskFullError(err)) throw err;
    const readable = await open(source, 'r').then(
      async (file) => {
        await file.close();
        return true;
      },
      () => false,
    );
    throw readable ? err : unreadable(source, err);
  }
}

/** The owner first: a change of owner clears set-user-id and set-group-id, as in an untar. */
async function own(file: string, mode: number, owner: ArchiveOwner): Promise<void> {
  await lchown(file, owner.uid, owner.gid);
  await chmod(file, mode);
}

/**
 * mkdir -p below `base` (which must exist: a job directory removed meanwhile is not made again),
 * every directory it makes 0755 (whatever the umask), root's.
 */
async function ensureDir(dir: string, base: string): Promise<void> {
  if (dir === base) {
    await stat(base);
    return;
  }
  try {
    await mkdir(dir);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') return;
    if (code !== 'ENOENT' || dir === base || !dir.startsWith(`${base}/`)) throw err;
    await ensureDir(path.dirname(dir), base);
    await mkdir(dir).catch(existing);
  }
  await chmod(dir, 0o755);
}

function existing(err: unknown): void {
  if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
}

function isDiskFullError(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException).code;
  return code === 'ENOSPC' || code === 'EDQUOT';
}

function notWritten(dir: string, err: unknown): BerthError {
  if (err instanceof BerthError) return err;
  const code = (err as NodeJS.ErrnoException).code ?? String(err);
  if (isDiskFullError(err)) {
    return new BerthError(
      'BERTH_DISK_FULL',
      `no space left while writing the workspace to ${dir} (${code})`,
      {
        cause: err,
        hint: `Free space on the file system of the state directory (BERTH_STATE_DIR), where a root launcher on a local engine keeps job workspaces, or set BERTH_WORKSPACE=copy to keep them on the engine's disk.`,
      },
    );
  }
  return new BerthError(
    'BERTH_WORKSPACE_NOT_WRITABLE',
    `could not write the workspace to ${dir}: ${code}`,
    { cause: err },
  );
}

/**
 * Names of job host directories in `root` (those berth made: its container names), with their
 * age; anything else there is left alone.
 */
export async function listHostDirs(root: string): Promise<{ name: string; mtimeMs: number }[]> {
  let entries: Dirent[];
  try {
    entries = await readdir(root, { withFileTypes: true });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  const found: { name: string; mtimeMs: number }[] = [];
  for (const entry of entries) {
    if (!entry.isDirectory() || !/^berth-[0-9A-Za-z_.-]+$/.test(entry.name)) continue;
    const info = await lstat(path.join(root, entry.name)).catch(() => null);
    // berth's are root's; anything else was not made by berth and is left alone.
    if (info?.isDirectory() && info.uid === 0)
      found.push({ name: entry.name, mtimeMs: info.mtimeMs });
  }
  return found;
}

/** The real path of `dir`, or of its nearest ancestor that exists (it is made on first use). */
async function existingPart(dir: string): Promise<string> {
  try {
    return await realpath(dir);
  } catch (err) {
    const parent = path.dirname(dir);
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT' || parent === dir) throw err;
    return existingPart(parent);
  }
}

/**
 * The options of the mount that holds `dir` (or would hold it), from /proc/self/mountinfo; null when
 * they cannot be read (not Linux). A bind mount keeps its source's `noexec`: a workspace under such
 * a mount could not run what the job downloads into it (Terraform's providers).
 */
export async function mountOptionsOf(dir: string): Promise<string[] | null> {
  let text: string;
  let at: string;
  try {
    [text, at] = await Promise.all([readFile('/proc/self/mountinfo', 'utf8'), existingPart(dir)]);
  } catch {
    return null;
  }
  return mountOptionsIn(text, at);
}

/** The options of the mount that holds the real path `at`, in /proc/self/mountinfo's `text`. */
export function mountOptionsIn(text: string, at: string): string[] | null {
  let best: { point: string; options: string[] } | null = null;
  for (const line of text.split('\n')) {
    const fields = line.split(' ');
    const point = (fields[4] ?? '').replace(/\\([0-7]{3})/g, (_, octal: string) =>
      String.fromCharCode(parseInt(octal, 8)),
    );
    if (!point.startsWith('/')) continue;
    const holds = point === '/' || at === point || at.startsWith(`${point}/`);
    // The last of equally long matches is the mount on top.
    if (holds && (!best || point.length >= best.point.length))
      best = { point, options: (fields[5] ?? '').split(',') };
  }
  return best?.options ?? null;
}

/**
 * Makes `root` (the workspaces directory) and says where it really is, or why root should not
 * make job directories there: every directory from it up to / must be root's and writable by no
 * one else (a sticky one such as /tmp above it is fine: no one else can move root's entries), or
 * another user could swap a part of the path for a link and have root write, give away or mount
 * what they choose; it must let root give files to UID 1983 (not so on NFS with root_squash,
 * CIFS, or for a root without CAP_CHOWN). The caller uses the real path it answers from then on,
 * so a link on the way that changes later changes nothing.
 */
export async function prepareHostRoot(root: string): Promise<{ at: string } | { reason: string }> {
  const code = (err: unknown): string => (err as NodeJS.ErrnoException).code ?? String(err);
  const wanted = path.resolve(root);
  try {
    // What exists of the path is checked before anything is made in it.
    const before = await chainTrouble(await existingPart(wanted), false);
    if (before) return { reason: before };
    await mkdir(wanted, { recursive: true, mode: 0o700 });
    const at = await realpath(wanted);
    const trouble = await chainTrouble(at, true);
    if (trouble) return { reason: trouble };
    const probe = await mkdtemp(path.join(at, '.probe-'));
    try {
      await lchown(probe, JOB_UID, JOB_GID);
    } catch (err) {
      return {
        reason: `berth cannot give files in ${at} to UID ${JOB_UID} (${code(err)}: a file system without owners, NFS with root_squash, or root without CAP_CHOWN)`,
      };
    } finally {
      await rm(probe, { recursive: true, force: true });
    }
    return { at };
  } catch (err) {
    // A passing shortage is not a property of the directory: decided again for the next job.
    if (TRANSIENT.has(code(err))) throw notWritten(wanted, err);
    return { reason: `${wanted} cannot be made or checked (${code(err)})` };
  }
}

const TRANSIENT = new Set([
  'ENOSPC',
  'EDQUOT',
  'EIO',
  'EMFILE',
  'ENFILE',
  'ENOMEM',
  'EAGAIN',
  'EINTR',
]);

/**
 * Why a directory and those above it are not root's alone, or null. `strict`: the directory
 * itself may not be sticky-and-open either (only berth makes entries in it).
 */
async function chainTrouble(dir: string, strict: boolean): Promise<string | null> {
  let at = dir;
  for (;;) {
    const info = await lstat(at);
    const sticky = (info.mode & 0o1000) !== 0 && !(strict && at === dir);
    if (info.uid !== 0 || ((info.mode & 0o022) !== 0 && !sticky)) {
      return `${at} is not root's alone (owner ${info.uid}, mode ${(info.mode & 0o7777).toString(8).padStart(4, '0')}), so another user could redirect what root writes there`;
    }
    if (at === '/') return null;
    at = path.dirname(at);
  }
}
