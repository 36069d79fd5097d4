/**
 * A file that names the one process holding something: a worker's state directory, a repository
 * cache. The claim is written whole to a file of its own and then linked into place, so a reader
 * never sees it half written; a claim whose owner is gone is removed and the place claimed again.
 *
 * Taking over is serialised by a short-lived directory beside the file (`FILE.takeover`): whoever
 * holds it reads the owner again and removes the claim only if it is still the gone one. Without
 * that, two processes that both saw the same gone owner could each remove what the other had just
 * claimed. A free place needs no such guard: only one link into it succeeds.
 */
import {
  linkSync,
  mkdirSync,
  readFileSync,
  rmSync,
  rmdirSync,
  statSync,
  writeFileSync,
} from 'node:fs';

export type Claim =
  | { held: true; release: () => void }
  | { held: false; /** Who holds it (a launcher id). */ owner: string };

/** A takeover directory older than this was left by a process that died while taking over. */
const TAKEOVER_STALE_MS = 30_000;

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
  const mine = `${file}.${process.pid}.${++claims}`;
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
      removeGoneClaim(file, current);
    }
  } finally {
    rmSync(mine, { force: true });
  }
}

/** Gives the claim back, if it is still `owner`'s (one taken over is the new owner's). */
export function releaseOwnerFile(file: string, owner: string): void {
  if (readOwner(file) === owner) rmSync(file, { force: true });
}

/** Removes the claim of `gone` at `file`, if it is still there, under the takeover guard. */
function removeGoneClaim(file: string, gone: string): void {
  const guard = `${file}.takeover`;
  try {
    mkdirSync(guard);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    // Another process takes over now (a moment), or died doing it: then its guard is removed.
    if (ageMs(guard) > TAKEOVER_STALE_MS) rmSync(guard, { recursive: true, force: true });
    else pause(10);
    return;
  }
  try {
    if (readOwner(file) === gone) rmSync(file, { force: true });
  } finally {
    rmdirSync(guard);
  }
}

function readOwner(file: string): string | null {
  try {
    return readFileSync(file, 'utf8').trim();
  } catch {
    return null;
  }
}

function ageMs(path: string): number {
  try {
    return Date.now() - statSync(path).mtimeMs;
  } catch {
    return 0;
  }
}

/** Waits `ms` without returning to the event loop (claims are taken synchronously). */
function pause(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}
