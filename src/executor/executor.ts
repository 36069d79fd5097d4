/**
 * The executor contract: how a job gets a fresh, isolated container and runs in it. berth's only
 * implementation today is the Docker engine one (./docker/docker-executor.ts); the contract keeps
 * the launcher free of engine details so another backend can follow.
 *
 * Lifecycle, in order:
 *   1. prepareImage  make the image available according to the pull policy; returns the exact
 *                    image (id and digest) that will run. Nothing is created, nothing to clean up.
 *   2. startJob      create a new container (never reused), put the workspace in, start it
 *                    (a solePhase job starts with its phase instead). On failure it removes
 *                    what it created before throwing.
 *   3. runPhase      run one phase in the container; phases run one after another and share the
 *                    workspace and exported environment. Output is delivered as it arrives.
 *   4. interrupt     SIGINT to every job process (idempotent; harmless when nothing runs; a
 *                    phase whose process is being started gets it once that process runs);
 *      kill          SIGKILL to the whole container (idempotent).
 *   5. destroy       remove the container and everything berth created for it. Idempotent, safe
 *                    after any failure, bounded by its own deadline, and independent of whatever
 *                    cancelled the job: callers always reach it (try/finally).
 *
 * removeOrphans is the safety net for launchers that died without reaching step 5.
 */

import type { Readable, Writable } from 'node:stream';

export type PullPolicy = 'always' | 'if-not-present' | 'never';

export interface ImageRequest {
  reference: string;
  pullPolicy: PullPolicy;
  pullTimeoutMs: number;
  /** The engine's X-Registry-Auth value for this pull only; never stored, never logged. */
  registryAuth?: string | null;
}

export interface ResolvedImage {
  /** The reference as asked for. */
  reference: string;
  /** The engine's image id (sha256 of the image configuration): what the container runs. */
  id: string;
  /** The registry manifest digest (`repo@sha256:…`) when the image came from a registry. */
  digest: string | null;
  /** Whether this call pulled the image (false: it was already present). */
  pulled: boolean;
  /** The image's platform as release files name it (`linux_amd64`); null when unknown. */
  platform: string | null;
  /** The directories of the image's PATH; null when the image sets none. */
  searchPath: string[] | null;
}

export type PullProgress =
  | { kind: 'status'; message: string }
  | { kind: 'layer'; layer: string; status: string; current?: number; total?: number };

export interface JobLabels {
  runId: string;
  launcherId: string;
  expiresAt: Date;
}

export interface JobContainerSpec extends JobLabels {
  /** Image id (preferably) or reference from prepareImage. */
  image: string;
  /** The reference shown to people and recorded with the run. */
  imageReference: string;
  /** Host directory copied into the container as /mnt/workspace/source (never modified). */
  sourceDir: string;
  /**
   * A workspace saved by exportWorkspace: opens a fresh stream of that tar archive, which is
   * restored whole (file modes, ownership, symlinks, the exported environment) instead of
   * copying sourceDir.
   */
  workspaceArchive?: () => Promise<Readable>;
  /** Environment of every phase, secrets included (they never go into labels or names). */
  env: Record<string, string>;
  network: string;
  runtime?: string;
  nanoCpus?: number;
  memoryBytes?: number;
  pidsLimit: number;
  /**
   * Phases known up front: their scripts go into the container with the workspace, which saves
   * one copy per phase. runPhase still accepts any phase.
   */
  phases?: readonly Phase[];
  /**
   * A job that is exactly this one phase, after which nothing runs in the container: the phase
   * is the container's own process instead of an exec in an idle container (one engine round
   * trip and one process start less). The container starts with the first runPhase call, which
   * must be for this phase (its env is taken from here); no phase can run after it.
   */
  solePhase?: Phase;
  /** Host files or directories mounted into the container (only when sharesHostFiles). */
  mounts?: readonly BindMount[];
  /** Host files copied into the container, owned by root (the job can read, not change them). */
  copies?: readonly HostCopy[];
}

export interface HostCopy {
  source: string;
  target: string;
  mode: number;
}

export interface BindMount {
  source: string;
  target: string;
  readOnly: boolean;
}

/** One entry of a directory tree inside the container, as listTree reports it. */
export interface TreeEntry {
  /** Path below the listed directory, `/`-separated. */
  path: string;
  kind: 'file' | 'directory' | 'symlink' | 'other';
  mode: number;
}

