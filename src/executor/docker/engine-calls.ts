/**
 * Engine calls shared by the executor and its jobs: copying archives in, removing containers,
 * and naming phase scripts.
 */
import { createHash } from 'node:crypto';
import { PassThrough } from 'node:stream';
import { BerthError } from '../../domain/errors.js';
import { CONTROL_DIR, WORKSPACE_DIR } from '../executor.js';
import { createArchive, readFileFromArchive, type ArchiveEntry } from './archive.js';
import { DockerApiError, errorText, isDiskFull } from './daemon-errors.js';
import type { EngineClient } from './engine-client.js';
import { removeHostDir } from './host-workspace.js';

export const ROOT = { uid: 0, gid: 0 };
const DESTROY_DEADLINE_MS = 30_000;

/** Phase scripts are named by their content, so one known up front is never copied twice. */
export function phaseScriptEntry(script: string): ArchiveEntry & { kind: 'file' } {
  const digest = createHash('sha256').update(script).digest('hex').slice(0, 32);
  return {
    kind: 'file',
    name: `${CONTROL_DIR.slice(1)}/phases/${digest}.sh`,
    mode: 0o644,
    owner: ROOT,
    content: script,
  };
}

/** How often a long copy reports its progress (DockerExecutor's copyProgressIntervalMs). */
export const PROGRESS_INTERVAL_MS = 1000;

export async function uploadArchive(
  engine: EngineClient,
  id: string,
  entries: ArchiveEntry[],
  what: string,
  onProgress?: (bytes: number) => void,
  progressIntervalMs = PROGRESS_INTERVAL_MS,
): Promise<void> {
  const archive = createArchive(entries);
  let sent = 0;
  const counted = onProgress ? archive.stream.pipe(new PassThrough()) : archive.stream;
  if (onProgress) {
    archive.stream.on('data', (chunk: Buffer) => {
      sent += chunk.length;
    });
    archive.stream.on('error', (err) => counted.destroy(err));
  }
  const ticker = onProgress ? setInterval(() => onProgress(sent), progressIntervalMs) : undefined;
  try {
    await Promise.all([
      engine.json('PUT', `/containers/${id}/archive`, {
        query: { path: '/', noOverwriteDirNonDir: true },
        body: counted,
        deadlineMs: 10 * 60_000,
      }),
      archive.done,
    ]);
  } catch (err) {
    if (err instanceof BerthError) throw err;
    const text = err instanceof DockerApiError ? err.engineMessage : errorText(err);
    if (isDiskFull(text)) {
      throw new BerthError(
        'BERTH_DISK_FULL',
        `no space left while copying ${what} into the container: ${text}`,
        { cause: err },
      );
    }
    throw new BerthError(
      'BERTH_WORKSPACE_NOT_WRITABLE',
      `could not write ${what} into the container at ${WORKSPACE_DIR}: ${text}`,
      {
        cause: err,
      },
    );
  } finally {
    clearInterval(ticker);
  }
}

export async function removeContainer(engine: EngineClient, id: string): Promise<void> {
  try {
    await engine.json('DELETE', `/containers/${id}`, {
      query: { force: 1, v: 1 },
      deadlineMs: DESTROY_DEADLINE_MS,
    });
  } catch (err) {
    // Gone already, or another remover got there first: the outcome we want.
    if (
      err instanceof DockerApiError &&
      (err.status === 404 || /already in progress/.test(err.engineMessage))
    )
      return;
    throw err;
  }
}

/**
 * Removes a job's container and then its host directory (mounted workspaces), once the engine
 * says the container is gone: until then a process of the job may still be at work in the
 * directory, and another remover (the answer "already in progress") may not be done. A directory
 * left for that reason is the orphan sweep's.
 */
export async function removeJob(
  engine: EngineClient,
  id: string,
  hostDir: string | null,
): Promise<void> {
  await removeContainer(engine, id);
  if (hostDir) await removeJobDir(engine, id, hostDir);
}

/** The host directory of a job whose container was removed, if the engine says it is gone. */
export async function removeJobDir(
  engine: EngineClient,
  id: string,
  hostDir: string,
): Promise<void> {
  // Another remover ("already in progress") is given a few seconds to finish.
  for (let attempt = 0; ; attempt += 1) {
    try {
      await engine.json('GET', `/containers/${id}/json`);
    } catch (err) {
      if (err instanceof DockerApiError && err.status === 404) break;
      return;
    }
    if (attempt >= GONE_CHECKS) return;
    await new Promise((resolve) => setTimeout(resolve, GONE_CHECK_MS));
  }
  await removeHostDir(hostDir);
}

const GONE_CHECKS = 10;
const GONE_CHECK_MS = 300;

/** Reads one file out of a container (running or not); null when it does not exist. */
export async function readContainerFile(
  engine: EngineClient,
  id: string,
  file: string,
  maxBytes: number,
): Promise<Buffer | null> {
  try {
    const res = await engine.stream('GET', `/containers/${id}/archive`, { query: { path: file } });
    return await readFileFromArchive(res, maxBytes);
  } catch (err) {
    if (err instanceof DockerApiError && err.status === 404) return null;
    throw err;
  }
}
