/**
 * A file that names the one process holding something: a worker's state directory, a repository
 * cache. The claim is written whole to a file of its own and then linked into place, so a reader
 * never sees it half written; a claim whose owner is gone is taken over.
 */
import { linkSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';

export type Claim =
  | { held: true; release: () => void }
  | { held: false; /** Who holds it (a launcher id). */ owner: string };

let claims = 0;

/**
 * Claims `file` for `owner` (a launcher id), once: held, or the live owner that holds it.
 * `isGone(owner)` is true only when that owner certainly is gone (its claim is then taken over);
 * an empty file counts as gone (a claim is never linked into place before it is written).
 */
export function claimOwnerFile(
  file: string,
  owner: string,
  isGone: (owner: string) => boolean,
): Claim {
  const unique = `${process.pid}.${++claims}`;
  const mine = `${file}.${unique}`;
  writeFileSync(mine, `${owner}\n`, { mode: 0o600 });
  try {
    for (;;) {
      try {
        linkSync(mine, file);
        return { held: true, release: () => releaseOwnerFile(file, owner) };
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      }
      const current = readOwner(file);
      if (current === null) continue; // Given back meanwhile: claim it again.
      if (current !== '' && !isGone(current)) return { held: false, owner: current };
      // Taken over: moved aside first, so that a claim made meanwhile by another process (which
      // saw the same gone owner) is not removed in its place; such a claim is put back.
      const aside = `${file}.gone.${unique}`;
      try {
        renameSync(file, aside);
      } catch {
        continue;
      }
      if (readOwner(aside) !== current) {
        try {
          linkSync(aside, file);
        } catch {
          // A third claim took the place meanwhile: the next round reads it.
        }
      }
      rmSync(aside, { force: true });
    }
  } finally {
    rmSync(mine, { force: true });
  }
}

/** Gives the claim back, if it is still `owner`'s (one taken over is the new owner's). */
export function releaseOwnerFile(file: string, owner: string): void {
  if (readOwner(file) === owner) rmSync(file, { force: true });
}

function readOwner(file: string): string | null {
  try {
    return readFileSync(file, 'utf8').trim();
  } catch {
    return null;
  }
}
