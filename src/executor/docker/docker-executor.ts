/**
 * The executor on a Docker engine. Engine calls only: every decision about what to send lives in
 * convert.ts, every error the engine can give a meaning to in daemon-errors.ts.
 */
import type { Readable } from 'node:stream';
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
  type PullProgress,
  type ResolvedImage,
} from '../executor.js';
import type { ArchiveEntry } from './archive.js';
import {
  ROOT,
  phaseScriptEntry,
  readContainerFile,
  removeContainer,
  PROGRESS_INTERVAL_MS,
  uploadArchive,
} from './engine-calls.js';
import { DockerJob } from './docker-job.js';
import {
  PHASE_WRAPPER,
  PHASE_WRAPPER_PATH,
  SOLE_MAIN_PATH,
  containerName,
  findPasswdEntry,
  imagePlatform,
  imageSearchPath,
  jobHome,
  pickRepoDigest,
  type PasswdEntry,
  soleMainScript,
  toCreateContainerBody,
} from './convert.js';
import {
  DockerApiError,
  containerError,
  errorText,
  pullError,
  splitCreateWarnings,
} from './daemon-errors.js';
import { EngineClient, readJsonLines } from './engine-client.js';

const JOB_OWNER = { uid: JOB_UID, gid: JOB_GID };

/**
 * Remembers, per image id, that the image passed berth's checks (it has /bin/sh) and its passwd
 * entry of UID 1983 (null: the image has none). Image ids are content digests, so an entry never
 * goes stale. A Map is a valid in-memory cache.
 */
export interface JobUserCache {
  get(imageId: string): PasswdEntry | null | undefined | Promise<PasswdEntry | null | undefined>;
  set(imageId: string, entry: PasswdEntry | null): unknown;
}

interface ImageInspect {
  Id: string;
  Os?: string;
  Architecture?: string;
  Variant?: string;
  RepoDigests?: string[] | null;
  Config?: { Labels?: Record<string, string> | null; Env?: string[] | null } | null;
}

interface ContainerSummary {
  Id: string;
  Names?: string[];
  Labels?: Record<string, string>;
}

export class DockerExecutor implements Executor {
  private readonly jobUsers: JobUserCache;
  private readonly copyProgressIntervalMs: number;
  /** Bind mounts only for an engine on a Unix socket of this machine; tcp:// may be anywhere. */
  readonly sharesHostFiles: boolean;

