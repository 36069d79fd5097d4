/**
 * Puts the Terraform or OpenTofu a job asked for into its container: the verified binary from
 * the shared cache, mounted read-only at /bin/terraform or /bin/tofu, and a CLI configuration that
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
import { CONTROL_DIR, type BindMount, type JobHandle } from '../executor/executor.js';
import {
  provideTool,
  resolveToolVersion,
  type ProvidedTool,
  type ReleaseSource,
  type ToolName,
} from '../workflow/tool-releases.js';

export interface ToolRequest {
  tool: ToolName;
  /** An exact version or a constraint, resolved against the release index. */
  constraint: string;
  source: ReleaseSource;
  cacheDir: string;
}

export const CLI_CONFIG_PATH = `${CONTROL_DIR}/cli-config.tfrc`;

/** `linux_amd64` or `linux_arm64`, for the engine this process talks to (a local one). */
export function containerPlatform(arch: string = process.arch): string {
  return `linux_${arch === 'x64' ? 'amd64' : arch}`;
}

export async function prepareTool(
  request: ToolRequest,
): Promise<{ provided: ProvidedTool; mount: BindMount }> {
  const version = await resolveToolVersion(request.source, request.constraint);
  const provided = await provideTool(
    request.source,
    version,
    containerPlatform(),
    request.cacheDir,
  );
  return {
    provided,
    mount: { source: provided.binary, target: `/bin/${request.tool}`, readOnly: true },
  };
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
  const scan = scanPlugins(await job.listTree(PLUGINS_DIR), containerPlatform());
  const merged = mergeCliConfig(userConfig, providerInstallationBlock(scan.providers));
  if (merged.text.trim() !== '') {
    await job.writeControlFile(CLI_CONFIG_PATH, merged.text);
    env.TF_CLI_CONFIG_FILE = CLI_CONFIG_PATH;
  }
  return { providers: scan.providers, warnings: scan.warnings, env, note: merged.warning };
}
