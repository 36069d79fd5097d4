/**
 * `berth image check`'s human view: one verdict line naming the step that decided, errors as
 * `berth run` shows them, the allow-list as a list.
 */
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { EngineClient } from '../src/executor/docker/engine-client.js';
import { removeImage, testEngine } from './harness/engine.js';
import { ensureLocalOnlyImage } from './harness/images.js';
import { runBerth } from './harness/cli.js';

/** The value of each `key  value` line (continuation lines are left out). */
function fields(stdout: string): Map<string, string> {
  return new Map(
    stdout
      .split('\n')
      .filter((line) => /^\S/.test(line))
      .map((line) => [line.slice(0, 16).trim(), line.slice(17)]),
  );
}

describe('berth image check: the human view', () => {
  it('says the policy allowed the image and the registry check refused it, in one verdict', async () => {
    const result = await runBerth([
      'image',
      'check',
      '127.0.0.1:9/team/app:1',
      '--pool',
      'public',
      '--allowed-registries',
      'default,127.0.0.1:9',
    ]);
    expect(result.code).toBe(3);
    const view = fields(result.stdout);
    expect(view.get('policy')).toBe(
      'allows: registry 127.0.0.1:9 matches allow-list entry 127.0.0.1:9',
    );
    expect(view.get('verdict')).toBe('REFUSED by the registry check [BERTH_REGISTRY_UNREACHABLE]');
    expect(result.stdout.match(/^verdict/gm)).toHaveLength(1);
    // No contradicting "allowed false" next to the policy's reason, and no raw JSON.
    expect(result.stdout).not.toMatch(/^allowed/m);
    expect(result.stdout).not.toMatch(/[{[]"/);
    // The error as berth run shows it.
    expect(result.stderr).toMatch(
      /^berth: error: cannot reach registry 127\.0\.0\.1:9 .*\[BERTH_REGISTRY_UNREACHABLE\]\nfix: .+\n$/,
    );
  });

  it('shows the allow-list as a list when the policy refuses', async () => {
    const result = await runBerth([
      'image',
      'check',
      'quay.io.evil.example/app',
      '--pool',
      'public',
      '--allowed-registries',
      'docker.io,ghcr.io',
    ]);
    expect(result.code).toBe(3);
    expect(fields(result.stdout).get('verdict')).toBe('REFUSED by the policy');
    expect(result.stdout).toContain(
      'allow-list       2 entries\n                 - docker.io\n                 - ghcr.io\n',
    );
  });

  it('says what was decided when the registry is not asked', async () => {
    const result = await runBerth(['image', 'check', 'busybox', '--no-registry-check']);
    expect(result.code).toBe(0);
    expect(fields(result.stdout).get('verdict')).toBe(
      'ALLOWED by the policy and the credentials; the registry was not asked',
    );
  });

  it('without an engine, lets the registry decide and says the engine was not asked', async () => {
    const result = await runBerth(['image', 'check', 'busybox', '--no-registry-check'], {
      DOCKER_HOST: 'unix:///nonexistent/docker.sock',
    });
    expect(result.code, result.stderr).toBe(0);
    expect(fields(result.stdout).get('engine')).toMatch(/^not asked \(.+\); a local-only image/);
    // No registry asked (tests reach no address but loopback): the engine alone decides here.
    const never = await runBerth(
      ['image', 'check', 'busybox', '--pull', 'never', '--no-registry-check'],
      { DOCKER_HOST: 'unix:///nonexistent/docker.sock' },
    );
    expect(never.code).toBe(4);
    expect(fields(never.stdout).get('verdict')).toMatch(/^REFUSED by the local image check \[/);
  });

  it('keeps --json one object, with the deciding step', async () => {
    const result = await runBerth([
      'image',
      'check',
      'quay.io.evil.example/app',
      '--pool',
      'public',
      '--json',
    ]);
    expect(JSON.parse(result.stdout)).toMatchObject({ allowed: false, decidedBy: 'policy' });
  });
});

/**
 * `berth image check` decides as `berth run --image REF` would, with the same code: a local-only
 * image (built or loaded here, no registry origin) runs on a private pool without a registry
 * check, and is refused on a public one.
 */
describe('berth image check: images on this machine', () => {
  let engine: EngineClient;
  /** Named after a registry that cannot be reached, as a local build of a registry's image is. */
  const LOCAL = '127.0.0.1:9/check-local/app:1';

  beforeAll(async () => {
    engine = testEngine();
    await ensureLocalOnlyImage(
      engine,
      'check-local',
      inject('busyboxImage'),
      '127.0.0.1:9/check-local/app',
      '1',
    );
  });

  afterAll(async () => {
    await removeImage(engine, LOCAL);
    engine.close();
  });

  it('allows a local-only image on a private pool, as berth run does, and says it is not checked', async () => {
    const result = await runBerth(['image', 'check', LOCAL]);
    expect(result.code, result.stderr).toBe(0);
    const view = fields(result.stdout);
    expect(view.get('verdict')).toBe(
      'ALLOWED: a local image (built or loaded on this machine, never pulled), used without a registry check',
    );
    expect(view.get('pull')).toBe('always');
    expect(result.stderr).toBe('');
    const json = await runBerth(['image', 'check', LOCAL, '--json']);
    expect(json.code).toBe(0);
    expect(JSON.parse(json.stdout)).toMatchObject({
      allowed: true,
      decidedBy: 'local image check',
      reason: `${LOCAL} is a local image (built or loaded on this machine, never pulled): used without a registry check`,
    });
  });

  it('refuses a local-only image on a public pool, with the reason berth run gives', async () => {
    const result = await runBerth([
      'image',
      'check',
      LOCAL,
      '--pool',
      'public',
      '--allowed-registries',
      'default,127.0.0.1:9',
      '--json',
    ]);
    expect(result.code).toBe(3);
    const report = JSON.parse(result.stdout) as Record<string, unknown>;
    expect(report).toMatchObject({
      allowed: false,
      policyAllowed: true,
      decidedBy: 'local image check',
      error: { code: 'BERTH_POLICY_PRIVATE_IMAGE' },
    });
    expect(report.reason).toContain('exists only on this machine');
  });

  it('never puts a refusal next to the policy reason that allowed it', async () => {
    const result = await runBerth(['image', 'check', '127.0.0.1:9/check-local/absent:1', '--json']);
    expect(result.code).toBe(3);
    const report = JSON.parse(result.stdout) as Record<string, unknown>;
    expect(report).toMatchObject({
      allowed: false,
      policyReason: 'private pools may run images from any registry',
      error: { code: 'BERTH_REGISTRY_UNREACHABLE' },
    });
    expect(report.reason).toMatch(/^cannot reach registry 127\.0\.0\.1:9/);
  });

  it('takes --pull as berth run does, so the fix it names works here too', async () => {
    const unreachable = await runBerth(['image', 'check', '127.0.0.1:9/check-local/absent:1']);
    expect(unreachable.stderr).toMatch(/fix: .*--pull never/);
    const present = await runBerth(['image', 'check', LOCAL, '--pull', 'never']);
    expect(present.code, present.stderr).toBe(0);
    expect(fields(present.stdout).get('verdict')).toBe(
      "ALLOWED: the engine's copy, used without a registry check (the pull policy is never)",
    );
    const absent = await runBerth([
      'image',
      'check',
      '127.0.0.1:9/check-local/absent:1',
      '--pull',
      'never',
    ]);
    expect(absent.code).toBe(3);
    expect(fields(absent.stdout).get('verdict')).toBe(
      'REFUSED by the local image check [BERTH_IMAGE_NOT_FOUND]',
    );
    const bad = await runBerth(['image', 'check', LOCAL, '--pull', 'sometimes']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('--pull "sometimes": use one of always, if-not-present, never');
  });
});
