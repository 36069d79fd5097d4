import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { JOB_PLUGIN_CACHE, hostPlatform, pluginCache, sharedCacheIsSafe } from './tool-setup.js';

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

  it("names the host's platform as release files do", () => {
    expect(hostPlatform('x64')).toBe('linux_amd64');
    expect(hostPlatform('arm64')).toBe('linux_arm64');
  });
});
