/**
 * berth's own HTTP (registry checks, tool releases) through the proxy named by HTTP_PROXY (for
 * http:// URLs) and HTTPS_PROXY (for https:// URLs), and not through it for hosts in NO_PROXY.
 */
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import type { EngineClient } from '../src/executor/docker/engine-client.js';
import { expectNothingLeftBehind } from './harness/cleanup.js';
import { finished, jobOutput, runBerth, testStateDir } from './harness/cli.js';
import { testEngine } from './harness/engine.js';
import { jobDir } from './harness/files.js';
import { startHttpProxy, type HttpProxy } from './harness/http-proxy.js';
import { startReleaseMirror, type ReleaseMirror } from './harness/release-mirror.js';
import { issueCertificate, makeCa, type TestCa } from './harness/certs.js';
import { tempDir } from './harness/ownership.js';

let engine: EngineClient;
let proxy: HttpProxy;
let mirror: ReleaseMirror;
let httpsProxy: HttpProxy;
let httpsMirror: ReleaseMirror;
let ca: TestCa;
let stateDir: string;

beforeAll(async () => {
  engine = testEngine();
  proxy = await startHttpProxy();
  mirror = await startReleaseMirror('terraform');
  await mirror.publish('1.6.2', { content: '#!/bin/sh\necho "stand-in terraform $*"\n' });
  httpsProxy = await startHttpProxy();
  ca = makeCa(tempDir('berth-proxy-ca-'));
  const cert = issueCertificate(ca, 'release mirror', { server: 'IP:127.0.0.1' });
  httpsMirror = await startReleaseMirror('terraform', 'linux_amd64', 'hashicorp', cert);
  await httpsMirror.publish('1.6.3', { content: '#!/bin/sh\necho "tls terraform $*"\n' });
  stateDir = testStateDir();
});

afterEach(async () => {
  await expectNothingLeftBehind(engine);
});

afterAll(async () => {
  await mirror.stop();
  await httpsMirror.stop();
  await proxy.stop();
  await httpsProxy.stop();
  engine.close();
});

function run(image: string, env: Record<string, string>, config?: string) {
  return runBerth(
    [
      'run',
      jobDir(config ? { '.berth/config.yml': config } : {}),
      '--image',
      image,
      '--pull',
      'always',
      '--json',
      '--',
      config ? 'terraform version' : 'echo through',
    ],
    { BERTH_STATE_DIR: stateDir, ...env },
  );
}

describe('HTTP_PROXY, HTTPS_PROXY and NO_PROXY', () => {
  it('sends the registry check and the tool download through the proxy', async () => {
    const before = proxy.seen.length;
    const result = await run(
      inject('registryImage'),
      {
        HTTP_PROXY: proxy.url,
        BERTH_TERRAFORM_RELEASES_URL: mirror.baseUrl,
        BERTH_TERRAFORM_SIGNING_KEY_FILE: mirror.keyFile,
      },
      'version: 2\nstack_defaults:\n  terraform_version: "1.6.2"\n',
    );
    expect(result.code, result.stderr).toBe(0);
    expect(jobOutput(result)).toBe('stand-in terraform version\n');
    // undici tunnels every proxied request (plain HTTP too) with CONNECT.
    const seen = proxy.seen.slice(before);
    expect(seen).toContain(`CONNECT ${new URL(mirror.baseUrl).host}`);
    expect(seen).toContain(`CONNECT ${inject('registryAddress')}`);
    expect(finished(result).image.digest).toMatch(/@sha256:/);
  });

  it('sends https:// requests through HTTPS_PROXY and http:// ones through HTTP_PROXY', async () => {
    const [httpBefore, httpsBefore] = [proxy.seen.length, httpsProxy.seen.length];
    const result = await run(
      inject('registryImage'),
      {
        HTTP_PROXY: proxy.url,
        HTTPS_PROXY: httpsProxy.url,
        NODE_EXTRA_CA_CERTS: ca.cert,
        BERTH_TERRAFORM_RELEASES_URL: httpsMirror.baseUrl,
        BERTH_TERRAFORM_SIGNING_KEY_FILE: httpsMirror.keyFile,
      },
      'version: 2\nstack_defaults:\n  terraform_version: "1.6.3"\n',
    );
    expect(result.code, result.stderr).toBe(0);
    expect(jobOutput(result)).toBe('tls terraform version\n');
    const mirrorHost = new URL(httpsMirror.baseUrl).host;
    expect(httpsProxy.seen.slice(httpsBefore)).toContain(`CONNECT ${mirrorHost}`);
    expect(httpsProxy.seen.slice(httpsBefore)).not.toContain(
      `CONNECT ${inject('registryAddress')}`,
    );
    expect(proxy.seen.slice(httpBefore)).toContain(`CONNECT ${inject('registryAddress')}`);
    expect(proxy.seen.slice(httpBefore)).not.toContain(`CONNECT ${mirrorHost}`);
  });

  it('goes direct to hosts in NO_PROXY', async () => {
    const before = proxy.seen.length;
    const result = await run(inject('registryImage'), {
      HTTP_PROXY: proxy.url,
      NO_PROXY: '127.0.0.1',
    });
    expect(result.code, result.stderr).toBe(0);
    expect(jobOutput(result)).toBe('through\n');
    expect(proxy.seen.slice(before)).toEqual([]);
  });
});
