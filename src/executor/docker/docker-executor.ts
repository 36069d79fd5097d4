/**
 * The executor on a Docker engine. Engine calls only: every decision about what to send lives in
 * convert.ts, every error the engine can give a meaning to in daemon-errors.ts.
 */
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { BerthError } from '../../domain/errors.js';
import { withDefaultTag } from '../../domain/image-reference.js';
import {
  CONTROL_DIR,
  JOB_GID,
  JOB_UID,
  LABELS,
  RUNNER_IMAGE_LABEL,
  WORKSPACE_DIR,
  type Executor,
  type ImageRequest,
  type JobContainerSpec,
  type JobHandle,
  type OutputStream,
  type Phase,
  type PhaseOutcome,
  type PullProgress,
  type ResolvedImage,
  type TreeEntry,
} from '../executor.js';
import { createArchive, listArchive, readFileFromArchive, type ArchiveEntry } from './archive.js';
import {
  PHASE_WRAPPER,
  PHASE_WRAPPER_PATH,
  containerName,
  findPasswdEntry,
  jobHome,
  pickRepoDigest,
  type PasswdEntry,
  toCreateContainerBody,
  toInterruptExecBody,
  toPhaseExecBody,
} from './convert.js';
import {
  DockerApiError,
  containerError,
  errorText,
  isDiskFull,
  pullError,
} from './daemon-errors.js';
import { EngineClient, readJsonLines } from './engine-client.js';
import { StreamDemuxer } from './stream-demux.js';

const ROOT = { uid: 0, gid: 0 };
const JOB_OWNER = { uid: JOB_UID, gid: JOB_GID };
const DESTROY_DEADLINE_MS = 30_000;

/**
 * Remembers, per image id, the passwd entry of UID 1983 (null: the image has none). Image ids
 * are content digests, so an entry never goes stale. A Map is a valid in-memory cache.
 */
export interface JobUserCache {
  get(imageId: string): PasswdEntry | null | undefined | Promise<PasswdEntry | null | undefined>;
  set(imageId: string, entry: PasswdEntry | null): unknown;
}

interface ImageInspect {
  Id: string;
  RepoDigests?: string[] | null;
  Config?: { Labels?: Record<string, string> | null } | null;
}

interface ContainerSummary {
  Id: string;
  Names?: string[];
  Labels?: Record<string, string>;
}

export class DockerExecutor implements Executor {
  private readonly jobUsers: JobUserCache;

  constructor(
    readonly engine: EngineClient,
    options: { jobUsers?: JobUserCache } = {},
  ) {
    this.jobUsers = options.jobUsers ?? new Map<string, PasswdEntry | null>();
  }

  async inspectImage(reference: string): Promise<ImageInspect | null> {
    try {
      return await this.engine.json<ImageInspect>('GET', `/images/${encodeURI(reference)}/json`);
    } catch (err) {
      if (err instanceof DockerApiError && err.status === 404) return null;
      throw err instanceof DockerApiError
        ? new BerthError('BERTH_DOCKER_API', err.message, { cause: err })
        : err;
    }
  }

  async prepareImage(
    request: ImageRequest,
    onProgress: (progress: PullProgress) => void,
    signal?: AbortSignal,
  ): Promise<ResolvedImage> {
    const reference = request.reference;
    const present = request.pullPolicy === 'always' ? null : await this.inspectImage(reference);
    if (present) return resolved(reference, present, false);
    if (request.pullPolicy === 'never') {
      throw new BerthError(
        'BERTH_IMAGE_NOT_FOUND',
        `image ${reference} is not in the local Docker engine and --pull never forbids pulling it`,
        { hint: `Pull or build ${reference} first, or use --pull if-not-present.` },
      );
    }
    await this.pullImage(
      reference,
      request.pullTimeoutMs,
      onProgress,
      signal,
      request.registryAuth,
    );
    const pulled = await this.inspectImage(reference);
    if (!pulled) {
      throw new BerthError(
        'BERTH_IMAGE_PULL_FAILED',
        `the engine reported pulling ${reference}, but cannot find it afterwards`,
      );
    }
    return resolved(reference, pulled, true);
  }

