/**
 * Worker pools' image policy and registry credentials on real registries (Debian's
 * docker-registry: one anonymous, one with htpasswd), the real engine and the real command.
 */
import { chmodSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import type { EngineClient } from '../src/executor/docker/engine-client.js';
import { jobDir } from './harness/files.js';
import { expectNothingLeftBehind } from './harness/cleanup.js';
import { finished, jobOutput, runBerth, testStateDir, type BerthResult } from './harness/cli.js';
import { imageExists, removeImage, testEngine } from './harness/engine.js';
import { tempDir } from './harness/ownership.js';

let engine: EngineClient;
let stateDir: string;
let helperDir: string;
let privateImage: string;
let publicImage: string;
let user: { name: string; password: string };
let allowLocal: string;

/** A Docker config directory with the given config.json. */
function dockerConfig(config: unknown): string {
  const dir = tempDir('berth-docker-config-');
  writeFileSync(path.join(dir, 'config.json'), JSON.stringify(config));
  return dir;
}

/** A docker-credential-NAME executable speaking the helper protocol, recording each call. */
function helper(name: string, body: string): string {
  const file = path.join(helperDir, `docker-credential-${name}`);
  writeFileSync(
    file,
    `#!/bin/sh\nread -r server\necho "$server" >> "${helperDir}/${name}.calls"\n${body}\n`,
  );
  chmodSync(file, 0o755);
  return `${helperDir}/${name}.calls`;
}

function berth(args: string[], env: Record<string, string | undefined> = {}): Promise<BerthResult> {
  return runBerth(args, {
    BERTH_STATE_DIR: stateDir,
    PATH: `${helperDir}:${process.env.PATH ?? ''}`,
    BERTH_DOCKER_CONFIG_DIR: undefined,
    SPACELIFT_DOCKER_CONFIG_DIR: undefined,
    BERTH_PUBLIC_ALLOWED_REGISTRIES: undefined,
    ...env,
  });
}

function everything(result: BerthResult): string {
  return result.stdout + result.stderr;
}

beforeAll(() => {
  engine = testEngine();
  stateDir = testStateDir();
  helperDir = tempDir('berth-helpers-');
  privateImage = inject('privateImage');
  publicImage = inject('registryImage');
  user = inject('privateUser');
  allowLocal = `default,${inject('registryAddress')},${inject('privateRegistryAddress')}`;
  const secret = JSON.stringify(user.password);
  helper(
    'good',
    `printf '{"ServerURL":"%s","Username":"${user.name}","Secret":%s}' "$server" '${secret}'`,
  );
  helper(
    'wrong',
    `printf '{"ServerURL":"%s","Username":"${user.name}","Secret":"not-the-password"}' "$server"`,
  );
  helper('failing', 'echo "the keychain is locked" >&2; exit 3');
  helper('garbage', 'echo "this is not json"');
  helper('empty', 'echo "credentials not found in native keychain"; exit 1');
});

afterEach(async () => {
  await expectNothingLeftBehind(engine);
});

afterAll(() => engine.close());

const authConfig = (password: string): unknown => ({
  auths: {
    [`http://${inject('privateRegistryAddress')}`]: {
      auth: Buffer.from(`${user.name}:${password}`).toString('base64'),
    },
  },
});

describe('public pools', () => {
  it('reject a registry that is not allow-listed before any pull, naming the registry and the rule set', async () => {
    await removeImage(engine, publicImage);
    const result = await berth([
      'run',
      jobDir(),
      '--pool',
      'public',
      '--image',
      publicImage,
      '--json',
      '--',
      'true',
    ]);
    expect(result.code).toBe(3);
    const end = finished(result);
    expect(end.error?.code).toBe('BERTH_POLICY_REGISTRY_NOT_ALLOWED');
    expect(end.error?.message).toContain(`resolves to registry ${inject('registryAddress')}`);
    expect(end.error?.message).toContain('docker.io, gcr.io');
    expect(end.error?.message).toContain('a private worker pool may use any registry');
    expect(result.events.some((e) => e.type === 'image.pull' || e.type === 'image.checked')).toBe(
      false,
    );
    expect(await imageExists(engine, publicImage)).toBe(false);
  });

  it('refuse a private image even when the engine has it cached, and read no credentials', async () => {
    // A private pool's job pulls it: now the shared engine has it.
    const pulled = await berth(['run', jobDir(), '--image', privateImage, '--json', '--', 'true'], {
      BERTH_DOCKER_CONFIG_DIR: dockerConfig(authConfig(user.password)),
    });
    expect(pulled.code, pulled.stderr).toBe(0);
    const pinned = finished(pulled).image.digest as string;
    expect(await imageExists(engine, pinned)).toBe(true);

    // The public pool's config names a helper for every registry: it must never run.
    const recorder = helper(
      'recorder',
      `printf '{"ServerURL":"%s","Username":"${user.name}","Secret":"x"}' "$server"`,
    );
    const config = dockerConfig({
      credsStore: 'recorder',
      auths: { [inject('privateRegistryAddress')]: { auth: 'eA==' } },
    });
    for (const ref of [privateImage, pinned]) {
      for (const pull of ['if-not-present', 'never']) {
        const result = await berth(
          [
            'run',
            jobDir(),
            '--pool',
            'public',
            '--allowed-registries',
            allowLocal,
            '--image',
            ref,
            '--pull',
            pull,
            '--json',
            '--',
            'echo ran',
          ],
          { BERTH_DOCKER_CONFIG_DIR: config },
        );
        expect(result.code, `${ref} ${pull}: ${result.stderr}`).toBe(3);
        expect(finished(result).error?.code).toBe('BERTH_POLICY_PRIVATE_IMAGE');
        expect(finished(result).error?.message).toContain(
          'private images need a private worker pool',
        );
        expect(jobOutput(result)).toBe('');
        expect(finished(result).containerId).toBeNull();
      }
    }
    expect(existsSync(recorder)).toBe(false);
  });

  it('run a public image from an allow-listed registry, anonymously, pinned to the digest the registry answered', async () => {
    const recorder = helper('recorder2', 'exit 1');
    const result = await berth(
      [
        'run',
        jobDir(),
        '--pool',
        'public',
        '--allowed-registries',
        allowLocal,
        '--image',
        publicImage,
        '--json',
        '--',
        'echo public-ok',
      ],
      { BERTH_DOCKER_CONFIG_DIR: dockerConfig({ credsStore: 'recorder2' }) },
    );
    expect(result.code, result.stderr).toBe(0);
    expect(jobOutput(result)).toBe('public-ok\n');
    const checked = result.events.find((e) => e.type === 'image.checked');
    expect(checked).toMatchObject({
      pool: 'public',
      rule: inject('registryAddress'),
      credentials: 'none: public pools pull anonymously',
    });
    expect(finished(result).image.digest).toContain(`@${(checked as { digest: string }).digest}`);
    expect(existsSync(recorder)).toBe(false);
  });
});

describe('private pools: credentials from the Docker config directory', () => {
  const run = (config: unknown, env: Record<string, string> = {}): Promise<BerthResult> =>
    berth(['run', jobDir(), '--image', privateImage, '--json', '--', 'echo pulled-and-ran'], {
      BERTH_DOCKER_CONFIG_DIR: dockerConfig(config),
      ...env,
    });

  it('pull with auths (base64 auth)', async () => {
    await removeImage(engine, privateImage);
    const result = await run(authConfig(user.password));
    expect(result.code, result.stderr).toBe(0);
    expect(jobOutput(result)).toBe('pulled-and-ran\n');
    expect(result.events.find((e) => e.type === 'image.checked')).toMatchObject({
      credentials: expect.stringContaining(
        `auths["http://${inject('privateRegistryAddress')}"]`,
      ) as string,
    });
  });

  it('pull with auths (username and password) under the SPACELIFT_DOCKER_CONFIG_DIR name', async () => {
    const dir = dockerConfig({
      auths: {
        [inject('privateRegistryAddress')]: { username: user.name, password: user.password },
      },
    });
    const result = await berth(['run', jobDir(), '--image', privateImage, '--json', '--', 'true'], {
      SPACELIFT_DOCKER_CONFIG_DIR: dir,
    });
    expect(result.code, result.stderr).toBe(0);
  });

  it('pull with a credHelpers helper, which gets the registry on stdin', async () => {
    const calls = path.join(helperDir, 'good.calls');
    const before = existsSync(calls) ? readFileSync(calls, 'utf8') : '';
    const result = await run({
      credHelpers: { [inject('privateRegistryAddress')]: 'good' },
      credsStore: 'failing',
    });
    expect(result.code, result.stderr).toBe(0);
    expect(readFileSync(calls, 'utf8').slice(before.length)).toBe(
      `${inject('privateRegistryAddress')}\n`,
    );
  });

  it('pull with credsStore', async () => {
    const result = await run({ credsStore: 'good' });
    expect(result.code, result.stderr).toBe(0);
    expect(result.events.find((e) => e.type === 'image.checked')).toMatchObject({
      credentials: expect.stringContaining('docker-credential-good (from credsStore') as string,
    });
  });

  it('a wrong password is its own clear error, naming where the credentials came from', async () => {
    const result = await run(authConfig('wrong-password'));
    expect(result.code).toBe(3);
    expect(finished(result).error?.code).toBe('BERTH_REGISTRY_AUTH_FAILED');
    expect(finished(result).error?.message).toContain('rejected the credentials from auths[');
    expect(everything(result)).not.toContain('wrong-password');
  });

  it('a wrong password from a helper is the same error, naming the helper', async () => {
    const result = await run({ credHelpers: { [inject('privateRegistryAddress')]: 'wrong' } });
    expect(finished(result).error?.code).toBe('BERTH_REGISTRY_AUTH_FAILED');
    expect(finished(result).error?.message).toContain('docker-credential-wrong');
  });

  it('a missing helper is its own clear error, with no fallback to the auths entry', async () => {
    const result = await run({
      credHelpers: { [inject('privateRegistryAddress')]: 'not-installed' },
      ...(authConfig(user.password) as object),
    });
    expect(result.code).toBe(3);
    expect(finished(result).error?.code).toBe('BERTH_CREDENTIAL_HELPER_MISSING');
    expect(finished(result).error?.message).toContain(
      `docker-credential-not-installed (from credHelpers["${inject('privateRegistryAddress')}"]`,
    );
    expect(finished(result).error?.message).toContain(
      `for registry ${inject('privateRegistryAddress')} is not on PATH`,
    );
  });

  it('a failing helper is its own clear error, with no fallback', async () => {
    const result = await run({ credsStore: 'failing', ...(authConfig(user.password) as object) });
    expect(finished(result).error?.code).toBe('BERTH_CREDENTIAL_HELPER_FAILED');
    expect(finished(result).error?.message).toContain('docker-credential-failing (from credsStore');
    expect(finished(result).error?.message).toContain('exit code 3: the keychain is locked');
  });

  it('a helper that answers garbage is an error naming it', async () => {
    const result = await run({ credsStore: 'garbage' });
    expect(finished(result).error?.code).toBe('BERTH_CREDENTIAL_HELPER_FAILED');
    expect(finished(result).error?.message).toContain('not JSON');
  });

  it('no credentials at all: the pull is denied, and the fix says how to give some', async () => {
    const result = await berth(['run', jobDir(), '--image', privateImage, '--json', '--', 'true']);
    expect(finished(result).error?.code).toBe('BERTH_IMAGE_PULL_DENIED');
    expect(finished(result).error?.hint).toContain('BERTH_DOCKER_CONFIG_DIR');
    const empty = await run({ credsStore: 'empty' });
    expect(finished(empty).error?.code).toBe('BERTH_IMAGE_PULL_DENIED');
  });

  it('BERTH_CREDENTIALS_INVALID: a config.json that is not JSON, named with the variable that chose it', async () => {
    const dir = tempDir('berth-docker-config-');
    writeFileSync(path.join(dir, 'config.json'), '{"auths": {"registry": ');
    const result = await berth(
      ['run', jobDir(), '--image', privateImage, '--json', '--', 'echo never'],
      { BERTH_DOCKER_CONFIG_DIR: dir },
    );
    expect(result.code).toBe(3);
    expect(finished(result).error?.code).toBe('BERTH_CREDENTIALS_INVALID');
    expect(finished(result).error?.message).toContain(`${dir}/config.json`);
    expect(finished(result).error?.message).toContain('BERTH_DOCKER_CONFIG_DIR');
  });

  it('both config directory names set to different directories is an error', async () => {
    const result = await berth(['run', jobDir(), '--image', privateImage, '--', 'true'], {
      BERTH_DOCKER_CONFIG_DIR: '/tmp/one',
      SPACELIFT_DOCKER_CONFIG_DIR: '/tmp/two',
    });
    expect(result.code).toBe(2);
    expect(result.stderr).toContain(
      'BERTH_DOCKER_CONFIG_DIR=/tmp/one and SPACELIFT_DOCKER_CONFIG_DIR=/tmp/two name different directories',
    );
  });

  it.each([
    ['auths', (): unknown => authConfig(user.password)],
    ['a credential helper', (): unknown => ({ credsStore: 'good' })],
  ])(
    'credentials from %s never reach the job: not its environment, files, output, events, messages or stored log',
    async (_source, makeConfig) => {
      const config = dockerConfig(makeConfig());
      const b64 = Buffer.from(`${user.name}:${user.password}`).toString('base64');
      // The engine may have the image from an earlier test: make berth pull, with the credentials.
      await removeImage(engine, privateImage);
      const result = await berth(
        [
          'run',
          jobDir(),
          '--image',
          privateImage,
          '--json',
          '--',
          // The pattern is split so that the job's own script does not contain what it looks for.
          `a='${user.password.slice(0, 5)}'; b='${user.password.slice(5)}'; c='${b64.slice(0, 5)}'; d='${b64.slice(5)}'; ` +
            `env; echo ---; find / -xdev -type f 2>/dev/null | xargs grep -l -e "$a$b" -e "$c$d" 2>/dev/null; echo found-end`,
        ],
        { BERTH_DOCKER_CONFIG_DIR: config },
      );
      expect(result.code, result.stderr).toBe(0);
      expect(result.events.find((e) => e.type === 'image.resolved')).toMatchObject({
        source: 'pulled',
      });
      const output = jobOutput(result);
      expect(output).toContain('---\nfound-end\n');
      expect(output).not.toContain('BERTH_DOCKER_CONFIG_DIR');
      expect(output).not.toContain(config);
      expect(everything(result)).not.toContain(user.password);
      expect(everything(result)).not.toContain(b64);
      const log = readFileSync(finished(result).log.path as string, 'utf8');
      expect(log).toContain('found-end');
      expect(log).not.toContain(user.password);
      expect(log).not.toContain(b64);
    },
  );
});

describe('berth image check', () => {
  it('shows the normalised reference, registry, rule and credential source, and exits 0 when allowed', async () => {
    const result = await berth(['image', 'check', privateImage, '--json'], {
      BERTH_DOCKER_CONFIG_DIR: dockerConfig(authConfig(user.password)),
    });
    expect(result.code, result.stderr).toBe(0);
    const report = JSON.parse(result.stdout) as Record<string, unknown>;
    expect(report).toMatchObject({
      normalised: privateImage,
      registry: inject('privateRegistryAddress'),
      pool: 'private',
      allowed: true,
      credentials: 'docker-config',
      digest: expect.stringMatching(/^sha256:[0-9a-f]{64}$/) as string,
    });
    expect(report.credentialSource).toContain('auths[');
    expect(result.stdout).not.toContain(user.password);
  });

  it('exits non-zero and names the failing rule set on a public pool', async () => {
    const result = await berth([
      'image',
      'check',
      'quay.io.evil.example/app',
      '--pool',
      'public',
      '--json',
    ]);
    expect(result.code).toBe(3);
    expect(JSON.parse(result.stdout)).toMatchObject({
      allowed: false,
      registry: 'quay.io.evil.example',
      rule: null,
    });
  });

  it('says a private image is private on a public pool', async () => {
    const result = await berth([
      'image',
      'check',
      privateImage,
      '--pool',
      'public',
      '--allowed-registries',
      allowLocal,
    ]);
    expect(result.code).toBe(3);
    expect(result.stdout).toContain('BERTH_POLICY_PRIVATE_IMAGE');
  });
});
