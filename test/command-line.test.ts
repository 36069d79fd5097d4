/**
 * `berth run`'s command line in everyday use: `--` and DIR, variables from berth's own
 * environment and env-files, `--json` early failures, exit codes.
 */
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import type { EngineClient } from '../src/executor/docker/engine-client.js';
import { expectNothingLeftBehind } from './harness/cleanup.js';
import { testEngine } from './harness/engine.js';
import { jobDir } from './harness/files.js';
import { finished, jobOutput, runBerth, testStateDir } from './harness/cli.js';

let engine: EngineClient;
let busybox: string;
let stateDir: string;

beforeAll(() => {
  engine = testEngine();
  busybox = inject('busyboxImage');
  stateDir = testStateDir();
});

afterEach(async () => {
  await expectNothingLeftBehind(engine);
});

afterAll(() => engine.close());

function berth(
  args: string[],
  env: Record<string, string | undefined> = {},
  options: { cwd?: string } = {},
): ReturnType<typeof runBerth> {
  return runBerth(args, { BERTH_STATE_DIR: stateDir, ...env }, options);
}

describe('berth run: DIR and --', () => {
  it('takes every word after -- as the command, with no DIR before it', async () => {
    const dir = jobDir({ 'here.txt': 'x\n' });
    const result = await berth(
      ['run', '--image', busybox, '--json', '--', 'printf', '%s\\n', 'a b', '--', 'ls'],
      {},
      { cwd: dir },
    );
    expect(result.code).toBe(0);
    expect(jobOutput(result)).toBe('a b\n--\nls\n');
    expect(finished(result).state).toBe('FINISHED');
  });

  it('keeps DIR before -- and an option value that is --', async () => {
    const dir = jobDir({ 'here.txt': 'x\n' });
    const result = await berth([
      'run',
      dir,
      '--image',
      busybox,
      '--json',
      '--env',
      'DASHES=--',
      '--',
      'sh',
      '-c',
      'ls; echo "$DASHES"',
    ]);
    expect(result.code).toBe(0);
    expect(jobOutput(result)).toBe('here.txt\n--\n');
  });

  it('refuses two directories before --, naming both', async () => {
    const result = await berth(['run', jobDir(), 'extra', '--image', busybox, '--', 'true']);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('more than one directory before --');
    expect(result.stderr).toContain('"extra"');
  });
});
