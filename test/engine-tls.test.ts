/**
 * berth talking to a Docker engine over TLS, as the Docker CLI does with DOCKER_TLS_VERIFY and
 * DOCKER_CERT_PATH: a real job through the test engine's own `dockerd --tlsverify` endpoint,
 * which checks client certificates, and the errors when the certificates do not fit.
 */
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import type { EngineClient } from '../src/executor/docker/engine-client.js';
import { expectNothingLeftBehind } from './harness/cleanup.js';
import { finished, jobOutput, runBerth, testStateDir } from './harness/cli.js';
import { testEngine } from './harness/engine.js';
import { tlsEngine, type TlsEngine } from './harness/engine-tls.js';
import { jobDir } from './harness/files.js';
import { startReleaseMirror } from './harness/release-mirror.js';

let engine: EngineClient;
let endpoint: TlsEngine;
let stateDir: string;

beforeAll(() => {
  engine = testEngine();
  endpoint = tlsEngine();
  stateDir = testStateDir();
});

afterEach(async () => {
  await expectNothingLeftBehind(engine);
});

afterAll(() => engine.close());

function run(env: Record<string, string | undefined>, json = true) {
  return runBerth(
    [
      'run',
      jobDir(),
      '--image',
      inject('busyboxImage'),
      '--pull',
      'never',
      ...(json ? ['--json'] : []),
      '--',
      'echo over-tls; echo on-stderr >&2',
    ],
    { BERTH_STATE_DIR: stateDir, DOCKER_HOST: endpoint.host, ...env },
  );
}

describe('a Docker engine over TLS', () => {
  it('gets the Terraform binary as a copy owned by root, since it may not see this host', async () => {
    const mirror = await startReleaseMirror('terraform');
    try {
      await mirror.publish('1.6.2', { content: '#!/bin/sh\necho "stand-in terraform $*"\n' });
      const dir = jobDir({
        '.berth/config.yml': 'version: 2\nstack_defaults:\n  terraform_version: "1.6.2"\n',
      });
      const result = await runBerth(
        [
          'run',
          dir,
          '--image',
          inject('busyboxImage'),
          '--pull',
          'never',
          '--json',
          '--',
          "terraform version; stat -c '%u %a' /bin/terraform; grep -c ' /bin/terraform ' /proc/self/mountinfo; echo x > /bin/terraform || echo read-only",
        ],
        {
          BERTH_STATE_DIR: stateDir,
          DOCKER_HOST: endpoint.host,
          DOCKER_TLS_VERIFY: '1',
          DOCKER_CERT_PATH: endpoint.certPath,
          BERTH_TERRAFORM_RELEASES_URL: mirror.baseUrl,
          BERTH_TERRAFORM_SIGNING_KEY_FILE: mirror.keyFile,
        },
      );
      expect(result.code, result.stderr).toBe(0);
      expect(jobOutput(result, 'stdout')).toBe('stand-in terraform version\n0 755\n0\nread-only\n');
      expect(result.events.find((e) => e.type === 'tool.ready')).toMatchObject({
        platform: 'linux_amd64',
        path: '/bin/terraform',
        delivery: 'copied',
      });
    } finally {
      await mirror.stop();
    }
  });

  it('runs a job through an engine endpoint that checks certificates both ways', async () => {
    const result = await run({ DOCKER_TLS_VERIFY: '1', DOCKER_CERT_PATH: endpoint.certPath });
    expect(result.code, result.stderr).toBe(0);
    expect(jobOutput(result, 'stdout')).toBe('over-tls\n');
    expect(jobOutput(result, 'stderr')).toBe('on-stderr\n');
    expect(finished(result).state).toBe('FINISHED');
  });

  it('refuses an engine whose certificate is not from the CA in ca.pem, saying what to check', async () => {
    const result = await run(
      { DOCKER_TLS_VERIFY: '1', DOCKER_CERT_PATH: endpoint.wrongCaPath },
      false,
    );
    expect(result.code).toBe(4);
    expect(result.stderr).toContain(`the Docker engine at ${endpoint.host} failed the TLS check`);
    expect(result.stderr).toContain('BERTH_DOCKER_UNREACHABLE');
    expect(result.stderr).toContain(`${endpoint.wrongCaPath}/ca.pem`);
  });

  it('says the TLS check failed when the engine wants a client certificate berth does not have', async () => {
    const result = await run(
      { DOCKER_TLS_VERIFY: '1', DOCKER_CERT_PATH: endpoint.noClientCertPath },
      false,
    );
    expect(result.code).toBe(4);
    expect(result.stderr).toContain('failed the TLS check');
    // Go's TLS answers "bad certificate" (TLS 1.2) or "certificate required" (TLS 1.3).
    expect(result.stderr).toMatch(/alert (bad certificate|certificate required)\)/);
    expect(result.stderr).toContain('client certificate there (cert.pem, key.pem)');
  });

  it('tells a plain connection to a TLS engine to turn TLS on', async () => {
    const result = await run({ DOCKER_TLS_VERIFY: undefined }, false);
    expect(result.code).toBe(4);
    expect(result.stderr).toContain(
      `the Docker engine at ${endpoint.host} speaks TLS and refused a plain connection`,
    );
    // The engine's answer ends with a newline: the code stays on the message's line.
    expect(result.stderr).toMatch(/HTTPS server\.? \[BERTH_DOCKER_UNREACHABLE\]/);
    expect(result.stderr).toContain('set DOCKER_TLS_VERIFY=1');
  });

  it('does not connect without checking the engine certificate', async () => {
    const result = await run({ DOCKER_TLS: '1', DOCKER_TLS_VERIFY: undefined }, false);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('DOCKER_TLS is set without DOCKER_TLS_VERIFY');
  });
});
