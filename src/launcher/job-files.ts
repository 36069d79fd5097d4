/**
 * Reading berth's own files from a job directory on this machine (`.berth/task.sh`,
 * `.berth/config.yml`, `.berth/workflow.yml` and their `.spacelift/` twins). The directory is a
 * tenant's (a repository, soon any pull request), so a symlink there could point at any file
 * berth's user may read: a Docker credentials file, a key. Every component of the path is
 * checked without following symlinks, the file is opened with O_NOFOLLOW and must be a regular
 * file (a FIFO would block berth), and it is read only up to a limit.
 */
import { constants } from 'node:fs';
import { lstat, open, realpath } from 'node:fs/promises';
import path from 'node:path';
import { BerthError } from '../domain/errors.js';

/** Configuration and task files are small; anything bigger is not one. */
export const JOB_FILE_LIMIT = 1024 * 1024;

function unsafe(file: string, why: string): BerthError {
  return new BerthError('BERTH_WORKSPACE_SYMLINK', `${file} ${why}; berth does not follow it`);
}

function unreadable(file: string, err: unknown): BerthError {
  return new BerthError(
    'BERTH_WORKSPACE_UNREADABLE',
    `cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`,
    { cause: err },
  );
}

/**
 * The text of `relative` (a `/`-separated path without `..`) inside `dir`; null when it does not
 * exist. Throws BERTH_WORKSPACE_SYMLINK when it or a directory on its way is a symlink.
 */
export async function readJobFile(
  dir: string,
  relative: string,
  limit = JOB_FILE_LIMIT,
): Promise<string | null> {
  const parts = relative.split(/[\\/]+/).filter(Boolean);
  if (parts.length === 0 || parts.some((p) => p === '..' || p === '.')) {
    throw new BerthError(
      'BERTH_INTERNAL',
      `job file path ${relative} is not a plain relative path`,
    );
  }
  // The job directory itself may be reached through symlinks (the user's choice); below it, not.
  let current: string;
  try {
    current = await realpath(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw unreadable(dir, err);
  }
  const shown = path.join(dir, relative);
  for (const [index, part] of parts.entries()) {
    current = path.join(current, part);
    let info;
    try {
      info = await lstat(current);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') return null;
      throw unreadable(shown, err);
    }
    const last = index === parts.length - 1;
    if (info.isSymbolicLink()) {
      throw unsafe(
        last
          ? shown
          : `${shown} is reached through ${path.join(dir, ...parts.slice(0, index + 1))}, which`,
        'is a symlink',
      );
    }
    if (!last && !info.isDirectory()) return null;
  }
  let handle;
  try {
    handle = await open(current, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return null;
    // Swapped for a symlink between the check and the open.
    if (code === 'ELOOP') throw unsafe(shown, 'is a symlink');
    throw unreadable(shown, err);
  }
  try {
    const info = await handle.stat();
    if (!info.isFile()) {
      throw new BerthError(
        'BERTH_WORKSPACE_UNREADABLE',
        `${shown} is not a regular file (${info.isDirectory() ? 'a directory' : 'a device, socket or pipe'})`,
      );
    }
    if (info.size > limit) {
      throw new BerthError(
        'BERTH_WORKSPACE_UNREADABLE',
        `${shown} is ${info.size} bytes; berth reads files of at most ${limit} bytes there`,
        { hint: `Keep ${relative} under ${Math.floor(limit / 1024)} KiB.` },
      );
    }
    const buffer = Buffer.alloc(Math.min(info.size, limit) + 1);
    let length = 0;
    for (;;) {
      const { bytesRead } = await handle.read(buffer, length, buffer.length - length, length);
      if (bytesRead === 0) break;
      length += bytesRead;
      if (length > limit) {
        throw new BerthError(
          'BERTH_WORKSPACE_UNREADABLE',
          `${shown} grew past ${limit} bytes while berth read it`,
        );
      }
      if (length === buffer.length) break;
    }
    return buffer.subarray(0, length).toString('utf8');
  } finally {
    await handle.close();
  }
}
