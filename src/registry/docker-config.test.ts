import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { BerthError } from '../domain/errors.js';
import {
  credentialsFor,
  dockerConfigDirFrom,
  normaliseConfigKey,
  type HelperRunner,
} from './docker-config.js';

function configDir(config: unknown): { dir: string; origin: string } {
  const dir = mkdtempSync(path.join(tmpdir(), 'berth-config-unit-'));
  writeFileSync(
    path.join(dir, 'config.json'),
    typeof config === 'string' ? config : JSON.stringify(config),
  );
  return { dir, origin: 'BERTH_DOCKER_CONFIG_DIR' };
}

/** Records what a helper was asked; answers as told. */
function fakeHelpers(
  answers: Record<string, { code: number; stdout: string; stderr?: string } | 'missing'>,
): {
  runner: HelperRunner;
  calls: [string, string][];
} {
  const calls: [string, string][] = [];
  const runner: HelperRunner = (helper, serverUrl) => {
    calls.push([helper, serverUrl]);
    const answer = answers[helper];
    if (answer === undefined || answer === 'missing') {
      return Promise.resolve({ code: null, stdout: '', stderr: 'spawn ENOENT', missing: true });
    }
    return Promise.resolve({
      code: answer.code,
      stdout: answer.stdout,
      stderr: answer.stderr ?? '',
      missing: false,
    });
  };
  return { runner, calls };
}

const b64 = (text: string): string => Buffer.from(text).toString('base64');

describe('normaliseConfigKey', () => {
  it.each([
    ['https://index.docker.io/v1/', 'docker.io'],
    ['index.docker.io', 'docker.io'],
    ['registry-1.docker.io', 'docker.io'],
    ['docker.io', 'docker.io'],
    ['https://ghcr.io', 'ghcr.io'],
    ['http://127.0.0.1:5000/v2/', '127.0.0.1:5000'],
    ['Quay.IO', 'quay.io'],
  ])('%s → %s', (key, expected) => {
    expect(normaliseConfigKey(key)).toBe(expected);
  });
});

