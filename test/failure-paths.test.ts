/**
 * Error codes provoked for real through `berth run` and `berth image check`: an engine that stops
 * answering or refuses (a socket proxy in front of the real engine), an image the workspace cannot
 * be written into, a registry that cannot be reached, a reference that is not one. Each test names
 * the code it triggers; test/error-catalogue.test.ts checks every code has such a test.
 */
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import type { EngineClient } from '../src/executor/docker/engine-client.js';
import { expectNothingLeftBehind } from './harness/cleanup.js';
import { finished, jobOutput, runBerth, testStateDir, type BerthResult } from './harness/cli.js';
import { testEngine } from './harness/engine.js';
import { startEngineProxy, type EngineProxy, type ProxyAnswer } from './harness/engine-proxy.js';
import { jobDir } from './harness/files.js';
import { ensureBuiltImage } from './harness/images.js';
import { pushImage, removeImage, tagImage } from './harness/engine.js';
import { startRegistryProxy, type RegistryFault } from './harness/registry-proxy.js';
import { randomBytes } from 'node:crypto';
import { readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { buildImage } from '../src/executor/docker/image-build.js';
import { imageExists } from './harness/engine.js';
import { tempDir } from './harness/ownership.js';

let engine: EngineClient;
let busybox: string;
let stateDir: string;
const proxies: EngineProxy[] = [];

beforeAll(() => {
  engine = testEngine();
  busybox = inject('busyboxImage');
  stateDir = testStateDir();
});

afterEach(async () => {
  for (const proxy of proxies.splice(0)) await proxy.stop();
  await expectNothingLeftBehind(engine);
});

afterAll(() => engine.close());

function berth(args: string[], env: Record<string, string> = {}): Promise<BerthResult> {
  return runBerth(args, { BERTH_STATE_DIR: stateDir, ...env });
}

async function throughProxy(
  rule: (method: string, path: string) => ProxyAnswer,
): Promise<EngineProxy> {
  const proxy = await startEngineProxy(rule);
  proxies.push(proxy);
  return proxy;
}

describe('the Docker engine fails', () => {
  it('BERTH_DOCKER_TIMEOUT: an engine that stops answering, naming the call it did not answer', async () => {
    const proxy = await throughProxy((_method, path) => (path === '/_ping' ? 'stall' : 'pass'));
    const result = await berth(
      ['run', jobDir(), '--image', busybox, '--pull', 'never', '--', 'true'],
      { DOCKER_HOST: proxy.host },
    );
    expect(result.code).toBe(4);
    expect(result.stderr).toContain('BERTH_DOCKER_TIMEOUT');
    expect(result.stderr).toContain(`did not answer GET /_ping`);
    expect(result.stderr).toContain(proxy.host);
  });

  it('BERTH_DOCKER_API: an engine whose API is older than berth supports', async () => {
    const proxy = await throughProxy((_method, path) =>
      path === '/_ping' ? { status: 200, headers: { 'api-version': '1.24' } } : 'pass',
    );
    const result = await berth(
      ['run', jobDir(), '--image', busybox, '--pull', 'never', '--', 'true'],
      { DOCKER_HOST: proxy.host },
    );
    expect(result.code).toBe(4);
    expect(result.stderr).toContain('BERTH_DOCKER_API');
    expect(result.stderr).toContain('speaks API 1.24');
  });

  it('BERTH_DOCKER_API, not BERTH_INTERNAL: an engine that refuses to attach (Podman answered 409)', async () => {
    const proxy = await throughProxy((method, path) =>
      method === 'POST' && /^\/containers\/[^/]+\/attach$/.test(path)
        ? { status: 409, body: { message: 'container state improper' } }
        : 'pass',
    );
    const result = await berth(
      ['run', jobDir(), '--image', busybox, '--pull', 'never', '--json', '--', 'echo never'],
      { DOCKER_HOST: proxy.host },
    );
    expect(proxy.seen.some((call) => call.endsWith('/attach'))).toBe(true);
    expect(result.code).toBe(4);
    const end = finished(result);
    expect(end.error?.code).toBe('BERTH_DOCKER_API');
    expect(end.error?.message).toContain('409');
    expect(end.error?.message).toContain('container state improper');
    // The refused container was removed all the same (the after-each check fails otherwise).
    expect(proxy.seen.some((call) => call.startsWith('DELETE /containers/'))).toBe(true);
  });
});

describe('the workspace cannot be written', () => {
  it('BERTH_WORKSPACE_NOT_WRITABLE: the image has a file where the copied workspace has a directory', async () => {
    const image = await ensureBuiltImage(
      engine,
      'file-in-workspace',
      `FROM ${busybox}\nUSER root\nRUN mkdir -p /mnt/workspace/source && echo file > /mnt/workspace/source/sub\nUSER 1983\n`,
    );
    const args = [
      'run',
      jobDir({ 'sub/a.txt': 'a directory in the workspace\n' }),
      '--image',
      image,
      '--pull',
      'never',
      '--json',
      '--',
      'cat sub/a.txt',
    ];
    // Copied in, the job directory would merge into what the image has there.
    const result = await berth(args, { BERTH_WORKSPACE: 'copy' });
    expect(result.code).toBe(4);
    const end = finished(result);
    expect(end.error?.code).toBe('BERTH_WORKSPACE_NOT_WRITABLE');
    expect(end.error?.message).toContain('/mnt/workspace');
    expect(end.phases).toEqual([]);
    // Mounted, the job's workspace hides the image's.
    const mounted = await berth(args, { BERTH_WORKSPACE: 'mount' });
    expect(mounted.code, mounted.stderr).toBe(0);
    expect(jobOutput(mounted)).toBe('a directory in the workspace\n');
  });

  it('BERTH_WORKSPACE_NOT_WRITABLE: the image has a file where the workspace is, mounted or copied', async () => {
    const image = await ensureBuiltImage(
      engine,
      'workspace-is-file',
      `FROM ${busybox}\nUSER root\nRUN mkdir -p /mnt && echo file > /mnt/workspace\nUSER 1983\n`,
    );
    for (const delivery of ['mount', 'copy']) {
      const result = await berth(
        ['run', jobDir(), '--image', image, '--pull', 'never', '--json', '--', 'echo never'],
        { BERTH_WORKSPACE: delivery },
      );
      expect(result.code, delivery).toBe(4);
      const end = finished(result);
      expect(end.error?.code, delivery).toBe('BERTH_WORKSPACE_NOT_WRITABLE');
      expect(end.error?.message).toContain(
        `image ${image} has a file where the workspace (/mnt/workspace) needs a directory`,
      );
      expect(end.phases).toEqual([]);
    }
    expect(readdirSync(path.join(stateDir, 'workspaces'))).toEqual([]);
  });
});

describe('the job directory', () => {
  it('BERTH_WORKSPACE_UNREADABLE: a job directory that is a file', async () => {
    const file = path.join(jobDir(), 'main.tf');
    const result = await berth(['run', file, '--image', busybox, '--pull', 'never', '--', 'true']);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('BERTH_WORKSPACE_UNREADABLE');
    expect(result.stderr).toContain(`${file} is not a directory`);
  });
});

describe('images and registries', () => {
  it('BERTH_REGISTRY_UNREACHABLE: a registry nothing listens on, with the default pull policy', async () => {
    const result = await berth([
      'run',
      jobDir(),
      '--image',
      '127.0.0.1:9/team/app:1',
      '--json',
      '--',
      'echo never',
    ]);
    expect(result.code).toBe(3);
    const end = finished(result);
    expect(end.error?.code).toBe('BERTH_REGISTRY_UNREACHABLE');
    expect(end.error?.message).toContain('127.0.0.1:9');
  });

  it('BERTH_IMAGE_INVALID: berth image check of something that is not a reference', async () => {
    const result = await berth(['image', 'check', 'Not An/Image;rm -rf', '--json']);
    expect(result.code).toBe(3);
    const report = JSON.parse(result.stdout) as { error?: { code: string; message: string } };
    expect(report.error?.code).toBe('BERTH_IMAGE_INVALID');
    expect(report.error?.message).toContain('Not An/Image;rm -rf');
  });
});

describe('pulls that break', () => {
  /**
   * An image with a layer the engine does not have, in the suite's registry, to be pulled
   * through a proxy that breaks the layer's download.
   */
  async function freshImageThrough(
    fault: RegistryFault,
  ): Promise<{ reference: string; seen: string[] }> {
    const nonce = randomBytes(6).toString('hex');
    const built = await ensureBuiltImage(
      engine,
      `pull-breaks-${nonce}`,
      `FROM ${busybox}\nUSER root\nRUN echo ${nonce} > /nonce && head -c 3000000 /dev/urandom > /big\n`,
    );
    const registry = inject('registryAddress');
    const repository = `berth-test/pull-breaks-${nonce}`;
    await tagImage(engine, built, `${registry}/${repository}`, 'v1');
    await pushImage(engine, `${registry}/${repository}:v1`);
    // Gone from the engine again: the pull must download the layer.
    await removeImage(engine, `${registry}/${repository}:v1`);
    await removeImage(engine, built);
    const proxy = await startRegistryProxy(registry, (method, path) =>
      method === 'GET' && path.includes('/blobs/sha256:') && !path.includes('/manifests/')
        ? fault
        : 'pass',
    );
    proxies.push({ host: proxy.address, seen: proxy.seen, stop: () => proxy.stop() });
    return { reference: `${proxy.address}/${repository}:v1`, seen: proxy.seen };
  }

  it('BERTH_IMAGE_PULL_TIMEOUT: a registry that stops sending a layer, bounded by --pull-timeout', async () => {
    const { reference, seen } = await freshImageThrough('stall');
    const result = await berth([
      'run',
      jobDir(),
      '--image',
      reference,
      '--pull-timeout',
      '3s',
      '--json',
      '--',
      'echo never',
    ]);
    expect(seen.some((line) => line.endsWith(' stall'))).toBe(true);
    expect(result.code).toBe(3);
    const end = finished(result);
    expect(end.error?.code).toBe('BERTH_IMAGE_PULL_TIMEOUT');
    expect(end.error?.message).toContain('3s');
  });

  it('BERTH_IMAGE_PULL_FAILED: a registry that drops the connection in the middle of a layer', async () => {
    const { reference, seen } = await freshImageThrough('drop');
    const result = await berth([
      'run',
      jobDir(),
      '--image',
      reference,
      '--json',
      '--',
      'echo never',
    ]);
    expect(seen.some((line) => line.endsWith(' drop'))).toBe(true);
    expect(result.code).toBe(3);
    const end = finished(result);
    expect(end.error?.code).toBe('BERTH_IMAGE_PULL_FAILED');
    expect(end.error?.message).toContain(reference.split(':v1')[0]);
  });
});

describe('builds that fail', () => {
  it("BERTH_RUNNER_IMAGE_BUILD_FAILED: a RUN step that fails, with the step's output kept", async () => {
    // berth's own build path (the one that builds the standard runner image) on the real engine.
    const context = tempDir('berth-failing-build-');
    writeFileSync(
      path.join(context, 'Dockerfile'),
      `FROM ${busybox}\nRUN echo step-output-before-failing && exit 3\n`,
    );
    const tag = `berth-test/failing-build:${randomBytes(4).toString('hex')}`;
    const lines: string[] = [];
    const error = await buildImage(engine, { contextDir: context, tag }, (line) =>
      lines.push(line),
    ).catch((err: unknown) => err);
    expect(error).toMatchObject({ code: 'BERTH_RUNNER_IMAGE_BUILD_FAILED' });
    expect((error as Error).message).toContain(`building ${tag} failed`);
    expect((error as Error).message).toMatch(/returned a non-zero code: 3/);
    expect(lines.join('\n')).toContain('step-output-before-failing');
    expect(await imageExists(engine, tag)).toBe(false);
  });
});
