/**
 * Makes a directory berth keeps its data in (the server's data directory, a worker's state
 * directory), with its parents, and says what is wrong when it cannot: the path, why, and how
 * to fix it, never "a bug in berth".
 *
 * Node's own recursive mkdir never ends on a file system that answers ENOENT to a create
 * (`/proc`): the parents are made one at a time here.
 */
import { mkdirSync, statSync } from 'node:fs';
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
  const full = path.resolve(dir);
  let current = path.parse(full).root;
  for (const part of full.slice(current.length).split(path.sep).filter(Boolean)) {
    current = path.join(current, part);
    try {
      mkdirSync(current, { mode });
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? '';
      if (code === 'EEXIST' && isDirectory(current)) continue;
      const why =
        code === 'EEXIST' ? `${current} is a file` : `${WHY[code] ?? code} at ${current} (${code})`;
      throw new BerthError('BERTH_USAGE', `cannot create the ${what} ${dir}: ${why}`, {
        hint: `Give a directory this user (uid ${process.getuid?.() ?? '?'}) may create and write, in ${setting}, or create ${dir} for it.`,
        cause: err,
      });
    }
  }
}

function isDirectory(file: string): boolean {
  try {
    return statSync(file).isDirectory();
  } catch {
    return false;
  }
}
