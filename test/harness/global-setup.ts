/**
 * Once per test run: a reachable engine, the busybox image, a local registry with a test image in
 * it; afterwards, a check that no test left a container, network or volume behind.
 */
import type { TestProject } from 'vitest/node';
import { DockerExecutor } from '../../src/executor/docker/docker-executor.js';
import { isLauncherAlive } from '../../src/launcher/launcher-identity.js';
import { removeContainerNow } from './cleanup.js';
import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { recordedLaunchers } from './ownership.js';
import { closeSuiteDir, makeSuiteDir } from './suite-dir.js';
import { berthContainers, pushImage, removeImage, tagImage, testEngine } from './engine.js';
import { ensureBusyboxImage } from './images.js';
import { reapStaleRegistries, startRegistry, type RunningRegistry } from './registry.js';

declare module 'vitest' {
  export interface ProvidedContext {
    busyboxImage: string;
    registryAddress: string;
    registryImage: string;
    privateRegistryAddress: string;
    privateImage: string;
    privateUser: { name: string; password: string };
    /** The run's own directory (ownership.ts). */
    suiteDir: string;
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
  // A test run that was killed may have left containers and registries; clear what is provably
  // orphaned (its launcher process is gone) so this run starts clean.
  const orphans = await new DockerExecutor(engine).removeOrphans(isLauncherAlive, new Date());
  if (orphans.length > 0)
    console.warn(`removed ${orphans.length} container(s) left by a killed test run`);
  const reaped = reapStaleRegistries();
  if (reaped > 0)
    console.warn(
      `stopped ${reaped} registry process(es) left by an earlier test run that was killed`,
    );
  const suite = makeSuiteDir();
  project.provide('suiteDir', suite);
  const before = await inventory();
  const busybox = await ensureBusyboxImage(engine);
  // Whatever started is stopped again if set-up fails half-way.
  const started: RunningRegistry[] = [];
  try {
    const registry = await startRegistry();
    started.push(registry);
    const registryImage = `${registry.address}/berth-test/busybox:v1`;
    await tagImage(engine, busybox, `${registry.address}/berth-test/busybox`, 'v1');
    await pushImage(engine, registryImage);
    // A private registry: htpasswd auth, one image only its user may pull.
    const privateUser = { name: 'berth-test', password: `pw-${randomBytes(9).toString('hex')}` };
    const privateRegistry = await startRegistry({ user: privateUser });
    started.push(privateRegistry);
    const privateImage = `${privateRegistry.address}/team/private-busybox:v1`;
    await tagImage(engine, busybox, `${privateRegistry.address}/team/private-busybox`, 'v1');
    await pushImage(engine, privateImage, privateUser);
    // Untagged again: the tests decide when the engine has it cached.
    await removeImage(engine, privateImage);
    await removeImage(engine, registryImage);
    project.provide('privateRegistryAddress', privateRegistry.address);
    project.provide('privateImage', privateImage);
    project.provide('privateUser', privateUser);
    project.provide('busyboxImage', busybox);
    project.provide('registryAddress', registry.address);
    project.provide('registryImage', registryImage);
  } catch (err) {
    for (const service of started) await service.stop();
    engine.close();
    rmSync(suite, { recursive: true, force: true });
    throw err;
  }
  const [registry, privateRegistry] = started as [RunningRegistry, RunningRegistry];

  return async () => {
    await registry.stop();
    await privateRegistry.stop();
    // Only this run's containers: another berth's jobs on the same engine are not ours to judge.
    const launchers = recordedLaunchers(suite);
    const left = await berthContainers(engine, (id) => id !== undefined && launchers.has(id));
    for (const container of left) await removeContainerNow(engine, container.Id);
    const after = await inventory();
    engine.close();
    const leftFiles = closeSuiteDir(suite);
    const problems: string[] = [];
    if (left.length > 0) {
      problems.push(
        `${left.length} berth container(s) left behind: ${left.map((c) => c.Names.join(',')).join(' ')}`,
      );
    }
    if (leftFiles.length > 0)
      problems.push(
        `temp files left behind (use tempDir() of ownership.ts): ${leftFiles.join(' ')}`,
      );
    const newNetworks = after.networks.filter((n) => !before.networks.includes(n));
    const newVolumes = after.volumes.filter((v) => !before.volumes.includes(v));
    if (newNetworks.length) problems.push(`networks left behind: ${newNetworks.join(', ')}`);
    if (newVolumes.length) problems.push(`volumes left behind: ${newVolumes.join(', ')}`);
    if (problems.length) {
      // vitest 4 reports an error thrown here but still exits 0: set the exit code as well.
      process.exitCode = 1;
      throw new Error(`the test suite left things behind:\n${problems.join('\n')}`);
    }
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
