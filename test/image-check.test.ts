/**
 * `berth image check`'s human view: one verdict line naming the step that decided, errors as
 * `berth run` shows them, the allow-list as a list.
 */
import { describe, expect, it } from 'vitest';
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
