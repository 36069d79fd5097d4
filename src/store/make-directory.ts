/**
 * Makes a directory berth keeps its data in (the server's data directory, a worker's state
 * directory), with its parents, and says what is wrong when it cannot: the path, why, and how
 * to fix it, never "a bug in berth".
 *
 * Node's own recursive mkdir never ends on a file system that answers ENOENT to a create
 * (`/proc`): the parents are made one at a time here.
 */
import { accessSync, constants, lstatSync, mkdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { BerthError } from '../domain/errors.js';

const WHY: Record<string, string> = {
  EACCES: 'permission denied',
  EPERM: 'not permitted',
  EROFS: 'a read-only file system',
  ENOTDIR: 'a part of the path is a file',
  ENOSPC: 'no space left',
  ENOENT: 'this file system does not let berth create it',
};

/** `what`: e.g. `data directory`; `setting`: how the user chose it, e.g. `--data-dir`. */
export function makeDirectory(dir: string, what: string, setting: string, mode = 0o700): void {
  const uid = process.getuid?.() ?? '?';
  const other = `Give a directory this user (uid ${uid}) may create and write, in ${setting}`;
  const refuse = (why: string, cause?: unknown, hint = `${other}, or create ${dir} for it.`) =>
    new BerthError('BERTH_USAGE', `cannot create the ${what} ${dir}: ${why}`, {
      hint,
      ...(cause === undefined ? {} : { cause }),
    });
  const full = path.resolve(dir);
  let current = path.parse(full).root;
  for (const part of full.slice(current.length).split(path.sep).filter(Boolean)) {
    current = path.join(current, part);
    // What is there is only looked at (a mkdir of an existing parent can be refused on a
    // network file system); what is not is made.
    const kind = kindOf(current);
    if (kind === 'directory') continue;
    const inTheWay = `${other}, or move ${current} out of the way.`;
    if (kind === 'file') throw refuse(`${current} is a file`, undefined, inTheWay);
    if (kind === 'dangling')
      throw refuse(`${current} is a symbolic link to nothing`, undefined, inTheWay);
    try {
      mkdirSync(current, { mode });
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? '';
      if (code === 'EEXIST' && kindOf(current) === 'directory') continue;
      throw refuse(`${WHY[code] ?? code} at ${current} (${code})`, err);
    }
  }
  try {
    accessSync(full, constants.W_OK | constants.X_OK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? '';
    throw new BerthError(
      'BERTH_USAGE',
      `the ${what} ${dir} is there, but this user (uid ${uid}) may not write in it (${code})`,
      {
        hint:
          code === 'EROFS'
            ? `${other}: ${dir} is on a read-only file system.`
            : `${other}, or let uid ${uid} write in ${dir} (chown or chmod).`,
        cause: err,
      },
    );
  }
}

function kindOf(file: string): 'directory' | 'file' | 'dangling' | 'absent' {
  try {
    return statSync(file).isDirectory() ? 'directory' : 'file';
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOTDIR') return 'file';
    try {
      return lstatSync(file).isSymbolicLink() ? 'dangling' : 'absent';
    } catch {
      return 'absent';
    }
  }
}
