/**
 * Puts the Terraform or OpenTofu a job asked for into its container: the verified binary for the
 * image's platform, from the shared cache, mounted read-only at /bin/terraform or /bin/tofu (or,
 * for an engine on another machine, copied there owned by root), and a CLI configuration that
 * takes exactly the providers found under /plugins from there (Terraform >= 0.13, OpenTofu).
 */
import {
  mergeCliConfig,
  providerInstallationBlock,
  scanPlugins,
  usesFilesystemMirror,
  PLUGINS_DIR,
  type FoundProvider,
  type PluginWarning,
} from '../domain/plugins.js';
import { chown, lstat, mkdir } from 'node:fs/promises';
import { joinInside } from '../domain/safe-path.js';
import path from 'node:path';
import { BerthError } from '../domain/errors.js';
import { parseVersion } from '../domain/versions.js';
import {
  CONTROL_DIR,
  JOB_GID,
  JOB_UID,
  type BindMount,
  type HostCopy,
  type JobHandle,
} from '../executor/executor.js';
import {
  provideTool,
  resolveToolVersion,
  type ProvidedTool,
  type ReleaseSource,
  type ToolName,
} from '../workflow/tool-releases.js';

export interface ToolRequest {
  /** Host directory for a provider plugin cache shared between jobs (see pluginCache). */
  pluginCacheDir?: string;
  tool: ToolName;
  /** An exact version or a constraint, resolved against the release index. */
  constraint: string;
  source: ReleaseSource;
  cacheDir: string;
  /** Directory in the container for the binary (BERTH_TOOL_DIR); it must be on the image's PATH. */
  binDir: string;
  /**
   * Keeps the shared plugin cache apart per tenant (public pools: the stack); unset, one cache
   * for every job of the machine (a private pool: one tenant).
   */
  cacheScope?: string;
}

export const DEFAULT_TOOL_DIR = '/bin';
/** Docker's PATH for images that set none. */
const ENGINE_DEFAULT_PATH = [
  '/usr/local/sbin',
  '/usr/local/bin',
  '/usr/sbin',
  '/usr/bin',
  '/sbin',
  '/bin',
];

export const CLI_CONFIG_PATH = `${CONTROL_DIR}/cli-config.tfrc`;

/** `linux_amd64` or `linux_arm64` for this machine: the platform of images that do not say. */
export function hostPlatform(arch: string = process.arch): string {
  return `linux_${arch === 'x64' ? 'amd64' : arch}`;
}

/** Where the job runs: the image's platform, and whether the engine sees this host's files. */
export interface ToolTarget {
  platform: string;
  sharesHostFiles: boolean;
  /** The image's PATH directories (null: it sets none, so the engine's default applies). */
  searchPath: string[] | null;
  /** For messages. */
  image: string;
}

export const SHARED_PLUGIN_CACHE = '/mnt/plugin-cache';
/** A job's own plugin cache: in the workspace, so it survives a tracked run's new container. */
export const JOB_PLUGIN_CACHE = '/mnt/workspace/.berth/plugin-cache';

/**
 * Whether concurrent jobs may share one writable provider plugin cache: Terraform's cache is not
 * safe for concurrent use; OpenTofu's is from 1.10, with its file locks.
 */
export function sharedCacheIsSafe(tool: ToolName, version: string): boolean {
  if (tool !== 'tofu') return false;
  const v = parseVersion(version);
  return v !== null && (v.major > 1 || (v.major === 1 && v.minor >= 10));
}

export interface PluginCache {
  mount: BindMount | null;
  env: Record<string, string>;
  note: string;
}

/**
 * The shared cache directory of one tool, platform and tenant scope: built from checked segments
 * only, created by berth, and a real directory (never a symlink someone put in its place), since
 * it is handed to UID 1983 and mounted writable.
 */
async function sharedCacheDir(hostDir: string, segments: string[]): Promise<string> {
  const root = path.resolve(hostDir);
  let dir: string;
  try {
    dir = joinInside(root, ...segments);
  } catch (err) {
    throw new BerthError(
      'BERTH_CONFIG_INVALID',
      `cannot place the shared plugin cache in ${root}: ${(err as Error).message}`,
      { cause: err },
    );
  }
  await mkdir(root, { recursive: true, mode: 0o755 });
  // Each level is made (or found) one at a time and checked, so no symlink on the way is followed.
  let current = root;
  for (const segment of segments) {
    current = path.join(current, segment);
    await mkdir(current, { mode: 0o700 }).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'EEXIST') throw err;
    });
    const info = await lstat(current);
    if (!info.isDirectory()) {
      throw new BerthError(
        'BERTH_CONFIG_INVALID',
        `the shared plugin cache path ${current} is not a directory berth made (${info.isSymbolicLink() ? 'a symlink' : 'a file'}); berth will not hand it to jobs`,
        { hint: `Remove ${current}; berth makes it again.` },
      );
    }
  }
  return dir;
}

/**
 * The provider plugin cache of a job: the shared host directory when the tool is safe with it
 * (mounted writable, owned by the job's UID), otherwise a cache of the job's own. `scope` keeps
 * tenants apart on a shared worker: each scope (a stack) gets a directory of its own, so no
 * tenant can change or delete what another tenant's jobs put there.
 */
