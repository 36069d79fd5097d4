/**
 * Registry token authentication, the flow of Docker Hub, GHCR and most registries, with the real
 * registry (Debian's docker-registry, `auth: token`) verifying JWTs from a token issuer in the
 * harness: berth's own registry check and the engine's pull (and push) both go through it.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import type { EngineClient } from '../src/executor/docker/engine-client.js';
import { expectNothingLeftBehind } from './harness/cleanup.js';
import { finished, jobOutput, runBerth, testStateDir, type BerthResult } from './harness/cli.js';
import { pushImage, removeRepository, tagImage, testEngine } from './harness/engine.js';
import { jobDir } from './harness/files.js';
import { tempDir } from './harness/ownership.js';
import { startRegistry, type RunningRegistry } from './harness/registry.js';
import { startTokenIssuer, type TokenIssuer } from './harness/token-issuer.js';

const user = {
  name: 'token-user',
  password: 'token-pass-31337',
  identityToken: 'identity-refresh-token-5150-xyz',
};
let engine: EngineClient;
let issuer: TokenIssuer;
let registry: RunningRegistry;
let image: string;
let stateDir: string;

beforeAll(async () => {
  engine = testEngine();
  stateDir = testStateDir();
  issuer = await startTokenIssuer(user);
  registry = await startRegistry({ token: issuer });
  image = `${registry.address}/team/tokened:v1`;
  await tagImage(engine, inject('busyboxImage'), `${registry.address}/team/tokened`, 'v1');
  // The engine's push already walks the token flow: 401, token with the user, retry.
  await pushImage(engine, image, user);
  expect(issuer.issued.some((line) => line.startsWith(`${user.name} `))).toBe(true);
});

afterEach(async () => {
  await expectNothingLeftBehind(engine);
});

afterAll(async () => {
  await removeRepository(engine, `${registry.address}/team/tokened`);
  await registry.stop();
  await issuer.stop();
  engine.close();
});

function configWith(password: string): string {
  const dir = tempDir('berth-docker-config-');
  const auth = Buffer.from(`${user.name}:${password}`).toString('base64');
  writeFileSync(
    path.join(dir, 'config.json'),
    JSON.stringify({ auths: { [`http://${registry.address}`]: { auth } } }),
  );
  return dir;
}

function berth(args: string[], password: string): Promise<BerthResult> {
  return runBerth(args, {
    BERTH_STATE_DIR: stateDir,
    BERTH_DOCKER_CONFIG_DIR: configWith(password),
  });
}

describe('registry token authentication', () => {
  it("berth's registry check and the engine's pull both get tokens and run the image", async () => {
    await removeRepository(engine, `${registry.address}/team/tokened`);
    const before = issuer.issued.length;
    const result = await berth(
      ['run', jobDir(), '--image', image, '--json', '--', 'echo ran-with-a-token'],
      user.password,
    );
    expect(result.code, result.stderr).toBe(0);
    expect(jobOutput(result)).toBe('ran-with-a-token\n');
    const end = finished(result);
    expect(end.image.source).toBe('pulled');
    expect(end.image.digest).toMatch(/@sha256:[0-9a-f]{64}$/);
    // Tokens for pulling this repository, to the user: berth's check and the engine's pull.
    const granted = issuer.issued
      .slice(before)
      .filter((line) => line === `${user.name} repository:team/tokened:pull`);
    expect(granted.length).toBeGreaterThanOrEqual(2);
    expect(result.stdout + result.stderr).not.toContain(user.password);
  });

  it('berth image check resolves the digest through a token', async () => {
    const result = await berth(['image', 'check', image, '--json'], user.password);
    expect(result.code, result.stdout + result.stderr).toBe(0);
    expect(JSON.parse(result.stdout)).toMatchObject({
      allowed: true,
      registry: registry.address,
      credentials: 'docker-config',
      digest: expect.stringMatching(/^sha256:[0-9a-f]{64}$/) as string,
    });
  });

  it('a password the token service refuses is BERTH_REGISTRY_AUTH_FAILED, before any pull', async () => {
    const before = issuer.issued.length;
    const result = await berth(
      ['run', jobDir(), '--image', image, '--json', '--', 'echo never'],
      'wrong-password',
    );
    expect(result.code).toBe(3);
    expect(finished(result).error?.code).toBe('BERTH_REGISTRY_AUTH_FAILED');
    expect(issuer.issued.slice(before)).toContain(`${user.name} refused`);
    expect(result.stdout + result.stderr).not.toContain('wrong-password');
  });

  it('an identity token (OAuth2 refresh token) gets pull tokens for the check and the pull, and never reaches the job or the stored log', async () => {
    await removeRepository(engine, `${registry.address}/team/tokened`);
    const dir = tempDir('berth-docker-config-');
    writeFileSync(
      path.join(dir, 'config.json'),
      JSON.stringify({
        auths: { [`http://${registry.address}`]: { identitytoken: user.identityToken } },
      }),
    );
    const before = issuer.issued.length;
    const result = await runBerth(
      [
        'run',
        jobDir(),
        '--image',
        image,
        '--json',
        '--',
        'env; cat /proc/1/environ 2>/dev/null | tr "\\0" "\\n"; ls -la / /mnt/workspace 2>/dev/null; echo done',
      ],
      { BERTH_STATE_DIR: stateDir, BERTH_DOCKER_CONFIG_DIR: dir },
    );
    expect(result.code, result.stderr).toBe(0);
    expect(finished(result).image.source).toBe('pulled');
    // Tokens were granted on the refresh token: berth's check asks every time (the engine may
    // reuse a token it got moments ago in this file for its pull, so it is not counted here).
    const viaRefresh = issuer.issued
      .slice(before)
      .filter((line) =>
        line.startsWith(`${user.name} (refresh token) repository:team/tokened:pull`),
      );
    expect(viaRefresh.length, JSON.stringify(issuer.issued.slice(before))).toBeGreaterThanOrEqual(
      1,
    );
    expect(jobOutput(result)).toContain('done\n');
    expect(result.stdout + result.stderr).not.toContain(user.identityToken);
    const stored = readFileSync(finished(result).log.path as string, 'utf8');
    expect(stored).toContain('done');
    expect(stored).not.toContain(user.identityToken);
  });
});
