import { existsSync, mkdirSync, mkdtempSync, readdirSync, statSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { BerthError } from '../domain/errors.js';
import {
  JOB_PLUGIN_CACHE,
  hostPlatform,
  pluginCache,
  prepareTool,
  sharedCacheIsSafe,
} from './tool-setup.js';

const local = { platform: 'linux_amd64', sharesHostFiles: true };
const remote = { platform: 'linux_amd64', sharesHostFiles: false };

describe('pluginCache', () => {
  it('is none without a cache directory', async () => {
    expect(await pluginCache('tofu', '1.10.0', undefined, local)).toBeNull();
  });

  it('gives a job its own cache when the tool is not safe with a shared one', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'berth-cache-'));
    const cache = await pluginCache('terraform', '1.9.0', dir, local);
    expect(cache).toMatchObject({ mount: null, env: { TF_PLUGIN_CACHE_DIR: JOB_PLUGIN_CACHE } });
    expect(cache?.note).toContain('not safe with a plugin cache shared');
    expect(sharedCacheIsSafe('terraform', '1.9.0')).toBe(false);
  });

  it('gives a job its own cache when the engine cannot mount this host directory', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'berth-cache-'));
    const cache = await pluginCache('tofu', '1.10.0', dir, remote);
    expect(cache).toMatchObject({ mount: null, env: { TF_PLUGIN_CACHE_DIR: JOB_PLUGIN_CACHE } });
    expect(cache?.note).toContain('the Docker engine is not on this machine');
    // Nothing is created on this host for an engine elsewhere.
    expect(existsSync(path.join(dir, 'tofu'))).toBe(false);
  });

  it('keeps tenants apart: each scope (a stack on a public pool) gets a directory of its own', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'berth-cache-'));
    const a = await pluginCache('tofu', '1.10.0', dir, local, 'team-a-prod');
    const b = await pluginCache('tofu', '1.10.0', dir, local, 'team-b-prod');
    expect(a?.mount?.source).toBe(path.join(dir, 'scopes/team-a-prod/tofu/linux_amd64'));
    expect(b?.mount?.source).toBe(path.join(dir, 'scopes/team-b-prod/tofu/linux_amd64'));
    // Neither mount contains the other: a job of one tenant cannot reach the other's entries.
    expect(path.relative(a?.mount?.source as string, b?.mount?.source as string)).toMatch(/^\.\./);
  });

  it.each(['..', '../../etc', 'a/b', ''])(
    'refuses the scope %j instead of making a path with it',
    async (scope) => {
      const dir = mkdtempSync(path.join(tmpdir(), 'berth-cache-'));
      const error = await pluginCache('tofu', '1.10.0', dir, local, scope).catch((e: unknown) => e);
      expect((error as BerthError).code).toBe('BERTH_CONFIG_INVALID');
      expect(readdirSync(dir)).toEqual([]);
    },
  );

  it('never hands over or mounts a symlink planted in the cache directory', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'berth-cache-'));
    const victim = mkdtempSync(path.join(tmpdir(), 'berth-victim-'));
    mkdirSync(path.join(dir, 'tofu'));
    symlinkSync(victim, path.join(dir, 'tofu', 'linux_amd64'));
    const error = await pluginCache('tofu', '1.10.0', dir, local).catch((e: unknown) => e);
    expect((error as BerthError).code).toBe('BERTH_CONFIG_INVALID');
    expect((error as BerthError).message).toContain('a symlink');
    expect(statSync(victim).uid).toBe(process.getuid?.());
  });

  it("names the host's platform as release files do", () => {
    expect(hostPlatform('x64')).toBe('linux_amd64');
    expect(hostPlatform('arm64')).toBe('linux_arm64');
  });
});

describe('the tool directory (BERTH_TOOL_DIR)', () => {
  const request = {
    tool: 'terraform' as const,
    constraint: '1.6.2',
    // Never reached: the directory is checked before anything is resolved or downloaded.
    source: {
      tool: 'terraform' as const,
      layout: 'hashicorp' as const,
      indexUrl: 'http://127.0.0.1:9/index.json',
      baseUrl: 'http://127.0.0.1:9',
      signatureSuffix: '.sig',
      keys: [],
    },
    cacheDir: '/nonexistent',
  };
  const target = { ...local, searchPath: ['/usr/local/bin', '/usr/bin', '/bin'], image: 'img:1' };

  it.each(['/opt/tools', 'bin', '/usr/local/bin/terraform'])(
    'refuses %s, which is not on the image PATH, naming the PATH',
    async (binDir) => {
      const error = await prepareTool({ ...request, binDir }, target).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(BerthError);
      expect((error as BerthError).code).toBe('BERTH_CONFIG_INVALID');
      expect((error as BerthError).message).toContain(
        `BERTH_TOOL_DIR=${binDir} is not a directory on the PATH of image img:1 (/usr/local/bin:/usr/bin:/bin)`,
      );
    },
  );

  it("checks against Docker's default PATH when the image sets none", async () => {
    const error = await prepareTool(
      { ...request, binDir: '/opt' },
      { ...target, searchPath: null },
    ).catch((e: unknown) => e);
    expect((error as BerthError).message).toContain('/usr/local/sbin:/usr/local/bin');
  });
});
