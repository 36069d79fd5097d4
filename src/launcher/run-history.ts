/**
 * `berth run` keeps each run's directory under STATE_DIR/runs (its stored log, bounded by
 * --log-limit). Kept for ever, they fill the disk of a machine that runs berth for years: at the
 * start of each run the newest BERTH_KEEP_RUNS directories (200 unless set; `all` keeps every
 * one) stay, this run's among them, and the older ones go. A directory whose berth process is
 * still alive (its `launcher` file: a plan waiting for an answer may wait for days) stays, and so
 * does one touched within the last day (made by a berth before that file, or on another host).
 * Only directories named as berth names runs are looked at.
 */
import { mkdir, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { BerthError } from '../domain/errors.js';
import { isLauncherAlive } from './launcher-identity.js';

/** The file in a run's directory that names the berth process running it. */
export const LAUNCHER_FILE = 'launcher';

/** Makes the run's directory and names this process in it, so that no other berth prunes it. */
export async function claimRunDirectory(
  stateDir: string,
  runId: string,
  launcherId: string,
): Promise<void> {
  const dir = path.join(stateDir, 'runs', runId);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await writeFile(path.join(dir, LAUNCHER_FILE), `${launcherId}\n`, { mode: 0o600 });
}

/** BERTH_KEEP_RUNS's default. */
export const DEFAULT_KEEP_RUNS = 200;

/** A directory modified this recently is never removed. */
export const RECENT_RUN_MS = 24 * 3600_000;

/** A run id of `berth run` (newRunId): a UTC time stamp, then random hex; sorts by time. */
const RUN_DIR = /^\d{8}t\d{6}z-[0-9a-f]{8}$/;

/** BERTH_KEEP_RUNS: how many run directories stay (null: all). */
export function keepRunsFrom(env: NodeJS.ProcessEnv): number | null {
  const text = env.BERTH_KEEP_RUNS?.trim();
  if (!text) return DEFAULT_KEEP_RUNS;
  if (text === 'all') return null;
  const count = Number(text);
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(count) || count < 1) {
    throw new BerthError(
      'BERTH_USAGE',
      `BERTH_KEEP_RUNS=${JSON.stringify(text)} is not a number of runs (1 or more) nor \`all\``,
      {
        hint: `Set BERTH_KEEP_RUNS to how many runs' stored logs to keep (default ${DEFAULT_KEEP_RUNS}), or to \`all\` to keep every one.`,
      },
    );
  }
  return count;
}

/** The run has ended: its directory no longer names a process (only its stored log is kept). */
export async function releaseRunDirectory(stateDir: string, runId: string): Promise<void> {
  await rm(path.join(stateDir, 'runs', runId, LAUNCHER_FILE), { force: true }).catch(
    () => undefined,
  );
}

/**
 * Removes the run directories beyond the newest `keep` (the run starting now counts as one of
 * them, its directory not made yet), except recently modified ones. Returns what it removed and
 * what it could not remove (with why); never throws.
 */
export async function pruneRunDirectories(
  stateDir: string,
  keep: number | null,
  now: Date,
  alive: (launcherId: string) => boolean = isLauncherAlive,
): Promise<{ removed: string[]; failed: { dir: string; why: string }[] }> {
  const removed: string[] = [];
  const failed: { dir: string; why: string }[] = [];
  if (keep === null) return { removed, failed };
  const runsDir = path.join(stateDir, 'runs');
  let names: string[];
  try {
    names = (await readdir(runsDir)).filter((name) => RUN_DIR.test(name));
  } catch {
    // No runs directory yet (a first run): nothing to remove.
    return { removed, failed };
  }
  const older = names
    .sort()
    .reverse()
    .slice(Math.max(0, keep - 1));
  for (const name of older) {
    const dir = path.join(runsDir, name);
    try {
      if (now.getTime() - (await lastModified(dir)) < RECENT_RUN_MS) continue;
      const launcher = await readFile(path.join(dir, LAUNCHER_FILE), 'utf8').catch(() => null);
      if (launcher !== null && alive(launcher.trim())) continue;
      await rm(dir, { recursive: true, force: true });
      removed.push(dir);
    } catch (err) {
      // Removed meanwhile (another berth pruning at the same time): gone, as wanted.
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue;
      // The message, not only the code: rm names the entry it could not remove and why.
      failed.push({ dir, why: (err as Error).message ?? String(err) });
    }
  }
  return { removed, failed };
}

/** The newest modification time of a run directory and the files in it. */
async function lastModified(dir: string): Promise<number> {
  let newest = (await stat(dir)).mtimeMs;
  for (const entry of await readdir(dir)) {
    const info = await stat(path.join(dir, entry)).catch(() => null);
    if (info) newest = Math.max(newest, info.mtimeMs);
  }
  return newest;
}
