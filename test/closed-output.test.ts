/**
 * A reader who goes away: `berth run … | head -2`, a closed terminal (SIGHUP), a closed stderr.
 * berth stops the job the documented way (SIGINT, grace, SIGKILL), removes the container, keeps
 * the stored log complete and exits 130, without a stack trace.
 */
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import type { EngineClient } from '../src/executor/docker/engine-client.js';
import { expectNothingLeftBehind } from './harness/cleanup.js';
import { testEngine } from './harness/engine.js';
import { jobDir } from './harness/files.js';
import { spawnBerth, testStateDir } from './harness/cli.js';

let engine: EngineClient;
let busybox: string;

beforeAll(() => {
  engine = testEngine();
  busybox = inject('busyboxImage');
});

afterEach(async () => {
  await expectNothingLeftBehind(engine);
});

afterAll(() => engine.close());

/** Prints numbered lines on STREAM until SIGINT, then says so and exits 7. */
function chatter(stream: 'stdout' | 'stderr'): string {
  const redirect = stream === 'stderr' ? ' >&2' : '';
  return `trap 'echo job-saw-int${redirect}; exit 7' INT; i=0; while :; do i=$((i+1)); echo "line $i"${redirect}; done`;
}

/** The one stored log of a state directory used by one run. */
function storedLog(stateDir: string): string {
  const runs = readdirSync(path.join(stateDir, 'runs'));
  expect(runs).toHaveLength(1);
  return readFileSync(path.join(stateDir, 'runs', runs[0] as string, 'output.log'), 'utf8');
}

function expectNoStackTrace(stderr: string): void {
  expect(stderr).not.toMatch(/Error: write|Warning|^\s+at /m);
  expect(stderr).not.toContain('BERTH_INTERNAL');
}

describe('berth run: a reader who goes away', () => {
  it.each([false, true])(
    'stops the job when stdout is closed (json: %s), removes the container, exits 130',
    async (json) => {
      const stateDir = testStateDir();
      const proc = spawnBerth(
        [
          'run',
          jobDir(),
          '--image',
          busybox,
          '--pull',
          'never',
          '--grace',
          '20s',
          ...(json ? ['--json'] : []),
          '--',
          chatter('stdout'),
        ],
        { BERTH_STATE_DIR: stateDir },
      );
      // As `| head -2` does: read a little, then close the pipe.
      await proc.waitFor('line 2');
      proc.child.stdout?.destroy();
      const { code } = await proc.exited;
      const stderr = proc.stderr();
      expectNoStackTrace(stderr);
      expect(stderr).toContain('stdout was closed');
      expect(code).toBe(130);
      // The job was stopped with SIGINT, and what it wrote after the reader left is stored.
      const log = storedLog(stateDir);
      expect(log).toMatch(/^line 1\nline 2\n/);
      expect(log).toContain('job-saw-int');
      if (!json) expect(stderr).toMatch(/STOPPED[\s\S]*stopped {4}canceled: SIGINT sent/);
    },
  );

  it('stops the job when stderr is closed', async () => {
    const stateDir = testStateDir();
    // The human view: the job's stderr is berth's stderr, so berth finds out when it writes.
    const proc = spawnBerth(
      ['run', jobDir(), '--image', busybox, '--pull', 'never', '--', chatter('stderr')],
      {
        BERTH_STATE_DIR: stateDir,
      },
    );
    await proc.waitFor('line 2');
    proc.child.stderr?.destroy();
    const { code } = await proc.exited;
    expect(code).toBe(130);
    const log = storedLog(stateDir);
    expect(log).toMatch(/^line 1\nline 2\n/);
    expect(log).toContain('job-saw-int');
  });

  it('stops the job on SIGHUP (the terminal closed) the documented way', async () => {
    const stateDir = testStateDir();
    const proc = spawnBerth(
      ['run', jobDir(), '--image', busybox, '--pull', 'never', '--', chatter('stdout')],
      {
        BERTH_STATE_DIR: stateDir,
      },
    );
    await proc.waitFor('line 2');
    proc.child.kill('SIGHUP');
    const { code, signal } = await proc.exited;
    expect(signal).toBeNull();
    expect(code).toBe(130);
    expectNoStackTrace(proc.stderr());
    expect(proc.stderr()).toContain('SIGHUP (the terminal closed): stopping the job');
    expect(proc.stderr()).toContain('SIGINT sent to the job');
    expect(storedLog(stateDir)).toContain('job-saw-int');
  });
});
