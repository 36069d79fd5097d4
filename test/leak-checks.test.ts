/**
 * The harness's own leak checks (test/harness/ownership.ts): they fail on a container the run
 * made and left, and never touch another berth's containers on the same engine; temp dirs stay
 * inside the run's own directory and are removed.
 */
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { DockerExecutor } from '../src/executor/docker/docker-executor.js';
import { LABELS } from '../src/executor/executor.js';
import { isLauncherAlive, launcherIdOf } from '../src/launcher/launcher-identity.js';
import { expectNoBerthContainers, removeContainerNow } from './harness/cleanup.js';
import { EngineClient } from '../src/executor/docker/engine-client.js';
import { berthContainers, imageExists, testEngine } from './harness/engine.js';
import { removeTempDirs, suiteTmp, tempDir, testLauncherId } from './harness/ownership.js';

let engine: EngineClient;

beforeAll(() => {
  engine = testEngine();
});

afterAll(() => engine.close());

async function labelledContainer(launcherId: string): Promise<string> {
  const created = await engine.json<{ Id: string }>('POST', '/containers/create', {
    body: {
      Image: inject('busyboxImage'),
      Cmd: ['true'],
      Labels: {
        [LABELS.managed]: 'true',
        [LABELS.runId]: 'leak-check',
        [LABELS.launcherId]: launcherId,
        [LABELS.expiresAt]: new Date(Date.now() + 600_000).toISOString(),
      },
    },
  });
  return created.Id;
}

async function exists(id: string): Promise<boolean> {
  const all = await engine.json<{ Id: string }[]>('GET', '/containers/json', {
    query: { all: 1 },
  });
  return all.some((c) => c.Id === id);
}

describe('leak checks', () => {
  it('fail when a container of this run is left, and remove it', async () => {
    const id = await labelledContainer(testLauncherId('left-on-purpose'));
    await expect(expectNoBerthContainers(engine)).rejects.toThrow(
      /expected \[.+\] to deeply equal/,
    );
    expect(await exists(id)).toBe(false);
  });

  it("leave another live berth's containers alone, here and in the start-up orphan sweep", async () => {
    // PID 1 stands for another berth: alive, on this machine, not started by this run.
    const foreign = launcherIdOf(1);
    expect(isLauncherAlive(foreign)).toBe(true);
    const id = await labelledContainer(foreign);
    try {
      await expectNoBerthContainers(engine);
      expect(await berthContainers(engine)).toEqual([]);
      expect(await exists(id)).toBe(true);
      // What global set-up runs before the suite.
      await new DockerExecutor(engine).removeOrphans(isLauncherAlive, new Date());
      expect(await exists(id)).toBe(true);
    } finally {
      await removeContainerNow(engine, id);
    }
  });

  it('make temp dirs inside the run’s own directory and remove them after the file', () => {
    const root = inject('suiteDir');
    expect(tmpdir()).toBe(suiteTmp(root));
    const dir = tempDir('berth-leak-check-');
    expect(path.dirname(dir)).toBe(suiteTmp(root));
    expect(existsSync(dir)).toBe(true);
    removeTempDirs();
    expect(existsSync(dir)).toBe(false);
  });
});

describe('harness engine helpers', () => {
  it('imageExists says false only for an absent image; an engine failure fails the test', async () => {
    expect(await imageExists(engine, 'berth-test/absent-on-purpose:none')).toBe(false);
    expect(await imageExists(engine, inject('busyboxImage'))).toBe(true);
    const unreachable = EngineClient.fromEnv({ DOCKER_HOST: 'unix:///nonexistent/berth.sock' });
    try {
      await expect(imageExists(unreachable, inject('busyboxImage'))).rejects.toThrow(
        /nonexistent\/berth\.sock/,
      );
    } finally {
      unreachable.close();
    }
  });
});