export async function pluginCache(
  tool: ToolName,
  version: string,
  hostDir: string | undefined,
  target: Pick<ToolTarget, 'platform' | 'sharesHostFiles'>,
  scope?: string,
): Promise<PluginCache | null> {
  if (!hostDir) return null;
  const own = (why: string): PluginCache => ({
    mount: null,
    env: { TF_PLUGIN_CACHE_DIR: JOB_PLUGIN_CACHE },
    note: `${why}; this job gets a cache of its own at ${JOB_PLUGIN_CACHE}`,
  });
  if (!sharedCacheIsSafe(tool, version)) {
    return own(`${tool} ${version} is not safe with a plugin cache shared between concurrent jobs`);
  }
  if (!target.sharesHostFiles) {
    return own(
      `the Docker engine is not on this machine, so the shared plugin cache ${hostDir} cannot be mounted`,
    );
  }
  const segments = [...(scope === undefined ? [] : ['scopes', scope]), tool, target.platform];
  const dir = await sharedCacheDir(hostDir, segments);
  // The job runs as 1983; only root can hand the directory over, and nobody else gets access.
  try {
    await chown(dir, JOB_UID, JOB_GID);
  } catch (err) {
    throw new BerthError(
      'BERTH_CONFIG_INVALID',
      `cannot give the plugin cache ${dir} (BERTH_PLUGIN_CACHE_DIR) to UID ${JOB_UID}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`,
      {
        cause: err,
        hint: `Run berth as root (as workers do), or chown ${JOB_UID}:${JOB_GID} the directory yourself, or unset BERTH_PLUGIN_CACHE_DIR.`,
      },
    );
  }
  return {
    mount: { source: dir, target: SHARED_PLUGIN_CACHE, readOnly: false },
    env: { TF_PLUGIN_CACHE_DIR: SHARED_PLUGIN_CACHE },
    note: `shared plugin cache ${dir} mounted at ${SHARED_PLUGIN_CACHE}`,
  };
}

export interface PreparedTool {
  provided: ProvidedTool;
  /** Where the binary is in the container. */
  path: string;
  mounts: BindMount[];
  copies: HostCopy[];
  cache: PluginCache | null;
}

export async function prepareTool(request: ToolRequest, target: ToolTarget): Promise<PreparedTool> {
  const binDir = request.binDir.replace(/(.)\/+$/, '$1');
  const searchPath = target.searchPath ?? ENGINE_DEFAULT_PATH;
  if (!binDir.startsWith('/') || !searchPath.includes(binDir)) {
    throw new BerthError(
      'BERTH_CONFIG_INVALID',
      `BERTH_TOOL_DIR=${request.binDir} is not a directory on the PATH of image ${target.image} (${searchPath.join(':')}), so the job could not call ${request.tool}`,
      {
        hint: `Use one of ${searchPath.join(', ')}, or leave BERTH_TOOL_DIR unset (${DEFAULT_TOOL_DIR}).`,
      },
    );
  }
  const version = await resolveToolVersion(request.source, request.constraint);
  const provided = await provideTool(request.source, version, target.platform, request.cacheDir);
  const cache = await pluginCache(
    request.tool,
    version,
    request.pluginCacheDir,
    target,
    request.cacheScope,
  );
  const at = `${binDir === '/' ? '' : binDir}/${request.tool}`;
  const mounts: BindMount[] = cache?.mount ? [cache.mount] : [];
  const copies: HostCopy[] = [];
  if (target.sharesHostFiles)
    mounts.unshift({ source: provided.binary, target: at, readOnly: true });
  else copies.push({ source: provided.binary, target: at, mode: 0o755 });
  return { provided, path: at, mounts, copies, cache };
}

export interface PluginSetup {
  providers: FoundProvider[];
  warnings: PluginWarning[];
  /** Variables every phase gets. */
  env: Record<string, string>;
  note: string | null;
}

/** Scans /plugins in the running container and writes the CLI configuration for the phases. */
export async function configurePlugins(
  job: JobHandle,
  tool: ToolName,
  version: string,
  userConfig: string | null,
  platform: string,
): Promise<PluginSetup> {
  const env: Record<string, string> = { TF_IN_AUTOMATION: '1', TF_INPUT: '0' };
  if (!usesFilesystemMirror(tool, version)) {
    return {
      providers: [],
      warnings: [],
      env,
      note: `${tool} ${version} takes providers from next to its binary in /bin; no ${PLUGINS_DIR} mirror is configured`,
    };
  }
  const scan = scanPlugins(await job.listTree(PLUGINS_DIR), platform);
  const merged = mergeCliConfig(userConfig, providerInstallationBlock(scan.providers));
  if (merged.text.trim() !== '') {
    await job.writeControlFile(CLI_CONFIG_PATH, merged.text);
    env.TF_CLI_CONFIG_FILE = CLI_CONFIG_PATH;
  }
  return { providers: scan.providers, warnings: scan.warnings, env, note: merged.warning };
}