export interface Phase {
  name: string;
  /** Shell text run by /bin/sh in the phase's session. */
  script: string;
  /** Working directory in the container; default the workspace source. */
  workingDir?: string;
  /** Variables for this phase only, over the job's environment. */
  env?: Record<string, string>;
}

export type OutputStream = 'stdout' | 'stderr';

export interface PhaseOutcome {
  exitCode: number;
}

export interface JobHandle {
  readonly containerId: string;
  readonly containerName: string;
  /** Non-fatal findings while preparing (e.g. no passwd entry for UID 1983). */
  readonly warnings: readonly string[];
  /**
   * `onOutput` may return a promise: the job's output is then paused until it settles, so a slow
   * consumer never makes berth buffer without bound.
   */
  runPhase(
    phase: Phase,
    onOutput: (stream: OutputStream, chunk: Buffer) => void | Promise<void>,
    /** Called once the phase's process has been started (after any container start). */
    onStarted?: () => void,
  ): Promise<PhaseOutcome>;
  /**
   * Reads a file from the container; null when it does not exist. At most `maxBytes` + 1 bytes
   * are kept (default 64 MiB): a longer answer means the file is larger than `maxBytes`.
   */
  readFile(containerPath: string, maxBytes?: number): Promise<Buffer | null>;
  /**
   * Streams /mnt/workspace as a tar archive into `destination` and ends it (see
   * JobContainerSpec.workspaceArchive); the caller decides where and how it is kept.
   */
  exportWorkspace(destination: Writable): Promise<void>;
  /** Lists a directory tree inside the container; empty when it does not exist. */
  listTree(directory: string): Promise<TreeEntry[]>;
  /** Writes a file berth owns (root, read-only to the job) into the container. */
  writeControlFile(containerPath: string, content: string): Promise<void>;
  interrupt(): Promise<void>;
  kill(): Promise<void>;
  destroy(): Promise<void>;
}

export interface Executor {
  /**
   * Whether the engine sees this host's files, so bind mounts work (an engine on this machine);
   * otherwise host files reach a job only as copies.
   */
  readonly sharesHostFiles: boolean;
  prepareImage(
    request: ImageRequest,
    onProgress: (progress: PullProgress) => void,
    signal?: AbortSignal,
  ): Promise<ResolvedImage>;
  /**
   * `onCopyProgress` hears how many bytes of the workspace have gone in, about once a second
   * while a copy lasts longer than that (nothing for the usual small workspace).
   */
  startJob(spec: JobContainerSpec, onCopyProgress?: (bytes: number) => void): Promise<JobHandle>;
  /**
   * Removes berth's containers whose launcher is gone or whose expiry has passed, found by label;
   * never touches anything without berth's labels. Returns the removed container names.
   */
  removeOrphans(isLauncherAlive: (launcherId: string) => boolean, now: Date): Promise<string[]>;
  /**
   * The standard runner image berth built on this engine under `reference` (recognised by its
   * label), or null. Lets a machine that cannot reach the default image's registry keep using
   * the copy it built, instead of building again.
   */
  localRunnerImage?(reference: string): Promise<ResolvedImage | null>;
  /**
   * The image under `reference` when the engine has it with no registry origin (no repository
   * digest: built or loaded on this machine, never pulled or pushed), else null.
   */
  localOnlyImage?(reference: string): Promise<ResolvedImage | null>;
  /** Whether the engine has an image under `reference`, whatever its origin. */
  hasImage?(reference: string): Promise<boolean>;
}

/** The labels on everything berth creates. */
/** Label of the standard runner image built from berth's bundled Dockerfile. */
export const RUNNER_IMAGE_LABEL = 'dev.berth.runner-image';

export const LABELS = {
  managed: 'dev.berth.managed',
  runId: 'dev.berth.run-id',
  launcherId: 'dev.berth.launcher-id',
  expiresAt: 'dev.berth.expires-at',
  /** The job's directory on the engine's machine (its name under the launcher's workspaces). */
  hostDir: 'dev.berth.host-dir',
} as const;

export const JOB_UID = 1983;
export const JOB_GID = 1983;
export const WORKSPACE_DIR = '/mnt/workspace';
export const SOURCE_DIR = '/mnt/workspace/source';
/** Exported environment carried from one phase to the next (inside the workspace, job-owned). */
export const ENV_STATE_FILE = '/mnt/workspace/.berth/env.sh';
/** berth's own scripts: root-owned and read-only to the job. */
export const CONTROL_DIR = '/berth';
