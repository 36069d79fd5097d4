/**
 * The tests' handle on the real Docker engine: the same client berth uses, plus the few calls only
 * tests need (importing base images, listing what berth left behind).
 */
import { EngineClient, readAll } from '../../src/executor/docker/engine-client.js';
import { DockerApiError } from '../../src/executor/docker/daemon-errors.js';
import { LABELS } from '../../src/executor/executor.js';
import { ownsLauncher } from './ownership.js';

export function testEngine(): EngineClient {
  return EngineClient.fromEnv(process.env);
}

export interface LeftContainer {
  Id: string;
  Names: string[];
  Labels: Record<string, string>;
  State: string;
}

/**
 * Containers carrying berth's label, running or not, that this test worker's berth processes and
 * executor tests made (ownership.ts): other users' jobs on the same engine are never listed.
 */
export async function berthContainers(
  engine: EngineClient,
  ours: (launcherId: string | undefined) => boolean = ownsLauncher,
): Promise<LeftContainer[]> {
  const all = await engine.json<LeftContainer[]>('GET', '/containers/json', {
    query: { all: 1, filters: JSON.stringify({ label: [`${LABELS.managed}=true`] }) },
  });
  return all.filter((container) => ours(container.Labels[LABELS.launcherId]));
}

/** False only when the engine says the image is not there (404); any other failure throws. */
export async function imageExists(engine: EngineClient, reference: string): Promise<boolean> {
  try {
    await engine.json('GET', `/images/${encodeURI(reference)}/json`);
    return true;
  } catch (err) {
    if (err instanceof DockerApiError && err.status === 404) return false;
    throw err;
  }
}

export async function removeImage(engine: EngineClient, reference: string): Promise<void> {
  try {
    await engine.json('DELETE', `/images/${encodeURI(reference)}`, { query: { force: 1 } });
  } catch {
    // Already gone.
  }
}

/**
 * Removes every reference the engine has in `repository`, tags and digests alike (an image
 * pulled by digest keeps a digest reference after its tag is gone), so the next use must pull.
 */
export async function removeRepository(engine: EngineClient, repository: string): Promise<void> {
  const images = await engine.json<{ RepoTags?: string[] | null; RepoDigests?: string[] | null }[]>(
    'GET',
    '/images/json',
  );
  const references = images
    .flatMap((image) => [...(image.RepoTags ?? []), ...(image.RepoDigests ?? [])])
    .filter((ref) => ref.startsWith(`${repository}:`) || ref.startsWith(`${repository}@`));
  for (const reference of references) await removeImage(engine, reference);
}

export async function tagImage(
  engine: EngineClient,
  source: string,
  repo: string,
  tag: string,
): Promise<void> {
  await engine.json('POST', `/images/${encodeURI(source)}/tag`, { query: { repo, tag } });
}

/** Pushes an image the engine has to a registry, with a user when the registry needs one. */
export async function pushImage(
  engine: EngineClient,
  reference: string,
  user?: { name: string; password: string },
): Promise<void> {
  const colon = reference.lastIndexOf(':');
  const res = await engine.stream('POST', `/images/${encodeURI(reference.slice(0, colon))}/push`, {
    query: { tag: reference.slice(colon + 1) },
    headers: {
      'X-Registry-Auth': Buffer.from(
        JSON.stringify(
          user
            ? {
                username: user.name,
                password: user.password,
                serveraddress: reference.split('/')[0],
              }
            : {},
        ),
      ).toString('base64'),
    },
    deadlineMs: 120_000,
  });
  const text = await readAll(res);
  if (text.includes('"error"')) throw new Error(`push of ${reference} failed: ${text}`);
}

/**
 * Creates a file in a running container, as its job user: how a test tells a job waiting for it
 * that the test has seen what it was waiting for (instead of the job sleeping and hoping).
 */
export async function touchInContainer(
  engine: EngineClient,
  containerId: string,
  file: string,
): Promise<void> {
  const exec = await engine.json<{ Id: string }>('POST', `/containers/${containerId}/exec`, {
    body: { Cmd: ['touch', file], User: '1983:1983' },
  });
  await engine.json('POST', `/exec/${exec.Id}/start`, { body: { Detach: true } });
}
