/**
 * One berth process per directory: a worker's state directory, `berth up`'s data directory. The
 * claim is an owner file in the directory (owner-file.ts); one whose process is gone, or that a
 * copy of the directory brought from another machine, is taken over.
 */
import path from 'node:path';
import { BerthError } from '../domain/errors.js';
import {
  currentLauncherId,
  isLauncherAlive,
  isLauncherOfThisHost,
} from '../launcher/launcher-identity.js';
import { claimOwnerFile } from '../launcher/owner-file.js';
import { makeDirectory } from '../store/make-directory.js';

export interface DirectoryUse {
  /** The owner file's name in the directory. */
  file: string;
  /** Who holds it, for the error: e.g. `berth worker`. */
  holder: string;
  /** What the directory is, for the error: e.g. `state directory`. */
  what: string;
  /** Where the user chose it, for the fix when it cannot be made: e.g. `BERTH_STATE_DIR`. */
  setting: string;
  hint: string;
}

/** Takes `dir` for this process, or throws BERTH_USAGE naming the live one that has it. */
export function claimDirectory(dir: string, use: DirectoryUse): () => void {
  makeDirectory(dir, use.what, use.setting);
  const claim = claimOwnerFile(
    path.join(dir, use.file),
    currentLauncherId(),
    (owner) => !(isLauncherOfThisHost(owner) && isLauncherAlive(owner)),
  );
  if (!claim.held)
    throw new BerthError(
      'BERTH_USAGE',
      `another ${use.holder} (process ${claim.owner.split('/')[2] ?? '?'}) uses the ${use.what} ${dir}`,
      { hint: use.hint },
    );
  return claim.release;
}
