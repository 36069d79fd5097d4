/**
 * The executor on a Docker engine. Engine calls only: every decision about what to send lives in
 * convert.ts, every error the engine can give a meaning to in daemon-errors.ts.
 */
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { BerthError } from '../../domain/errors.js';
import { withDefaultTag } from '../../domain/image-reference.js';
import { pathsOverlap } from '../../domain/safe-path.js';
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
import { readFirstHeader, type ArchiveEntry } from './archive.js';
import {
  ROOT,
  phaseScriptEntry,
  readContainerFile,
  removeContainer,
  removeJob,
  removeJobDir,
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
import {
  createHostDir,
  hostParts,
  isHostPart,
  listHostDirs,
  mountOptionsOf,
  prepareHostRoot,
  removeHostDir,
  writeHostEntries,
  type HostPart,
} from './host-workspace.js';

const JOB_OWNER = { uid: JOB_UID, gid: JOB_GID };

/**
 * Remembers, per image id, that the image passed berth's checks (it has /bin/sh) and its passwd
 * entry of UID 1983 (null: the image has none). Image ids are content digests, so an entry never
 * goes stale. A Map is a valid in-memory cache.
 */
export interface JobUserCache {
  get(imageId: string): PasswdEntry | null | undefined | Promise<PasswdEntry | null | undefined>;
  set(imageId: string, entry: PasswdEntry | null): unknown;
  /** What the image's HOME for the job is like (mounted workspaces), kept across processes. */
  getHome?(imageId: string): HomeState | undefined | Promise<HomeState | undefined>;
  setHome?(imageId: string, state: HomeState): unknown;
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
  Mounts?: { Source?: string }[] | null;
}

/** How the workspace reaches the job's container (BERTH_WORKSPACE). */
export const WORKSPACE_DELIVERIES = ['auto', 'mount', 'copy'] as const;
export type WorkspaceDelivery = (typeof WORKSPACE_DELIVERIES)[number];

/** A job host directory older than this with no container naming it was left by a dead job. */
const STALE_HOST_DIR_MS = 10 * 60_000;

/** What the image's HOME for the job is like: none (mounted), the job's already, or otherwise. */
export type HomeState = 'absent' | 'fine' | 'other';

/**
 * How this executor delivers workspaces: mounted from `root` (the workspaces directory's real
 * path, used from then on), or copied in, and why.
 */
export type WorkspaceDeliveryDecision =
  { mount: true; root: string; reason: null } | { mount: false; reason: string };

export interface DockerExecutorOptions {
  jobUsers?: JobUserCache;
  copyProgressIntervalMs?: number;
  /**
   * Where job workspaces are kept on this machine when they are mounted rather than copied
   * (`$BERTH_STATE_DIR/workspaces`); without it they are always copied.
   */
  workspaceRoot?: string;
  workspace?: WorkspaceDelivery;
}

export class DockerExecutor implements Executor {
  private readonly jobUsers: JobUserCache;
  private readonly copyProgressIntervalMs: number;
  /** Bind mounts only for an engine on a Unix socket of this machine; tcp:// may be anywhere. */
  readonly sharesHostFiles: boolean;
  private readonly workspaceRoot: string | null;
  private readonly workspaceSetting: WorkspaceDelivery;
  private delivery: Promise<WorkspaceDeliveryDecision> | undefined;
  /** Per image id (content-named, so never stale); in memory: one archive read per process. */
  private readonly homes = new Map<string, HomeState>();

  constructor(
    readonly engine: EngineClient,
    options: DockerExecutorOptions = {},
  ) {
    this.jobUsers = options.jobUsers ?? new Map<string, PasswdEntry | null>();
    // Injectable so a test can see progress without a copy that happens to last a second.
    this.copyProgressIntervalMs = options.copyProgressIntervalMs ?? PROGRESS_INTERVAL_MS;
    this.sharesHostFiles = Boolean(engine.endpoint.socketPath);
    this.workspaceRoot = options.workspaceRoot ?? null;
    this.workspaceSetting = options.workspace ?? 'auto';
  }

  /**
   * Whether job workspaces are mounted from this machine (see host-workspace.ts) or copied in
   * through the engine, and why not. Decided once: berth as root (it gives files to UID 1983), an
   * engine on this machine that does not remap user ids, and BERTH_WORKSPACE not `copy`.
   */
  workspaceDelivery(): Promise<WorkspaceDeliveryDecision> {
    this.delivery ??= this.decideDelivery().catch((err: unknown) => {
      // An engine that did not answer now may answer the next job: only a setting is final.
      if (!(err instanceof BerthError && err.code === 'BERTH_CONFIG_INVALID'))
        this.delivery = undefined;
      throw err;
    });
    return this.delivery;
  }

  private async decideDelivery(): Promise<WorkspaceDeliveryDecision> {
    if (this.workspaceSetting === 'copy') return { mount: false, reason: 'BERTH_WORKSPACE=copy' };
    const root = this.workspaceRoot;
    const host = !root
      ? { reason: 'no state directory was given' }
      : !this.sharesHostFiles
        ? { reason: 'the Docker engine is not reached over a Unix socket of this machine' }
        : process.geteuid?.() !== 0
          ? { reason: 'berth does not run as root, so it cannot give the files to UID 1983' }
          : await this.engineMountTrouble().then(async (reason) =>
              reason ? { reason } : this.hostMountTrouble(root),
            );
    if ('at' in host) return { mount: true, root: host.at, reason: null };
    const reason = host.reason;
    if (this.workspaceSetting === 'mount') {
      throw new BerthError(
        'BERTH_CONFIG_INVALID',
        `BERTH_WORKSPACE=mount, but the workspace cannot be mounted: ${reason}`,
        {
          hint: 'Unset BERTH_WORKSPACE: berth then mounts the workspace where it can and copies it in through the engine where it cannot.',
        },
      );
    }
    return { mount: false, reason };
  }

  /**
   * Why the engine's mounts of this machine's files would not be what the job needs, or null:
   * its UID 1983 is another user here (user namespaces), or SELinux keeps containers out of
   * directories not labelled for them.
   */
  private async engineMountTrouble(): Promise<string | null> {
    const info = await this.engine.json<{ SecurityOptions?: string[] | null }>('GET', '/info');
    const options = info.SecurityOptions ?? [];
    if (options.some((o) => /\bname=rootless\b/.test(o)))
      return 'the Docker engine runs rootless (its UID 1983 is another on this machine)';
    if (options.some((o) => /\bname=userns\b/.test(o)))
      return 'the Docker engine remaps user ids (userns-remap: its UID 1983 is another on this machine)';
    if (options.some((o) => /\bname=selinux\b/.test(o)))
      return 'the Docker engine applies SELinux labels, which keep containers out of directories not labelled for them';
    return null;
  }

  /** The workspaces directory, made and checked, or why it cannot hold a job's workspace. */
  private async hostMountTrouble(root: string): Promise<{ at: string } | { reason: string }> {
    const options = await mountOptionsOf(root);
    if (options?.includes('noexec'))
      return {
        reason: `${root} is on a file system mounted noexec, so the job could not run what it downloads into its workspace`,
      };
    if (options?.includes('ro')) return { reason: `${root} is on a read-only file system` };
    return prepareHostRoot(root);
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
          hint: `Pull or build ${reference} on this machine first, or use a pull policy that pulls: --pull if-not-present for berth run; the pool's policy for a worker (\`berth pool update POOL --pull if-not-present\`).`,
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
    let delivery;
    try {
      delivery = await this.workspaceDelivery();
    } catch (err) {
      throw containerError(err, spec.imageReference);
    }
    if (!delivery.mount) return this.createJob(spec, onCopyProgress, null, []);
    const root = delivery.root;
    try {
      return await this.createJob(spec, onCopyProgress, root, []);
    } catch (err) {
      // berth in a container with the host's engine socket, its state directory not shared with
      // the host: the engine cannot see the workspace. Copied in from now on, as before mounts.
      if (
        this.workspaceSetting === 'mount' ||
        !(err instanceof BerthError) ||
        err.code !== 'BERTH_ENGINE_NOT_LOCAL' ||
        !err.message.includes(root)
      )
        throw err;
      const reason = `the Docker engine does not see ${root}, where berth keeps mounted workspaces`;
      this.delivery = Promise.resolve({ mount: false, reason });
      return this.createJob(spec, onCopyProgress, null, [
        `${reason}, so berth copies the workspace in (slower). To mount it, put BERTH_STATE_DIR on a host directory mounted at the same path; to say so, set BERTH_WORKSPACE=copy.`,
      ]);
    }
  }

  /**
   * Creates the job's container and gives it the workspace and berth's scripts: mounted from a
   * directory of its own under `hostRoot`, or (hostRoot null) copied in as one archive.
   */
  private async createJob(
    spec: JobContainerSpec,
    onCopyProgress: ((bytes: number) => void) | undefined,
    hostRoot: string | null,
    notes: string[],
  ): Promise<JobHandle> {
    const name = containerName(spec.runId);
    let id: string | undefined;
    let hostDir: string | null = null;
    try {
      const sole = spec.solePhase && {
        phase: spec.solePhase,
        scriptPath: `/${phaseScriptEntry(spec.solePhase.script).name}`,
      };
      let parts: HostPart[] = [];
      const body = toCreateContainerBody(spec, sole);
      const known = await this.knownImage(spec.image, hostRoot !== null);
      if (hostRoot) {
        // The HOME to mount is known before the container exists only from an earlier job of
        // the image; the first one's goes in through the engine.
        const knownHome = known.entry === undefined ? null : jobHome(known.entry);
        const mountHome =
          known.home === 'absent' && knownHome !== null && !mountsTouch(spec, knownHome);
        parts = hostParts(mountHome ? knownHome : null);
        hostDir = path.join(hostRoot, `${name}-${randomBytes(4).toString('hex')}`);
        await createHostDir(hostDir, parts);
        const at = hostDir;
        const hostConfig = body.HostConfig as { Mounts?: unknown[] };
        hostConfig.Mounts = [
          ...(hostConfig.Mounts ?? []),
          ...parts.map((part) => ({
            Type: 'bind',
            Source: path.join(at, part.inside),
            Target: part.target,
            ReadOnly: part.readOnly,
          })),
        ];
        (body.Labels as Record<string, string>)[LABELS.hostDir] = path.basename(hostDir);
      }
      const created = await this.engine.json<{ Id: string; Warnings?: string[] | null }>(
        'POST',
        '/containers/create',
        { query: { name }, body },
      );
      id = created.Id;
      const { notes: engineNotes, rejected } = splitCreateWarnings(created.Warnings ?? []);
      if (rejected.length > 0) {
        throw new BerthError(
          'BERTH_OPTION_REJECTED',
          `the Docker engine could not apply every container option: ${rejected.join('; ')}`,
        );
      }
      const entry = await this.checkImage(id, spec.image, spec.imageReference, known.entry);
      const home = jobHome(entry);
      notes.push(...engineNotes.map((note) => `the Docker engine says: ${note}`));
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
      const entries: ArchiveEntry[] = [
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
      ];
      if (hostDir) {
        // An extra mount at, above or under HOME changes what the engine answers for it.
        const homeState = await this.homeState(id, spec.image, home, !mountsTouch(spec, home));
        await this.writeMounted(id, home, homeState, hostDir, parts, entries, onCopyProgress);
      } else {
        await uploadArchive(
          this.engine,
          id,
          entries,
          'the workspace',
          onCopyProgress,
          this.copyProgressIntervalMs,
        );
      }
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
        hostDir,
      });
    } catch (err) {
      if (id) await removeJob(this.engine, id, hostDir).catch(() => undefined);
      else if (hostDir) await removeHostDir(hostDir).catch(() => undefined);
      throw containerError(err, spec.imageReference);
    }
  }

  /**
   * Writes the mounted parts' entries into the job's host directory; what lies elsewhere in the
   * container (the image's HOME when it is not the job's yet, tool binaries copied for an engine
   * elsewhere) still goes in through the engine. Directories that only hold a mount point are the
   * engine's to make.
   */
  private async writeMounted(
    id: string,
    home: string,
    homeState: HomeState,
    hostDir: string,
    parts: HostPart[],
    entries: ArchiveEntry[],
    onCopyProgress: ((bytes: number) => void) | undefined,
  ): Promise<void> {
    const mountParent = (name: string): boolean =>
      parts.some(({ inside }) => name.endsWith('/') && inside.startsWith(name));
    const kept = entries.filter(
      (e) => !(homeState === 'fine' && e.name === `${home.slice(1)}/`) && !mountParent(e.name),
    );
    let written = 0;
    const ticker = onCopyProgress
      ? setInterval(() => onCopyProgress(written), this.copyProgressIntervalMs)
      : undefined;
    try {
      await writeHostEntries(
        hostDir,
        kept.filter((e) => isHostPart(parts, e.name)),
        (bytes) => (written += bytes),
      );
    } finally {
      clearInterval(ticker);
    }
    const elsewhere = kept.filter((e) => !isHostPart(parts, e.name));
    if (elsewhere.length > 0)
      await uploadArchive(
        this.engine,
        id,
        elsewhere,
        'the workspace',
        onCopyProgress,
        this.copyProgressIntervalMs,
      );
  }

  /**
   * What earlier jobs of `image` found out, each read once per job: its passwd entry of UID 1983
   * (undefined: not known yet) and, when asked for, what the job's HOME in it is like.
   */
  private async knownImage(
    image: string,
    withHome: boolean,
  ): Promise<{ entry: PasswdEntry | null | undefined; home: HomeState | undefined }> {
    if (!isImageId(image)) return { entry: undefined, home: undefined };
    const entry = await this.jobUsers.get(image);
    const home =
      withHome && entry !== undefined
        ? (this.homes.get(image) ?? (await this.jobUsers.getHome?.(image)))
        : undefined;
    if (home !== undefined) this.homes.set(image, home);
    return { entry, home };
  }

  /**
   * Whether the image has a directory at the job's HOME, and whether it is already the job's
   * (UID 1983, which may enter and write it): then berth need not touch it.
   */
  private async homeState(
    id: string,
    image: string,
    home: string,
    keep: boolean,
  ): Promise<HomeState> {
    const cacheable = keep && isImageId(image);
    const known = cacheable ? this.homes.get(image) : undefined;
    if (known !== undefined) return known;
    let state: HomeState;
    try {
      const res = await this.engine.stream('GET', `/containers/${id}/archive`, {
        query: { path: home },
      });
      const header = await readFirstHeader(res);
      state =
        header?.type === 'directory' && header.uid === JOB_UID && (header.mode & 0o700) === 0o700
          ? 'fine'
          : 'other';
    } catch (err) {
      // Only the path's 404, not the container's (removed meanwhile): that says nothing.
      if (!(err instanceof DockerApiError && err.status === 404)) throw err;
      if (/no such container/i.test(err.engineMessage)) throw err;
      state = 'absent';
    }
    if (cacheable) {
      this.homes.set(image, state);
      await this.jobUsers.setHome?.(image, state);
    }
    return state;
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
    const orphans = containers.filter((container) => {
      const labels = container.Labels ?? {};
      const expiresAt = Date.parse(labels[LABELS.expiresAt] ?? '');
      const expired = Number.isNaN(expiresAt) || expiresAt <= now.getTime();
      return expired || !isLauncherAlive(labels[LABELS.launcherId] ?? '');
    });
    // Host directories a live container mounts (this launcher's or another's) are never touched.
    const inUse = new Set(
      containers
        .filter((container) => !orphans.includes(container))
        .map((container) => container.Labels?.[LABELS.hostDir] ?? ''),
    );
    const removed: string[] = [];
    // Only where this launcher mounts workspaces (its checked, real workspaces directory).
    const delivery = this.workspaceRoot ? await this.workspaceDelivery().catch(() => null) : null;
    const root = delivery?.mount ? delivery.root : null;
    const listed = root ? await listHostDirs(root) : [];
    for (const container of orphans) {
      const name = container.Labels?.[LABELS.hostDir] ?? '';
      // A directory of this launcher's workspaces that the container really mounts (a label
      // alone could come from an image).
      const at = root && name ? path.join(root, name) : null;
      const ours =
        at !== null &&
        listed.some((dir) => dir.name === name) &&
        !inUse.has(name) &&
        (container.Mounts ?? []).some((m) => m.Source === path.join(at, WORKSPACE_DIR));
      const hostDir = ours ? at : null;
      await removeContainer(this.engine, container.Id);
      // A directory that cannot be removed now is tried again by the next sweep.
      if (hostDir) await removeJobDir(this.engine, container.Id, hostDir).catch(() => undefined);
      removed.push((container.Names?.[0] ?? container.Id).replace(/^\//, ''));
      // Tried here (or another live container's): not again below. One the container did not
      // mount is left to the age rule, as a directory no container names.
      if (ours) inUse.add(name);
    }
    if (root) await this.removeStaleHostDirs(root, listed, inUse, now);
    return removed;
  }

  /**
   * Removes the job host directories in this launcher's workspaces that no container names: those
   * of jobs that died before their container was made, or whose removal failed. A directory
   * younger than STALE_HOST_DIR_MS may be a job's that is being made now (by another berth with
   * the same state directory), so it stays until a later sweep; one that cannot be removed is
   * tried again by the next (it must not stop the launcher from starting).
   */
  private async removeStaleHostDirs(
    root: string,
    listed: readonly { name: string; mtimeMs: number }[],
    named: ReadonlySet<string>,
    now: Date,
  ): Promise<void> {
    for (const dir of listed) {
      if (named.has(dir.name) || now.getTime() - dir.mtimeMs < STALE_HOST_DIR_MS) continue;
      await removeHostDir(path.join(root, dir.name)).catch(() => undefined);
    }
  }

  /**
   * Checks the image in the created container: it must have /bin/sh, and the passwd entry of UID
   * 1983 is read. Image ids name their content, so the answer is remembered per image id (only
   * once both checks passed) and later jobs of the image skip both reads (`known`: what an
   * earlier job found, from knownImage).
   */
  private async checkImage(
    containerId: string,
    image: string,
    reference: string,
    known: PasswdEntry | null | undefined,
  ): Promise<PasswdEntry | null> {
    if (known !== undefined) return known;
    const [passwd] = await Promise.all([
      readContainerFile(this.engine, containerId, '/etc/passwd', 1024 * 1024),
      this.requireShell(containerId, reference),
    ]);
    const entry = passwd === null ? null : findPasswdEntry(passwd.toString('utf8'), JOB_UID);
    if (isImageId(image)) await this.jobUsers.set(image, entry);
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

/** Whether `image` is an image id (a content digest, so what berth learns of it never goes stale). */
function isImageId(image: string): boolean {
  return /^sha256:[0-9a-f]{64}$/.test(image);
}

/** Whether one of the job's extra mounts is at, above or under `dir`. */
function mountsTouch(spec: JobContainerSpec, dir: string): boolean {
  return (spec.mounts ?? []).some(({ target }) => pathsOverlap(target, dir));
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