  /** Pulls with the engine, reporting progress; errors inside the progress stream are failures. */
  async pullImage(
    reference: string,
    timeoutMs: number,
    onProgress: (progress: PullProgress) => void,
    signal?: AbortSignal,
    registryAuth?: string | null,
  ): Promise<void> {
    const controller = new AbortController();
    const timer = setTimeout(() => {
      controller.abort(
        new BerthError(
          'BERTH_IMAGE_PULL_TIMEOUT',
          `pull of ${reference} did not finish within ${Math.round(timeoutMs / 1000)}s`,
        ),
      );
    }, timeoutMs);
    const onAbort = (): void => controller.abort(signal?.reason);
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      const res = await this.engine.stream('POST', '/images/create', {
        query: { fromImage: withDefaultTag(reference) },
        ...(registryAuth ? { headers: { 'X-Registry-Auth': registryAuth } } : {}),
        signal: controller.signal,
        deadlineMs: timeoutMs,
      });
      controller.signal.addEventListener('abort', () => res.destroy(), { once: true });
      await readJsonLines(res, (message) => {
        if (typeof message.error === 'string') throw new Error(message.error);
        const status = typeof message.status === 'string' ? message.status : '';
        const detail = message.progressDetail as { current?: number; total?: number } | undefined;
        if (typeof message.id === 'string' && /^[0-9a-f]{12}$/.test(message.id)) {
          onProgress({
            kind: 'layer',
            layer: message.id,
            status,
            current: detail?.current,
            total: detail?.total,
          });
        } else if (status) {
          onProgress({ kind: 'status', message: status });
        }
      });
    } catch (err) {
      if (controller.signal.aborted) throw controller.signal.reason;
      throw pullError(err, reference);
    } finally {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
    }
  }

  async startJob(spec: JobContainerSpec): Promise<JobHandle> {
    const name = containerName(spec.runId);
    let id: string | undefined;
    try {
      const created = await this.engine.json<{ Id: string; Warnings?: string[] | null }>(
        'POST',
        '/containers/create',
        {
          query: { name },
          body: toCreateContainerBody(spec),
        },
      );
      id = created.Id;
      const warnings = created.Warnings ?? [];
      if (warnings.length > 0) {
        throw new BerthError(
          'BERTH_OPTION_REJECTED',
          `the Docker engine could not apply every container option: ${warnings.join('; ')}`,
        );
      }
      const [entry] = await Promise.all([
        this.jobUserOf(id, spec.image),
        this.requireShell(id, spec.imageReference),
      ]);
      const home = jobHome(entry);
      const notes: string[] = [];
      if (!entry) {
        notes.push(
          `image ${spec.imageReference} has no passwd entry for UID ${JOB_UID}; the job runs as ${JOB_UID}:${JOB_GID} anyway with HOME=${home}. ` +
            `Tools that look the user up (ssh, some git operations) may complain: add one, e.g. \`RUN adduser --disabled-password --uid ${JOB_UID} berth\`.`,
        );
      }
      const scripts = (spec.phases ?? []).map((phase) => phaseScriptEntry(phase.script));
      await this.upload(
        id,
        [...workspaceEntries(spec.workspaceArchive ? null : spec.sourceDir, home), ...scripts],
        'the workspace',
      );
      if (spec.workspaceArchive) await this.restoreWorkspace(id, spec.workspaceArchive);
      await this.engine.json('POST', `/containers/${id}/start`);
      const preloaded = new Set(scripts.map((entry) => entry.name));
      return new DockerJob(this.engine, id, name, home, notes, preloaded);
    } catch (err) {
      if (id) await removeContainer(this.engine, id).catch(() => undefined);
      throw containerError(err, spec.imageReference);
    }
  }

  async localRunnerImage(reference: string): Promise<ResolvedImage | null> {
    const image = await this.inspectImage(reference);
    if (!image || image.Config?.Labels?.[RUNNER_IMAGE_LABEL] !== 'true') return null;
    return resolved(reference, image, false);
  }

  async removeOrphans(
    isLauncherAlive: (launcherId: string) => boolean,
    now: Date,
  ): Promise<string[]> {
    const containers = await this.engine.json<ContainerSummary[]>('GET', '/containers/json', {
      query: { all: 1, filters: JSON.stringify({ label: [`${LABELS.managed}=true`] }) },
    });
    const removed: string[] = [];
    for (const container of containers) {
      const labels = container.Labels ?? {};
      const launcher = labels[LABELS.launcherId] ?? '';
      const expiresAt = Date.parse(labels[LABELS.expiresAt] ?? '');
      const expired = Number.isNaN(expiresAt) || expiresAt <= now.getTime();
      if (expired || !isLauncherAlive(launcher)) {
        await removeContainer(this.engine, container.Id);
        removed.push((container.Names?.[0] ?? container.Id).replace(/^\//, ''));
      }
    }
    return removed;
  }

  /**
   * The passwd entry of UID 1983 in the image, read from the created container. Image ids name
   * their content, so the answer is remembered per image id and later jobs skip the read.
   */
  private async jobUserOf(containerId: string, image: string): Promise<PasswdEntry | null> {
    const cacheable = /^sha256:[0-9a-f]{64}$/.test(image);
    const known = cacheable ? await this.jobUsers.get(image) : undefined;
    if (known !== undefined) return known;
    const passwd = await this.readFile(containerId, '/etc/passwd');
    const entry = passwd === null ? null : findPasswdEntry(passwd.toString('utf8'), JOB_UID);
    if (cacheable) await this.jobUsers.set(image, entry);
    return entry;
  }

  /** Puts back a workspace saved by exportWorkspace: its tar entries start with `workspace/`. */
  private async restoreWorkspace(id: string, file: string): Promise<void> {
    try {
      await this.engine.json('PUT', `/containers/${id}/archive`, {
        query: { path: '/mnt', noOverwriteDirNonDir: true },
        body: createReadStream(file),
        deadlineMs: 10 * 60_000,
      });
    } catch (err) {
      throw new BerthError(
        'BERTH_WORKSPACE_NOT_WRITABLE',
        `could not restore the saved workspace ${file}: ${errorText(err)}`,
        { cause: err },
      );
    }
  }

  private async readFile(id: string, file: string): Promise<Buffer | null> {
    try {
      const res = await this.engine.stream('GET', `/containers/${id}/archive`, {
        query: { path: file },
      });
      return await readFileFromArchive(res, 1024 * 1024);
    } catch (err) {
      if (err instanceof DockerApiError && err.status === 404) return null;
      throw err;
    }
  }

  private async requireShell(id: string, image: string): Promise<void> {
    try {
      const res = await this.engine.stream('HEAD', `/containers/${id}/archive`, {
        query: { path: '/bin/sh' },
      });
      res.resume();
    } catch (err) {
      if (err instanceof DockerApiError && err.status === 404) {
        throw new BerthError(
          'BERTH_IMAGE_NO_SHELL',
          `image ${image} has no /bin/sh, so berth cannot run a job in it`,
        );
      }
      throw err;
    }
  }

  private async upload(id: string, entries: ArchiveEntry[], what: string): Promise<void> {
    await uploadArchive(this.engine, id, entries, what);
  }
}

function resolved(reference: string, image: ImageInspect, pulled: boolean): ResolvedImage {
  return { reference, id: image.Id, digest: pickRepoDigest(image.RepoDigests, reference), pulled };
}

/** Phase scripts are named by their content, so one known up front is never copied twice. */
function phaseScriptEntry(script: string): ArchiveEntry & { kind: 'file' } {
  const digest = createHash('sha256').update(script).digest('hex').slice(0, 32);
  return {
    kind: 'file',
    name: `${CONTROL_DIR.slice(1)}/phases/${digest}.sh`,
    mode: 0o644,
    owner: ROOT,
    content: script,
  };
}

function workspaceEntries(sourceDir: string | null, home: string): ArchiveEntry[] {
  return [
    { kind: 'directory', name: 'mnt/', mode: 0o755, owner: ROOT },
    { kind: 'directory', name: `${WORKSPACE_DIR.slice(1)}/`, mode: 0o755, owner: JOB_OWNER },
    { kind: 'directory', name: `${WORKSPACE_DIR.slice(1)}/.berth/`, mode: 0o700, owner: JOB_OWNER },
    ...(sourceDir === null
      ? []
      : [
          {
            kind: 'tree' as const,
            name: `${WORKSPACE_DIR.slice(1)}/source`,
            sourceDir,
            owner: JOB_OWNER,
          },
        ]),
    { kind: 'directory', name: `${home.slice(1)}/`, mode: 0o700, owner: JOB_OWNER },
    { kind: 'directory', name: `${CONTROL_DIR.slice(1)}/`, mode: 0o755, owner: ROOT },
    { kind: 'directory', name: `${CONTROL_DIR.slice(1)}/phases/`, mode: 0o755, owner: ROOT },
    {
      kind: 'file',
      name: PHASE_WRAPPER_PATH.slice(1),
      mode: 0o644,
      owner: ROOT,
      content: PHASE_WRAPPER,
    },
  ];
}

async function uploadArchive(
  engine: EngineClient,
  id: string,
  entries: ArchiveEntry[],
  what: string,
): Promise<void> {
  const archive = createArchive(entries);
  try {
    await Promise.all([
      engine.json('PUT', `/containers/${id}/archive`, {
        query: { path: '/', noOverwriteDirNonDir: true },
        body: archive.stream,
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
  }
}

async function removeContainer(engine: EngineClient, id: string): Promise<void> {
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

class DockerJob implements JobHandle {
  private destroying: Promise<void> | undefined;

  constructor(
    private readonly engine: EngineClient,
    readonly containerId: string,
    readonly containerName: string,
    private readonly home: string,
    readonly warnings: readonly string[],
    private readonly preloaded: Set<string>,
  ) {}

  async runPhase(
    phase: Phase,
    onOutput: (stream: OutputStream, chunk: Buffer) => void | Promise<void>,
  ): Promise<PhaseOutcome> {
    const script = phaseScriptEntry(phase.script);
    if (!this.preloaded.has(script.name)) {
      await uploadArchive(
        this.engine,
        this.containerId,
        [script],
        `the script of phase ${phase.name}`,
      );
      this.preloaded.add(script.name);
    }
    const scriptPath = `/${script.name}`;
    const exec = await this.engine.json<{ Id: string }>(
      'POST',
      `/containers/${this.containerId}/exec`,
      {
        body: toPhaseExecBody(scriptPath, { ...phase.env, HOME: this.home }, phase.workingDir),
      },
    );
    const res = await this.engine.stream('POST', `/exec/${exec.Id}/start`, {
      body: { Detach: false, Tty: false },
    });
    let waiting: Promise<void> | undefined;
    const demuxer = new StreamDemuxer((stream, payload) => {
      waiting = onOutput(stream, payload) ?? waiting;
    });
    await new Promise<void>((resolve) => {
      res.on('data', (chunk: Buffer) => {
        demuxer.write(chunk);
        if (waiting) {
          // Backpressure: stop reading from the engine until the consumer has caught up.
          const ready = waiting;
          waiting = undefined;
          res.pause();
          void ready.finally(() => res.resume());
        }
      });
      // The stream ends when the phase's process exits (or the container is killed).
      res.on('end', resolve);
      res.on('close', resolve);
      res.on('error', () => resolve());
    });
    return { exitCode: await this.exitCodeOf(exec.Id) };
  }

  private async exitCodeOf(execId: string): Promise<number> {
    for (let attempt = 0; attempt < 50; attempt += 1) {
      const info = await this.engine.json<{ Running: boolean; ExitCode: number | null }>(
        'GET',
        `/exec/${execId}/json`,
      );
      if (!info.Running) return info.ExitCode ?? 137;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    throw new BerthError(
      'BERTH_INTERNAL',
      `phase exec ${execId} closed its output but the engine still reports it running`,
    );
  }

  async readFile(containerPath: string): Promise<Buffer | null> {
    try {
      const res = await this.engine.stream('GET', `/containers/${this.containerId}/archive`, {
        query: { path: containerPath },
      });
      return await readFileFromArchive(res, 64 * 1024 * 1024);
    } catch (err) {
      if (err instanceof DockerApiError && err.status === 404) return null;
      throw err;
    }
  }

  async exportWorkspace(file: string): Promise<void> {
    const res = await this.engine.stream('GET', `/containers/${this.containerId}/archive`, {
      query: { path: WORKSPACE_DIR },
    });
    await mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
    await pipeline(res, createWriteStream(file, { mode: 0o600 }));
  }

  async listTree(directory: string): Promise<TreeEntry[]> {
    let res;
    try {
      res = await this.engine.stream('GET', `/containers/${this.containerId}/archive`, {
        query: { path: directory },
      });
    } catch (err) {
      if (err instanceof DockerApiError && err.status === 404) return [];
      throw err;
    }
    // The archive's names start with the directory's own name: strip it.
    const entries = await listArchive(res);
    return entries
      .map((e) => ({ ...e, path: e.name.split('/').slice(1).filter(Boolean).join('/') }))
      .filter((e) => e.path !== '')
      .map(({ path, kind, mode }) => ({ path, kind, mode }));
  }

  async writeControlFile(containerPath: string, content: string): Promise<void> {
    await uploadArchive(
      this.engine,
      this.containerId,
      [{ kind: 'file', name: containerPath.replace(/^\//, ''), mode: 0o644, owner: ROOT, content }],
      containerPath,
    );
  }

  async interrupt(): Promise<void> {
    try {
      const exec = await this.engine.json<{ Id: string }>(
        'POST',
        `/containers/${this.containerId}/exec`,
        {
          body: toInterruptExecBody(),
        },
      );
      await this.engine.json('POST', `/exec/${exec.Id}/start`, {
        body: { Detach: true, Tty: false },
      });
    } catch {
      // Nothing to interrupt (container stopped or gone); the caller escalates to kill after grace.
    }
  }

  async kill(): Promise<void> {
    try {
      await this.engine.json('POST', `/containers/${this.containerId}/kill`, {
        query: { signal: 'KILL' },
      });
    } catch (err) {
      if (err instanceof DockerApiError && (err.status === 404 || err.status === 409)) return;
      throw err;
    }
  }

  destroy(): Promise<void> {
    this.destroying ??= removeContainer(this.engine, this.containerId);
    return this.destroying;
  }
}
