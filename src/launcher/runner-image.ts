/**
 * berth's standard runner image: where its Dockerfile ships, what it is called, and building it
 * when it is neither present nor pullable.
 */
import { fileURLToPath } from 'node:url';
import { homedir } from 'node:os';
import path from 'node:path';
import { RUNNER_IMAGE_LABEL, type ResolvedImage } from '../executor/executor.js';
import { buildImage } from '../executor/docker/image-build.js';
import type { EngineClient } from '../executor/docker/engine-client.js';
import {
  WORKSPACE_DELIVERIES,
  type WorkspaceDelivery,
} from '../executor/docker/docker-executor.js';
import { BerthError } from '../domain/errors.js';

/** The default runner image: `latest` follows releases, `future` the main branch. */
export const DEFAULT_RUNNER_REPOSITORY = 'ghcr.io/berth-dev/runner';
export const RUNNER_TAGS = ['latest', 'future'] as const;
export type RunnerTag = (typeof RUNNER_TAGS)[number];

/** The runner/ directory shipped with berth (next to dist/ and src/). */
export function runnerContextDir(): string {
  return fileURLToPath(new URL('../../runner/', import.meta.url));
}

export interface Settings {
  defaultRunnerImage: string;
  stateDir: string;
}

/** berth's settings from the environment (passed in, so tests supply their own). */
export function readSettings(env: NodeJS.ProcessEnv): Settings {
  const stateHome =
    env.XDG_STATE_HOME?.trim() || path.join(env.HOME?.trim() || homedir(), '.local', 'state');
  return {
    defaultRunnerImage:
      env.BERTH_DEFAULT_RUNNER_IMAGE?.trim() || `${DEFAULT_RUNNER_REPOSITORY}:latest`,
    stateDir: env.BERTH_STATE_DIR?.trim() || path.join(stateHome, 'berth'),
  };
}

/**
 * BERTH_WORKSPACE: `mount` (the workspace is a directory of the state directory, bind-mounted:
 * root and a local engine), `copy` (copied in through the engine), `auto` (the default: mount
 * where berth can).
 */
export function readWorkspaceDelivery(env: NodeJS.ProcessEnv): WorkspaceDelivery {
  const raw = env.BERTH_WORKSPACE?.trim() || 'auto';
  if ((WORKSPACE_DELIVERIES as readonly string[]).includes(raw)) return raw as WorkspaceDelivery;
  throw new BerthError(
    'BERTH_CONFIG_INVALID',
    `BERTH_WORKSPACE=${JSON.stringify(env.BERTH_WORKSPACE)} is not a way to deliver the workspace`,
    { hint: `Use one of ${WORKSPACE_DELIVERIES.join(', ')}, or unset it (auto).` },
  );
}

/** The state directory's part where mounted job workspaces are kept. */
export function workspaceRoot(settings: Settings): string {
  return path.join(settings.stateDir, 'workspaces');
}

/** `repo:tag` → `repo:newTag` (digest references have no tag to replace). */
export function withTag(reference: string, tag: string): string {
  const base = reference.split('@')[0] as string;
  const lastSlash = base.lastIndexOf('/');
  const colon = base.lastIndexOf(':');
  return `${colon > lastSlash ? base.slice(0, colon) : base}:${tag}`;
}

export async function buildRunnerImage(
  engine: EngineClient,
  reference: string,
  onLine: (line: string) => void,
  options: { networkMode?: string } = {},
): Promise<ResolvedImage> {
  const id = await buildImage(
    engine,
    {
      contextDir: runnerContextDir(),
      tag: reference,
      // RUN steps install Debian packages: host networking works on engines without NAT too.
      networkMode: options.networkMode ?? 'host',
      labels: { [RUNNER_IMAGE_LABEL]: 'true' },
    },
    onLine,
  );
  return { reference, id, digest: null, pulled: false, platform: null, searchPath: null };
}
