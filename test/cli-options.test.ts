/**
 * Options and settings of `berth run` and `berth image check` that no other test drives end to
 * end: --docker-config-dir, --no-registry-check, BERTH_POOL_DEFAULT_RUNNER_IMAGE, SIGTERM during a
 * run, and coloured output.
 */
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import type { EngineClient } from '../src/executor/docker/engine-client.js';
import { expectNothingLeftBehind } from './harness/cleanup.js';
import {
  finished,
  jobOutput,
  resultOf,
  runBerth,
  spawnBerth,
  testStateDir,
  type BerthResult,
} from './harness/cli.js';
import { removeImage, testEngine } from './harness/engine.js';
import { jobDir } from './harness/files.js';
import { tempDir } from './harness/ownership.js';

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

function berth(args: string[], env: Record<string, string | undefined> = {}): Promise<BerthResult> {
  return runBerth(args, {
    BERTH_STATE_DIR: stateDir,
    BERTH_DOCKER_CONFIG_DIR: undefined,
    SPACELIFT_DOCKER_CONFIG_DIR: undefined,
    BERTH_POOL_DEFAULT_RUNNER_IMAGE: undefined,
    ...env,
  });
}

describe('--docker-config-dir', () => {
  it('takes the private registry credentials from the directory it names, and only from there', async () => {
    const user = inject('privateUser');
    const dir = tempDir('berth-docker-config-');
    writeFileSync(
      path.join(dir, 'config.json'),
      JSON.stringify({
        auths: {
          [`http://${inject('privateRegistryAddress')}`]: {
            auth: Buffer.from(`${user.name}:${user.password}`).toString('base64'),
          },
        },
      }),
    );
    const image = inject('privateImage');
    await removeImage(engine, image);
    const args = ['run', jobDir(), '--image', image, '--json'];
    const withDir = await berth([...args, '--docker-config-dir', dir, '--', 'echo pulled']);
    expect(withDir.code, withDir.stderr).toBe(0);
    expect(jobOutput(withDir)).toBe('pulled\n');
    const checked = withDir.events.find((e) => e.type === 'image.checked');
    expect(checked).toMatchObject({ credentials: expect.stringContaining(dir) as string });
    await removeImage(engine, image);
    const without = await berth([...args, '--', 'echo pulled']);
    expect(without.code).toBe(3);
    expect(finished(without).error?.code).toBe('BERTH_IMAGE_PULL_DENIED');
  });
});

describe('berth image check --no-registry-check', () => {
  it('decides on policy and credentials alone, without asking the registry', async () => {
    const unreachable = '127.0.0.1:9/team/app:1';
    const skipped = await berth(['image', 'check', unreachable, '--no-registry-check', '--json']);
    expect(skipped.code, skipped.stdout + skipped.stderr).toBe(0);
    const report = JSON.parse(skipped.stdout) as Record<string, unknown>;
    expect(report).toMatchObject({ allowed: true, registry: '127.0.0.1:9' });
    expect(report.digest ?? null).toBeNull();
    const asked = await berth(['image', 'check', unreachable, '--json']);
    expect(asked.code).toBe(3);
    expect(asked.stdout).toContain('BERTH_REGISTRY_UNREACHABLE');
  });
});

describe('BERTH_POOL_DEFAULT_RUNNER_IMAGE', () => {
  it('is the image of a run that names none, shown as the pool default', async () => {
    const result = await berth(['run', jobDir(), '--pull', 'never', '--json', '--', 'echo ran'], {
      BERTH_POOL_DEFAULT_RUNNER_IMAGE: busybox,
    });
    expect(result.code, result.stderr).toBe(0);
    expect(jobOutput(result)).toBe('ran\n');
    expect(finished(result).image.reference).toBe(busybox);
    const started = result.events.find((e) => e.type === 'run.started');
    expect(started).toMatchObject({ image: busybox, imageSource: 'pool default' });
  });
});

describe('signals', () => {
  it('SIGTERM during a run stops it as Ctrl-C does: SIGINT to the job, exit 130, nothing left', async () => {
    const proc = spawnBerth(
      [
        'run',
        jobDir(),
        '--image',
        busybox,
        '--pull',
        'never',
        '--json',
        '--',
        'trap "echo job-saw-int; exit 5" INT; echo ready; while :; do sleep 0.1; done',
      ],
      { BERTH_STATE_DIR: stateDir },
    );
    await proc.waitFor('ready');
    proc.child.kill('SIGTERM');
    const result = await resultOf(proc, true);
    expect(result.code).toBe(130);
    expect(jobOutput(result)).toContain('job-saw-int');
    expect(finished(result)).toMatchObject({
      state: 'STOPPED',
      jobExitCode: 5,
      stop: { reason: 'canceled', endedBy: 'SIGINT' },
    });
  });
});

describe('coloured output', () => {
  const run = (env: Record<string, string | undefined>): Promise<BerthResult> =>
    berth(['run', jobDir(), '--image', busybox, '--pull', 'never', '--', 'echo plain-job-output'], {
      NO_COLOR: undefined,
      FORCE_COLOR: undefined,
      // picocolors colours under CI=… too (.ci/run sets CI=true): each case says what it wants.
      CI: undefined,
      ...env,
    });

  it('colours the human view when asked (FORCE_COLOR), and leaves the job output as it was', async () => {
    const result = await run({ FORCE_COLOR: '1' });
    expect(result.code, result.stderr).toBe(0);
    // The final state in green, notes dimmed.
    expect(result.stderr).toContain('\u001b[32m');
    expect(result.stderr).toContain('\u001b[2m');
    expect(result.stdout + result.stderr).toContain('plain-job-output\n');
  });

  it('has no colour under NO_COLOR, nor when not on a terminal', async () => {
    for (const env of [{ NO_COLOR: '1', FORCE_COLOR: '1', CI: 'true' }, {}]) {
      const result = await run(env);
      expect(result.code, result.stderr).toBe(0);
      expect(result.stdout + result.stderr).not.toContain('\u001b[');
    }
  });
});
