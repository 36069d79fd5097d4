/**
 * Pure conversions between berth's job description and the Docker Engine API's bodies. No I/O
 * here: everything is table-tested in convert.test.ts without an engine.
 */
import { shellQuote } from '../../domain/hook-script.js';
import { parseImageReference, repositoryName } from '../../domain/image-reference.js';
import { parsePlatform, releasePlatform } from '../../domain/platform.js';
import { pathsOverlap, withoutTrailingSlashes } from '../../domain/safe-path.js';
import {
  CONTROL_DIR,
  ENV_STATE_FILE,
  JOB_GID,
  JOB_UID,
  LABELS,
  SOURCE_DIR,
  WORKSPACE_DIR,
  type JobContainerSpec,
  type Phase,
} from '../executor.js';

/**
 * The container's own process. berth ignores the image's ENTRYPOINT and CMD: the container only
 * idles (a shell blocked reading a stdin that stays open, so no extra binary is needed) while each
 * phase runs as its own exec. It ignores SIGINT so that interrupting the job never ends the
 * container before berth has collected the outcome. Docker's init runs as PID 1 and reaps.
 */
export const KEEPER_SCRIPT = "trap '' INT; read -r berth_keepalive";

/**
 * The keeper (and Docker's init) run as this user, never the job's: the job cannot signal them,
 * and berth can end every process of the job's UID between phases without ending the container.
 */
export const KEEPER_UID = 65534;

export const PHASE_WRAPPER_PATH = `${CONTROL_DIR}/phase.sh`;

/**
 * Runs one phase in a shell session: restores the environment the previous phases exported, runs
 * the phase's script in this same shell (so `export` works as users expect), and saves the
 * exported environment on the way out, whatever the way out is. SIGINT ends the phase like Ctrl-C
 * ends a shell, after the foreground command (e.g. terraform releasing its state lock) has exited.
 */
export const PHASE_WRAPPER = `# berth phase wrapper: $1 is the phase script.
berth_state=${ENV_STATE_FILE}
if [ -f "$berth_state" ]; then . "$berth_state"; fi
berth_save_env() {
  # Variables given to this phase only (BERTH_PHASE_ONLY, and every ro_/wo_ variable whatever
  # became of that list) never travel to later phases.
  for berth_v in \${BERTH_PHASE_ONLY:-}; do unset "$berth_v"; done
  unset BERTH_PHASE_ONLY berth_v
  mkdir -p "\${berth_state%/*}" 2>/dev/null
  export -p > "$berth_state.tmp" 2>/dev/null || return 0
  while IFS= read -r berth_v; do
    case $berth_v in
      'export ro_'*|'export wo_'*|'declare -x ro_'*|'declare -x wo_'*)
        berth_v=\${berth_v#export }; berth_v=\${berth_v#declare -x }; unset "\${berth_v%%=*}" 2>/dev/null ;;
    esac
  done < "$berth_state.tmp"
  unset berth_v
  export -p > "$berth_state.tmp" 2>/dev/null && mv -f "$berth_state.tmp" "$berth_state" 2>/dev/null
}
trap 'berth_rc=$?; berth_save_env; exit $berth_rc' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
berth_phase_script=$1
shift
. "$berth_phase_script"
`;

/** The container's own process when the job is one phase (JobContainerSpec.solePhase). */
export const SOLE_MAIN_PATH = `${CONTROL_DIR}/main.sh`;

/**
 * /berth/main.sh of a sole-phase job: the job's HOME, which is only known once the container
 * exists (it comes from the image's passwd entry), then the phase wrapper, in the same shell.
 */
export function soleMainScript(home: string): string {
  return `HOME=${shellQuote(home)}; export HOME\n. ${PHASE_WRAPPER_PATH}\n`;
}

export function containerName(runId: string): string {
  return `berth-${runId}`;
}

