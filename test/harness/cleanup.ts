/** Leak checks shared by every integration test file. */
import { expect } from 'vitest';
import type { EngineClient } from '../../src/executor/docker/engine-client.js';
import { expectNoChildren } from './cli.js';
import { berthContainers } from './engine.js';

export async function removeContainerNow(engine: EngineClient, id: string): Promise<void> {
  try {
    await engine.json('DELETE', `/containers/${id}`, { query: { force: 1, v: 1 } });
  } catch {
    // Already gone.
  }
}

/**
 * How long a container may still be on its way out: a worker reports a run FINISHED first and
 * removes its container right after, so a test that saw FINISHED may check a moment too early.
 * A container still there after this is left behind.
 */
const REMOVAL_SETTLE_MS = 15_000;

/** Fails the calling test when any berth container exists, and removes them so others start clean. */
export async function expectNoBerthContainers(engine: EngineClient): Promise<void> {
  const until = Date.now() + REMOVAL_SETTLE_MS;
  let left = await berthContainers(engine);
  while (left.length > 0 && Date.now() < until) {
    await new Promise((resolve) => setTimeout(resolve, 100));
    left = await berthContainers(engine);
  }
  for (const container of left) await removeContainerNow(engine, container.Id);
  expect(left.map((c) => c.Names.join(','))).toEqual([]);
}

/** The check after every CLI test: no berth process still running, no berth container left. */
export async function expectNothingLeftBehind(engine: EngineClient): Promise<void> {
  expectNoChildren();
  await expectNoBerthContainers(engine);
}
