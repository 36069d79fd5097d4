/**
 * berth's own HTTP (registry checks, tool releases) through the proxy named by HTTP_PROXY /
 * HTTPS_PROXY, and not through it for hosts in NO_PROXY.
 */
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import type { EngineClient } from '../src/executor/docker/engine-client.js';
import { expectNothingLeftBehind } from './harness/cleanup.js';
import { finished, jobOutput, runBerth, testStateDir } from './harness/cli.js';
import { testEngine } from './harness/engine.js';
import { jobDir } from './harness/files.js';
import { startHttpProxy, type HttpProxy } from './harness/http-proxy.js';
import { startReleaseMirror, type ReleaseMirror } from './harness/release-mirror.js';

let engine: EngineClient;
let proxy: HttpProxy;
let mirror: ReleaseMirror;
let stateDir: string;

beforeAll(async () => {
  engine = testEngine();
  proxy = await startHttpProxy();
  mirror = await startReleaseMirror('terraform');
  await mirror.publish('1.6.2', { content: '#!/bin/sh\necho "stand-in terraform $*"\n' });
  stateDir = testStateDir();
});

afterEach(async () => {
  await expectNothingLeftBehind(engine);
});

afterAll(async () => {
  await mirror.stop();
  await proxy.stop();
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

describe('HTTP_PROXY and NO_PROXY', () => {
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