export function jobLabels(
  spec: Pick<JobContainerSpec, 'runId' | 'launcherId' | 'expiresAt'>,
): Record<string, string> {
  return {
    [LABELS.managed]: 'true',
    [LABELS.runId]: spec.runId,
    [LABELS.launcherId]: spec.launcherId,
    [LABELS.expiresAt]: spec.expiresAt.toISOString(),
  };
}

export function toEnvList(env: Record<string, string>): string[] {
  return Object.entries(env).map(([key, value]) => `${key}=${value}`);
}

/**
 * The body of POST /containers/create for a job. The container's process idles (KEEPER_SCRIPT)
 * while phases run as execs, or, for a sole-phase job, is that phase (its script at scriptPath).
 */
export function toCreateContainerBody(
  spec: JobContainerSpec,
  sole?: { phase: Phase; scriptPath: string },
): Record<string, unknown> {
  const hostConfig: Record<string, unknown> = {
    Init: true,
    CapDrop: ['ALL'],
    SecurityOpt: ['no-new-privileges'],
    PidsLimit: spec.pidsLimit,
    NetworkMode: spec.network,
    AutoRemove: false,
    LogConfig: { Type: 'none', Config: {} },
  };
  if (spec.runtime) hostConfig.Runtime = spec.runtime;
  if (spec.nanoCpus !== undefined) hostConfig.NanoCpus = spec.nanoCpus;
  if (spec.memoryBytes !== undefined) hostConfig.Memory = spec.memoryBytes;
  if (spec.mounts?.length) {
    hostConfig.Mounts = spec.mounts.map((m) => ({
      Type: 'bind',
      Source: m.source,
      Target: m.target,
      ReadOnly: m.readOnly,
    }));
  }
  return {
    Image: spec.image,
    User: sole ? `${JOB_UID}:${JOB_GID}` : `${KEEPER_UID}:${KEEPER_UID}`,
    Entrypoint: sole
      ? ['/bin/sh', '-c', `. ${SOLE_MAIN_PATH}`, 'berth-phase', sole.scriptPath]
      : ['/bin/sh', '-c', KEEPER_SCRIPT],
    Cmd: null,
    // The keeper needs no directory of the job's (which its user may not enter).
    WorkingDir: sole ? (sole.phase.workingDir ?? SOURCE_DIR) : '/',
    Env: toEnvList(sole ? { ...spec.env, ...sole.phase.env } : spec.env),
    Labels: jobLabels(spec),
    // The keeper blocks on a stdin that stays open; a sole phase reads an empty one, like an exec.
    OpenStdin: !sole,
    StdinOnce: false,
    AttachStdin: false,
    AttachStdout: false,
    AttachStderr: false,
    Tty: false,
    HostConfig: hostConfig,
  };
}

/** The body of POST /containers/{id}/exec for one phase. */
export function toPhaseExecBody(
  scriptPath: string,
  env: Record<string, string>,
  workingDir: string = SOURCE_DIR,
): Record<string, unknown> {
  return {
    User: `${JOB_UID}:${JOB_GID}`,
    WorkingDir: workingDir,
    Env: toEnvList(env),
    Cmd: ['/bin/sh', '-c', `. ${PHASE_WRAPPER_PATH}`, 'berth-phase', scriptPath],
    AttachStdin: false,
    AttachStdout: true,
    AttachStderr: true,
    Tty: false,
  };
}

/**
 * The exec that delivers SIGINT to every process of the job: kill(-1) as the job's user reaches
 * all of its processes in the container except PID 1 and the sender; the idle keeper ignores it.
 */
export function toInterruptExecBody(): Record<string, unknown> {
  return {
    User: `${JOB_UID}:${JOB_GID}`,
    Cmd: ['/bin/sh', '-c', 'kill -INT -1 2>/dev/null; exit 0'],
    AttachStdout: false,
    AttachStderr: false,
    Tty: false,
  };
}

