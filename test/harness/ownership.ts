/**
 * What this test run made, so the checks after each test and at the end remove and report only
 * that, and never touch another user's jobs on a shared engine or files in a shared temp dir.
 *
 * - Containers: berth labels each container with its launcher id (`local/HOST/PID/START`, see
 *   src/launcher/launcher-identity.ts). The harness records the launcher id of every berth process
 *   it spawns, and gives in-process executor tests launcher ids of their own (`test/…`); a
 *   container is the run's own when its launcher id was recorded. The record is a file in the
 *   run's directory, so the global teardown (another process) knows them too.
 * - Temp dirs: global set-up makes one directory per run (`$TMPDIR/berth-suite-*`); every test
 *   worker, and so every berth it spawns, uses its `tmp/` as TMPDIR. Temp dirs made through
 *   `tempDir` are removed after each test file; anything else left in `tmp/` fails the run.
 */
import { appendFileSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { launcherIdOf } from '../../src/launcher/launcher-identity.js';

/** Set by global set-up (main process) and by worker-setup.ts (each test worker). */
export const SUITE_DIR_ENV = 'BERTH_TEST_SUITE_DIR';

export function suiteDir(): string {
  const dir = process.env[SUITE_DIR_ENV];
  if (!dir) throw new Error(`${SUITE_DIR_ENV} is not set: run the tests through vitest's config`);
  return dir;
}

export const suiteTmp = (root: string): string => path.join(root, 'tmp');
const launchersFile = (root: string): string => path.join(root, 'launchers');

const own = new Set<string>();

function record(id: string): string {
  own.add(id);
  appendFileSync(launchersFile(suiteDir()), `${id}\n`);
  return id;
}

/** Records a berth process the harness spawned, while it runs (its start time is read now). */
export function recordLauncherPid(pid: number): string {
  return record(launcherIdOf(pid));
}

/**
 * A launcher id for containers a test makes in-process (executor tests). Its `test/` prefix is
 * one berth cannot judge, so another berth's orphan sweep leaves these to this run.
 */
export function testLauncherId(tag: string): string {
  return record(`test/${hostname()}/${process.pid}/${tag}-${randomBytes(4).toString('hex')}`);
}

/** Whether a container with this launcher id was made by this worker's tests. */
export function ownsLauncher(id: string | undefined): boolean {
  return id !== undefined && own.has(id);
}

/** Every launcher id any worker of the run recorded (for the global teardown). */
export function recordedLaunchers(root: string): Set<string> {
  try {
    return new Set(readFileSync(launchersFile(root), 'utf8').split('\n').filter(Boolean));
  } catch {
    return new Set();
  }
}

const madeDirs: string[] = [];

/** A temp dir for one test or file; removed after the test file (worker-setup.ts). */
export function tempDir(prefix: string): string {
  const dir = mkdtempSync(path.join(tmpdir(), prefix));
  madeDirs.push(dir);
  return dir;
}

export function removeTempDirs(): void {
  for (const dir of madeDirs.splice(0)) rmSync(dir, { recursive: true, force: true });
}
