/**
 * ECR, automatically: berth's real code path and the real AWS SDK ask a local ECR endpoint for a
 * token with the worker's AWS identity on every job; the engine pulls from the ECR host name,
 * which reaches a local TLS registry the way a user's engine reaches ECR (see harness/ecr.ts).
 */
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import type { EngineClient } from '../src/executor/docker/engine-client.js';
import { jobDir } from './harness/files.js';
import { expectNothingLeftBehind } from './harness/cleanup.js';
import { finished, jobOutput, runBerth, testStateDir, type BerthResult } from './harness/cli.js';
import { startFakeEcr, type FakeEcr } from './harness/ecr.js';
import { pushImage, removeImage, tagImage, testEngine } from './harness/engine.js';
import { tempDir } from './harness/ownership.js';

let engine: EngineClient;
let ecr: FakeEcr;
let image: string;
let stateDir: string;
let emptyHome: string;

/** The worker's environment: an AWS identity (or none), the SDK pointed at the local endpoint. */
function awsEnv(withCredentials: boolean): Record<string, string | undefined> {
  return {
    BERTH_STATE_DIR: stateDir,
    HOME: emptyHome,
    NODE_EXTRA_CA_CERTS: ecr.caFile,
    AWS_ENDPOINT_URL_ECR: ecr.endpoint,
    AWS_EC2_METADATA_DISABLED: 'true',
    AWS_CONFIG_FILE: path.join(emptyHome, 'no-config'),
    AWS_SHARED_CREDENTIALS_FILE: path.join(emptyHome, 'no-credentials'),
    AWS_PROFILE: undefined,
    AWS_REGION: undefined,
    AWS_DEFAULT_REGION: undefined,
    AWS_SESSION_TOKEN: undefined,
    AWS_WEB_IDENTITY_TOKEN_FILE: undefined,
    AWS_CONTAINER_CREDENTIALS_FULL_URI: undefined,
    AWS_CONTAINER_CREDENTIALS_RELATIVE_URI: undefined,
    AWS_ACCESS_KEY_ID: withCredentials ? ecr.accessKeyId : undefined,
    AWS_SECRET_ACCESS_KEY: withCredentials ? ecr.secretAccessKey : undefined,
    BERTH_DOCKER_CONFIG_DIR: undefined,
    SPACELIFT_DOCKER_CONFIG_DIR: undefined,
  };
}

function run(
  pool: 'public' | 'private',
  withCredentials = true,
  env: Record<string, string> = {},
): Promise<BerthResult> {
  return runBerth(
    ['run', jobDir(), '--pool', pool, '--image', image, '--json', '--', 'echo ran-from-ecr'],
    { ...awsEnv(withCredentials), ...env },
  );
}

beforeAll(async () => {
  engine = testEngine();
  stateDir = testStateDir();
  emptyHome = tempDir('berth-home-');
  ecr = await startFakeEcr();
  image = `${ecr.host}/team/app:v1`;
  await tagImage(engine, inject('busyboxImage'), `${ecr.host}/team/app`, 'v1');
  await pushImage(engine, image, { name: 'AWS', password: ecr.token });
  await removeImage(engine, image);
}, 120_000);

afterEach(async () => {
  ecr.denyAll = false;
  await expectNothingLeftBehind(engine);
});

afterAll(async () => {
  await removeImage(engine, image);
  await ecr?.stop();
  engine.close();
});