/**
 * The exec that ends every process of a phase once the phase is over (a background process or a
 * daemon of one phase must never see the next phase's environment or files): SIGKILL to every
 * process of the job's UID. The keeper and init run as KEEPER_UID, out of reach.
 */
export function toEndPhaseExecBody(): Record<string, unknown> {
  return {
    User: `${JOB_UID}:${JOB_GID}`,
    Cmd: ['/bin/sh', '-c', 'kill -KILL -1 2>/dev/null; exit 0'],
    AttachStdout: true,
    AttachStderr: true,
    Tty: false,
  };
}

export interface PasswdEntry {
  name: string;
  uid: number;
  gid: number;
  home: string;
}

/** Finds the entry for a UID in /etc/passwd text; null when there is none. */
export function findPasswdEntry(passwd: string, uid: number): PasswdEntry | null {
  for (const line of passwd.split('\n')) {
    const fields = line.split(':');
    if (fields.length < 7 || line.startsWith('#')) continue;
    if (Number(fields[2]) === uid && fields[2] !== '') {
      return { name: fields[0] as string, uid, gid: Number(fields[3]), home: fields[5] as string };
    }
  }
  return null;
}

/**
 * The home directory a job gets: its passwd entry's when usable, else berth's own. Usable: an
 * absolute path written plainly (no `.` or `..` part, no doubled slash: berth makes it, and on a
 * mounted workspace makes it on the host), that is not `/` and neither holds nor lies in the
 * workspace, berth's control directory, /proc, /sys or /dev.
 */
export function jobHome(entry: PasswdEntry | null): string {
  const home = withoutTrailingSlashes(entry?.home ?? '');
  const parts = home.split('/').slice(1);
  const plain =
    home.startsWith('/') &&
    home !== '/' &&
    parts.every((part) => part !== '' && part !== '.' && part !== '..');
  // Nor in the kernel's file systems, which the engine mounts itself (and a mount over fails).
  const apart = [WORKSPACE_DIR, CONTROL_DIR, '/proc', '/sys', '/dev'].every(
    (dir) => !pathsOverlap(home, dir),
  );
  return plain && apart ? home : '/home/berth';
}

/**
 * The registry digest of the image that runs: among the engine's RepoDigests, the one of the
 * repository asked for; null for images that never came from a registry (built or imported), and
 * for one that came only under other names (another repository's digest says nothing about this
 * run, and on a shared worker it would show another tenant's registry and repository).
 */
export function pickRepoDigest(
  repoDigests: readonly string[] | null | undefined,
  reference: string,
): string | null {
  if (!repoDigests || repoDigests.length === 0) return null;
  const wanted = repositoryOf(reference);
  return repoDigests.find((d) => repositoryOf(d) === wanted) ?? null;
}

/** `host:5000/a/b:tag@sha256:…` → `host:5000/a/b`, with Docker Hub's implicit parts added. */
export function repositoryOf(reference: string): string {
  const parsed = parseImageReference(reference);
  return parsed.ok ? repositoryName(parsed.reference) : reference;
}

/**
 * An image's platform as Terraform and OpenTofu name their release files (`linux_amd64`,
 * `linux_arm64`, `linux_arm`), from the OS, architecture and variant the engine reports; null
 * when OS or architecture is missing. The values come from whoever built the image: anything
 * that is not a known platform is refused (the name becomes part of host paths).
 */
export function imagePlatform(
  os: string | undefined,
  architecture: string | undefined,
  variant?: string,
): { platform: string | null } | { error: string } {
  const parsed = parsePlatform(os, architecture, variant);
  if ('error' in parsed) return parsed;
  return { platform: parsed.platform ? releasePlatform(parsed.platform) : null };
}

/** The directories of PATH in an image's configured environment; null when it sets no PATH. */
export function imageSearchPath(env: readonly string[] | null | undefined): string[] | null {
  const entry = env?.find((e) => e.startsWith('PATH='));
  return entry === undefined ? null : entry.slice('PATH='.length).split(':').filter(Boolean);
}
