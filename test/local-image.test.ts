/**
 * Images that exist only on this machine (`docker build -t myimg .`, `docker load`): no registry
 * origin, so nothing to check. Private pools run them and say so; public pools refuse them.
 */
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import type { EngineClient } from '../src/executor/docker/engine-client.js';
import { expectNothingLeftBehind } from './harness/cleanup.js';
import { pushImage, removeImage, tagImage, testEngine } from './harness/engine.js';
import { jobDir } from './harness/files.js';
import { ensureBuiltImage, ensureLocalOnlyImage } from './harness/images.js';
import { finished, jobOutput, runBerth, testStateDir } from './harness/cli.js';

let engine: EngineClient;
let stateDir: string;
/** Named as a user would name a local build (the harness adds --pull never to berth-test/…). */
const LOCAL = 'everyday-local/app:1';

beforeAll(async () => {
  engine = testEngine();
  stateDir = testStateDir();
  await ensureLocalOnlyImage(
    engine,
    'local-only',
    inject('busyboxImage'),
    'everyday-local/app',
    '1',
  );
});

afterEach(async () => {
  await expectNothingLeftBehind(engine);
});

afterAll(async () => {
  await removeImage(engine, LOCAL);
  engine.close();
});

describe('berth run: images built on this machine', () => {
  it('runs a local-only image on a private pool with the default pull policy, and says so', async () => {
    const result = await runBerth(
      ['run', jobDir(), '--image', LOCAL, '--json', '--', 'echo built-here'],
      { BERTH_STATE_DIR: stateDir },
    );
    expect(result.code).toBe(0);
    expect(jobOutput(result)).toBe('built-here\n');
    const end = finished(result);
    expect(end.warnings.join('\n')).toContain(
      `${LOCAL} is a local image (built or loaded on this machine, never pulled): used without a registry check`,
    );
    expect(result.events.some((e) => e.type === 'image.checked')).toBe(false);
  });

  it('refuses a local-only image on a public pool, saying why', async () => {
    const result = await runBerth(
      ['run', jobDir(), '--image', LOCAL, '--pool', 'public', '--', 'echo never'],
      { BERTH_STATE_DIR: stateDir },
    );
    expect(result.code).toBe(3);
    expect(result.stderr).toContain(
      `${LOCAL} exists only on this machine (built or loaded here, never pulled from a registry)`,
    );
    expect(result.stderr).toContain('public pools run only images their registry confirms');
    expect(result.stdout).not.toContain('never\n');
  });

  it('names --pull never in the fix when the registry cannot be reached', async () => {
    const result = await runBerth(
      ['run', jobDir(), '--image', '127.0.0.1:9/team/app:1', '--', 'true'],
      { BERTH_STATE_DIR: stateDir },
    );
    expect(result.code).toBe(3);
    expect(result.stderr).toContain('BERTH_REGISTRY_UNREACHABLE');
    expect(result.stderr).toMatch(/fix .*--pull never/);
  });

  it("never builds berth's runner image over a present default image whose registry cannot be reached", async () => {
    // An image with a registry origin (pushed to the test registry, so it has a repository
    // digest), named after a registry that is gone (a loopback port where nothing listens): as
    // when the registry of a team's default runner image is down.
    const built = await ensureBuiltImage(
      engine,
      'present-default',
      // Not the standard runner image (whose label berth trusts as its own build).
      `FROM ${inject('busyboxImage')}\nLABEL registry.origin=yes dev.berth.runner-image=no\n`,
    );
    const pushed = `${inject('registryAddress')}/berth-test/present-default`;
    const repository = '127.0.0.1:9/berth-test/present-default';
    await tagImage(engine, built, pushed, '1');
    await tagImage(engine, built, repository, '1');
    try {
      await pushImage(engine, `${pushed}:1`);
      const before = await engine.json<{ Id: string; RepoDigests: string[] }>(
        'GET',
        `/images/${repository}:1/json`,
      );
      expect(before.RepoDigests.length).toBeGreaterThan(0);
      const result = await runBerth(['run', jobDir(), '--json', '--', 'echo never'], {
        BERTH_STATE_DIR: stateDir,
        BERTH_DEFAULT_RUNNER_IMAGE: `${repository}:1`,
      });
      expect(result.code, result.stderr).not.toBe(0);
      expect(finished(result).error?.code).toBe('BERTH_REGISTRY_UNREACHABLE');
      expect(result.events.some((e) => e.type === 'image.build')).toBe(false);
      const after = await engine.json<{ Id: string }>('GET', `/images/${repository}:1/json`);
      expect(after.Id).toBe(before.Id);
    } finally {
      await removeImage(engine, `${repository}:1`);
      await removeImage(engine, `${pushed}:1`);
    }
  });
});
