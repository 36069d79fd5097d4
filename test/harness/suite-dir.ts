/**
 * The run's own directory (`$TMPDIR/berth-suite-*`, see ownership.ts), made by a project's
 * global set-up and checked and removed by its teardown. Shared by the unit and integration
 * projects.
 */
import {
  chmodSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { suiteTmp } from './ownership.js';

export function makeSuiteDir(): string {
  const reaped = reapStaleSuiteDirs();
  if (reaped > 0)
    console.warn(`removed ${reaped} temp dir(s) left by an earlier test run that was killed`);
  const suite = mkdtempSync(path.join(tmpdir(), 'berth-suite-'));
  writeFileSync(path.join(suite, 'owner'), String(process.pid));
  // Traversable like /tmp: some tests run berth as an unprivileged user on files made here.
  chmodSync(suite, 0o755);
  mkdirSync(suiteTmp(suite), { mode: 0o755 });
  return suite;
}

/** What is left in the run's temp dir; then the run's directory is removed. */
export function closeSuiteDir(suite: string): string[] {
  try {
    return readdirSync(suiteTmp(suite));
  } finally {
    rmSync(suite, { recursive: true, force: true });
  }
}

/** Removes the run directories of test runs whose process is gone (killed before teardown). */
function reapStaleSuiteDirs(): number {
  let reaped = 0;
  for (const name of readdirSync(tmpdir())) {
    if (!name.startsWith('berth-suite-')) continue;
    const dir = path.join(tmpdir(), name);
    try {
      const owner = Number(readFileSync(path.join(dir, 'owner'), 'utf8'));
      process.kill(owner, 0);
      continue;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      // EPERM: alive, someone else's. No owner file yet: a run starting right now, unless old.
      if (code === 'EPERM') continue;
      if (code === 'ENOENT' && Date.now() - statSync(dir).mtimeMs < 600_000) continue;
    }
    rmSync(dir, { recursive: true, force: true });
    reaped += 1;
  }
  return reaped;
}
