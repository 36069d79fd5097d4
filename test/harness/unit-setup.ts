/**
 * The unit project's run directory (suite-dir.ts). Unit tests spawn no berth and touch no engine:
 * each test file gets a scratch TMPDIR of its own inside the run's directory, removed after the
 * file (unit-worker-setup.ts), so the unit tests leave nothing in the machine's temp dir.
 */
import type { TestProject } from 'vitest/node';
import { closeSuiteDir, makeSuiteDir } from './suite-dir.js';

export default function setup(project: TestProject): () => void {
  const suite = makeSuiteDir();
  project.provide('suiteDir', suite);
  return () => {
    const left = closeSuiteDir(suite);
    if (left.length > 0) {
      process.exitCode = 1;
      throw new Error(`the unit tests left temp files behind: ${left.join(' ')}`);
    }
  };
}