describe('credentialsFor', () => {
  it('reads auths in all their forms, with or without scheme', async () => {
    const config = configDir({
      auths: {
        'https://index.docker.io/v1/': { auth: b64('hubuser:hub:pass') },
        'ghcr.io': { username: 'u', password: 'p' },
        'https://quay.io': { identitytoken: 'refresh-me' },
        'registry.example.com': { registrytoken: 'bearer-me' },
      },
    });
    expect((await credentialsFor(config, 'docker.io', {})).credentials).toEqual({
      username: 'hubuser',
      password: 'hub:pass',
    });
    expect((await credentialsFor(config, 'ghcr.io', {})).credentials).toEqual({
      username: 'u',
      password: 'p',
    });
    expect((await credentialsFor(config, 'quay.io', {})).credentials).toEqual({
      identityToken: 'refresh-me',
    });
    expect((await credentialsFor(config, 'registry.example.com', {})).credentials).toEqual({
      registryToken: 'bearer-me',
    });
    const none = await credentialsFor(config, 'gcr.io', {});
    expect(none.credentials).toBeNull();
    expect(none.source).toContain('no entry for gcr.io');
  });

  it('asks credHelpers first, then credsStore, and gives Docker Hub its server URL', async () => {
    const { runner, calls } = fakeHelpers({
      hub: { code: 0, stdout: '{"ServerURL":"x","Username":"h","Secret":"s"}' },
      store: { code: 0, stdout: '{"Username":"<token>","Secret":"identity"}' },
    });
    const config = configDir({
      credHelpers: { 'index.docker.io': 'hub' },
      credsStore: 'store',
      auths: { 'ghcr.io': { auth: b64('a:b') } },
    });
    expect(await credentialsFor(config, 'docker.io', {}, runner)).toMatchObject({
      credentials: { username: 'h', password: 's' },
    });
    expect(await credentialsFor(config, 'ghcr.io', {}, runner)).toMatchObject({
      credentials: { identityToken: 'identity' },
    });
    expect(calls).toEqual([
      ['hub', 'https://index.docker.io/v1/'],
      ['store', 'ghcr.io'],
    ]);
  });

  it.each<
    [
      string,
      Record<string, { code: number; stdout: string; stderr?: string } | 'missing'>,
      string,
      string,
    ]
  >([
    ['missing', { h: 'missing' }, 'BERTH_CREDENTIAL_HELPER_MISSING', 'is not on PATH'],
    [
      'failing',
      { h: { code: 1, stdout: '', stderr: 'locked\nsecond line' } },
      'BERTH_CREDENTIAL_HELPER_FAILED',
      'exit code 1: locked',
    ],
    ['garbage', { h: { code: 0, stdout: 'hello' } }, 'BERTH_CREDENTIAL_HELPER_FAILED', 'not JSON'],
    [
      'no secret',
      { h: { code: 0, stdout: '{"Username":"u"}' } },
      'BERTH_CREDENTIAL_HELPER_FAILED',
      'without a Username and Secret',
    ],
  ])('a %s helper is an error naming helper and registry', async (_name, answers, code, words) => {
    const { runner } = fakeHelpers(answers);
    const config = configDir({
      credsStore: 'h',
      auths: { 'ghcr.io': { auth: b64('fallback:no') } },
    });
    const error = await credentialsFor(config, 'ghcr.io', {}, runner).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(BerthError);
    expect((error as BerthError).code).toBe(code);
    expect((error as BerthError).message).toContain('docker-credential-h');
    expect((error as BerthError).message).toContain('ghcr.io');
    expect((error as BerthError).message).toContain(words);
    expect((error as BerthError).message).not.toContain('second line');
  });

  it('takes "credentials not found" as no credentials', async () => {
    const { runner } = fakeHelpers({
      h: { code: 1, stdout: 'credentials not found in native keychain' },
    });
    const found = await credentialsFor(configDir({ credsStore: 'h' }), 'ghcr.io', {}, runner);
    expect(found.credentials).toBeNull();
    expect(found.source).toContain('has no credentials for ghcr.io');
  });

  it('rejects a malformed config.json and a malformed auth entry', async () => {
    await expect(credentialsFor(configDir('{not json'), 'ghcr.io', {})).rejects.toMatchObject({
      code: 'BERTH_CREDENTIALS_INVALID',
    });
    await expect(
      credentialsFor(configDir({ auths: { 'ghcr.io': { auth: b64('nocolon') } } }), 'ghcr.io', {}),
    ).rejects.toMatchObject({
      code: 'BERTH_CREDENTIALS_INVALID',
      message: expect.not.stringContaining('nocolon') as string,
    });
  });

  it('is empty, not an error, without config.json', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'berth-config-empty-'));
    expect((await credentialsFor({ dir, origin: 'x' }, 'ghcr.io', {})).credentials).toBeNull();
  });
});

describe('dockerConfigDirFrom', () => {
  it('prefers the flag, then BERTH_, then SPACELIFT_; none means none', () => {
    expect(dockerConfigDirFrom({ BERTH_DOCKER_CONFIG_DIR: '/a' }, '/flag')).toEqual({
      dir: '/flag',
      origin: '--docker-config-dir',
    });
    expect(dockerConfigDirFrom({ BERTH_DOCKER_CONFIG_DIR: '/a' })).toEqual({
      dir: '/a',
      origin: 'BERTH_DOCKER_CONFIG_DIR',
    });
    expect(dockerConfigDirFrom({ SPACELIFT_DOCKER_CONFIG_DIR: '/b' })).toEqual({
      dir: '/b',
      origin: 'SPACELIFT_DOCKER_CONFIG_DIR',
    });
    expect(
      dockerConfigDirFrom({ BERTH_DOCKER_CONFIG_DIR: '/a', SPACELIFT_DOCKER_CONFIG_DIR: '/a/' }),
    ).toEqual({ dir: '/a', origin: 'BERTH_DOCKER_CONFIG_DIR' });
    expect(dockerConfigDirFrom({ HOME: '/root' })).toBeNull();
  });

  it('refuses two different directories', () => {
    expect(() =>
      dockerConfigDirFrom({ BERTH_DOCKER_CONFIG_DIR: '/a', SPACELIFT_DOCKER_CONFIG_DIR: '/b' }),
    ).toThrow(/name different directories/);
  });
});