  constructor(
    readonly engine: EngineClient,
    options: { jobUsers?: JobUserCache; copyProgressIntervalMs?: number } = {},
  ) {
    this.jobUsers = options.jobUsers ?? new Map<string, PasswdEntry | null>();
    // Injectable so a test can see progress without a copy that happens to last a second.
    this.copyProgressIntervalMs = options.copyProgressIntervalMs ?? PROGRESS_INTERVAL_MS;
    this.sharesHostFiles = Boolean(engine.endpoint.socketPath);
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
        `image ${reference} is not in the local Docker engine, and the pull policy "never" forbids pulling it`,
        {
          hint: `Pull or build ${reference} on this machine first, or use a pull policy that pulls: --pull if-not-present for berth run; the pool's policy (berth pool create --pull) for a worker.`,
        },
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

  async startJob(
    spec: JobContainerSpec,
    onCopyProgress?: (bytes: number) => void,
  ): Promise<JobHandle> {
    const name = containerName(spec.runId);
    let id: string | undefined;
    try {
      const sole = spec.solePhase && {
        phase: spec.solePhase,
        scriptPath: `/${phaseScriptEntry(spec.solePhase.script).name}`,
      };
      const created = await this.engine.json<{ Id: string; Warnings?: string[] | null }>(
        'POST',
        '/containers/create',
        {
          query: { name },
          body: toCreateContainerBody(spec, sole),
        },
      );
      id = created.Id;
      const { notes: engineNotes, rejected } = splitCreateWarnings(created.Warnings ?? []);
      if (rejected.length > 0) {
        throw new BerthError(
          'BERTH_OPTION_REJECTED',
          `the Docker engine could not apply every container option: ${rejected.join('; ')}`,
        );
      }
      const entry = await this.checkImage(id, spec.image, spec.imageReference);
      const home = jobHome(entry);
      const notes: string[] = engineNotes.map((note) => `the Docker engine says: ${note}`);
      if (!entry) {
        notes.push(
          `image ${spec.imageReference} has no passwd entry for UID ${JOB_UID}; the job runs as ${JOB_UID}:${JOB_GID} anyway with HOME=${home}. ` +
            `Tools that look the user up (ssh, some git operations) may complain: add one, e.g. \`RUN adduser --disabled-password --uid ${JOB_UID} berth\`.`,
        );
      }
      const scripts = new Map(
        [...(spec.phases ?? []), ...(spec.solePhase ? [spec.solePhase] : [])]
          .map((phase) => phaseScriptEntry(phase.script))
          .map((entry) => [entry.name, entry]),
      );
      const main: ArchiveEntry[] = sole
        ? [
            {
              kind: 'file',
              name: SOLE_MAIN_PATH.slice(1),
              mode: 0o644,
              owner: ROOT,
              content: soleMainScript(home),
            },
          ]
        : [];
      await uploadArchive(
        this.engine,
        id,
        [
          ...workspaceEntries(spec.workspaceArchive ? null : spec.sourceDir, home),
          ...scripts.values(),
          ...main,
          ...(spec.copies ?? []).map((copy): ArchiveEntry => ({
            kind: 'hostFile',
            name: copy.target.replace(/^\/+/, ''),
            sourceFile: copy.source,
            mode: copy.mode,
            owner: ROOT,
          })),
        ],
        'the workspace',
        onCopyProgress,
        this.copyProgressIntervalMs,
      );
      if (spec.workspaceArchive) await this.restoreWorkspace(id, spec.workspaceArchive);
      // A sole phase is the container's process: the container starts when that phase runs.
      if (!sole) await this.engine.json('POST', `/containers/${id}/start`);
      return new DockerJob(this.engine, {
        containerId: id,
        containerName: name,
        imageReference: spec.imageReference,
        home,
        warnings: notes,
        preloaded: new Set(scripts.keys()),
        solePhase: sole ? sole.phase.name : null,
      });
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

  async hasImage(reference: string): Promise<boolean> {
    return (await this.inspectImage(reference)) !== null;
  }

  async localOnlyImage(reference: string): Promise<ResolvedImage | null> {
    const image = await this.inspectImage(reference);
    if (!image || (image.RepoDigests ?? []).length > 0) return null;
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
   * Checks the image in the created container: it must have /bin/sh, and the passwd entry of UID
   * 1983 is read. Image ids name their content, so the answer is remembered per image id (only
   * once both checks passed) and later jobs of the image skip both reads.
   */
  private async checkImage(
    containerId: string,
    image: string,
    reference: string,
  ): Promise<PasswdEntry | null> {
    const cacheable = /^sha256:[0-9a-f]{64}$/.test(image);
    const known = cacheable ? await this.jobUsers.get(image) : undefined;
    if (known !== undefined) return known;
    const [passwd] = await Promise.all([
      readContainerFile(this.engine, containerId, '/etc/passwd', 1024 * 1024),
      this.requireShell(containerId, reference),
    ]);
    const entry = passwd === null ? null : findPasswdEntry(passwd.toString('utf8'), JOB_UID);
    if (cacheable) await this.jobUsers.set(image, entry);
    return entry;
  }

  /** Puts back a workspace saved by exportWorkspace: its tar entries start with `workspace/`. */
  private async restoreWorkspace(id: string, open: () => Promise<Readable>): Promise<void> {
    const archive = await open();
    try {
      await this.engine.json('PUT', `/containers/${id}/archive`, {
        query: { path: '/mnt', noOverwriteDirNonDir: true },
        body: archive,
        deadlineMs: 10 * 60_000,
      });
    } catch (err) {
      throw new BerthError(
        'BERTH_WORKSPACE_NOT_WRITABLE',
        `could not restore the saved workspace: ${errorText(err)}`,
        { cause: err },
      );
    } finally {
      archive.destroy();
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
}

function resolved(reference: string, image: ImageInspect, pulled: boolean): ResolvedImage {
  const platform = imagePlatform(image.Os, image.Architecture, image.Variant);
  if ('error' in platform) {
    throw new BerthError(
      'BERTH_IMAGE_PLATFORM_INVALID',
      `image ${reference} (${image.Id}) says it is for a platform berth does not know: ${platform.error}`,
    );
  }
  return {
    reference,
    id: image.Id,
    digest: pickRepoDigest(image.RepoDigests, reference),
    pulled,
    platform: platform.platform,
    searchPath: imageSearchPath(image.Config?.Env),
  };
}

function workspaceEntries(sourceDir: string | null, home: string): ArchiveEntry[] {
  return [
    { kind: 'directory', name: 'mnt/', mode: 0o755, owner: ROOT },
    { kind: 'directory', name: `${WORKSPACE_DIR.slice(1)}/`, mode: 0o755, owner: JOB_OWNER },
    { kind: 'directory', name: `${WORKSPACE_DIR.slice(1)}/.berth/`, mode: 0o700, owner: JOB_OWNER },
    // A provider plugin cache of the job's own (used when a shared one would not be safe).
    {
      kind: 'directory',
      name: `${WORKSPACE_DIR.slice(1)}/.berth/plugin-cache/`,
      mode: 0o700,
      owner: JOB_OWNER,
    },
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