describe('ECR images', () => {
  it('are pulled with a token from the worker AWS identity, asked for once per job, on a private pool', async () => {
    const before = ecr.requests.length;
    const result = await run('private');
    expect(result.code, result.stderr).toBe(0);
    expect(jobOutput(result)).toBe('ran-from-ecr\n');
    expect(ecr.requests.slice(before)).toEqual([
      {
        accessKeyId: ecr.accessKeyId,
        region: 'us-east-1',
        service: 'ecr',
        registryIds: [ecr.account],
      },
    ]);
    expect(result.events.find((e) => e.type === 'image.checked')).toMatchObject({
      registry: ecr.host,
      credentials: `ECR token for account ${ecr.account} in us-east-1, from this worker's AWS identity`,
    });
    expect(finished(result).image.digest).toMatch(
      new RegExp(`^${ecr.host.replace(/\./g, '\\.')}/team/app@sha256:[0-9a-f]{64}$`),
    );
    expect(result.stdout + result.stderr).not.toContain(ecr.token);
    expect(result.stdout + result.stderr).not.toContain(ecr.secretAccessKey);

    // Every job asks again: tokens expire, cached images are no reason to skip the check.
    const again = await run('private');
    expect(again.code).toBe(0);
    expect(ecr.requests.length - before).toBe(2);
    // Both requests were signed with the right secret over what arrived.
    expect(ecr.badSignatures).toBe(0);
  });

  it("are refused on a public pool unless the operator lists the account: the worker's identity is not the tenant's", async () => {
    const before = ecr.requests.length;
    const refused = await run('public');
    expect(refused.code).toBe(3);
    const error = finished(refused).error;
    expect(error?.code).toBe('BERTH_POLICY_ECR_ACCOUNT_NOT_ALLOWED');
    expect(error?.message).toContain(`ECR account ${ecr.account} is not one whose images`);
    expect(error?.hint).toContain('BERTH_PUBLIC_ECR_ACCOUNTS');
    // Refused before the worker's identity was used at all.
    expect(ecr.requests.length).toBe(before);
    expect(jobOutput(refused)).toBe('');
  });

  it('work on a public pool with the worker identity for a listed account', async () => {
    const before = ecr.requests.length;
    const result = await run('public', true, { BERTH_PUBLIC_ECR_ACCOUNTS: ecr.account });
    expect(result.code, result.stderr).toBe(0);
    expect(result.events.find((e) => e.type === 'image.checked')).toMatchObject({
      pool: 'public',
      rule: '<account>.dkr.ecr.<region>.amazonaws.com',
    });
    expect(ecr.requests.length - before).toBe(1);
  });

  it('are refused a token when the secret key is wrong: the stand-in verifies the SigV4 signature', async () => {
    const before = ecr.badSignatures;
    const result = await runBerth(
      ['run', jobDir(), '--image', image, '--json', '--', 'echo never'],
      { ...awsEnv(true), AWS_SECRET_ACCESS_KEY: `not-${ecr.secretAccessKey}` },
    );
    expect(ecr.badSignatures).toBeGreaterThan(before);
    expect(result.code).toBe(3);
    expect(finished(result).error?.code).toMatch(/^BERTH_ECR_(FAILED|ACCESS_DENIED)$/);
    expect(finished(result).error?.message).toContain('InvalidSignatureException');
  });

  it('say which credentials chain was tried when the worker has no AWS identity', async () => {
    const result = await run('private', false);
    expect(result.code).toBe(3);
    const error = finished(result).error;
    expect(error?.code).toBe('BERTH_ECR_NO_CREDENTIALS');
    expect(error?.message).toContain(`image registry ${ecr.host} is ECR`);
    expect(error?.hint).toContain('EC2 instance role');
    expect(error?.hint).toContain('AWS_WEB_IDENTITY_TOKEN_FILE');
  });

  it('name the IAM actions when ECR denies the token', async () => {
    ecr.denyAll = true;
    const result = await run('private');
    expect(result.code).toBe(3);
    const error = finished(result).error;
    expect(error?.code).toBe('BERTH_ECR_ACCESS_DENIED');
    expect(error?.message).toContain('ecr:GetAuthorizationToken');
    expect(error?.message).toContain(
      'ecr:BatchGetImage, ecr:GetDownloadUrlForLayer, ecr:BatchCheckLayerAvailability',
    );
  });

  it('say so when the host names an unknown region or the wrong partition, before asking anything', async () => {
    const before = ecr.requests.length;
    for (const [host, words] of [
      ['123456789012.dkr.ecr.cn-north-1.amazonaws.com', 'China partition'],
      ['123456789012.dkr.ecr.useast1.amazonaws.com', 'is not an AWS region name'],
    ]) {
      const result = await runBerth(
        ['run', jobDir(), '--image', `${host}/team/app:v1`, '--json', '--', 'true'],
        awsEnv(true),
      );
      expect(result.code).toBe(3);
      expect(finished(result).error?.code).toBe('BERTH_ECR_FAILED');
      expect(finished(result).error?.message).toContain(words);
    }
    expect(ecr.requests.length).toBe(before);
  });
});
