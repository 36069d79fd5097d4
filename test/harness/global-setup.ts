/**
 * Once per test run: a reachable engine, the busybox image, a local registry with a test image in
 * it; afterwards, a check that no test left a container, network or volume behind.
 */
import type { TestProject } from 'vitest/node';
import { removeContainerNow } from './cleanup.js';
import { berthContainers, pushImage, tagImage, testEngine } from './engine.js';
import { ensureBusyboxImage } from './images.js';
import { startRegistry } from './registry.js';

declare module 'vitest' {
  export interface ProvidedContext {
    busyboxImage: string;
    registryAddress: string;
    registryImage: string;
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const engine = testEngine();
  try {
    await engine.ping();
  } catch (err) {
    throw new Error(
      `the tests need a running Docker engine (DOCKER_HOST=${process.env.DOCKER_HOST ?? 'unset, so /var/run/docker.sock'}): ${(err as Error).message}. Start one, or run \`sudo bash .ci/run\`, which starts its own.`,
      { cause: err },
    );
  }
  const before = await inventory();
  const busybox = await ensureBusyboxImage(engine);
  const registry = await startRegistry();
  const registryImage = `${registry.address}/berth-test/busybox:v1`;
  await tagImage(engine, busybox, `${registry.address}/berth-test/busybox`, 'v1');
  await pushImage(engine, registryImage);
  project.provide('busyboxImage', busybox);
  project.provide('registryAddress', registry.address);
  project.provide('registryImage', registryImage);

  return async () => {
    await registry.stop();
    const left = await berthContainers(engine);
    for (const container of left) await removeContainerNow(engine, container.Id);
    const after = await inventory();
    engine.close();
    const problems: string[] = [];
    if (left.length > 0) {
      problems.push(
        `${left.length} berth container(s) left behind: ${left.map((c) => c.Names.join(',')).join(' ')}`,
      );
    }
    const newNetworks = after.networks.filter((n) => !before.networks.includes(n));
    const newVolumes = after.volumes.filter((v) => !before.volumes.includes(v));
    if (newNetworks.length) problems.push(`networks left behind: ${newNetworks.join(', ')}`);
    if (newVolumes.length) problems.push(`volumes left behind: ${newVolumes.join(', ')}`);
    if (problems.length)
      throw new Error(`the test suite left things behind:\n${problems.join('\n')}`);
  };

  async function inventory(): Promise<{ networks: string[]; volumes: string[] }> {
    const networks = await engine.json<{ Name: string }[]>('GET', '/networks');
    const volumes = await engine.json<{ Volumes: { Name: string }[] | null }>('GET', '/volumes');
    return {
      networks: networks.map((n) => n.Name),
      volumes: (volumes.Volumes ?? []).map((v) => v.Name),
    };
  }
}
