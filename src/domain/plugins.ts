/**
 * Custom providers under /plugins: what is there, what is wrong with it, and the CLI
 * configuration that makes Terraform (>= 0.13) and OpenTofu take exactly those providers from
 * /plugins and everything else from their registries. The layout is Terraform's unpacked
 * filesystem mirror:
 *
 *   /plugins/<host>/<namespace>/<type>/<version>/<os>_<arch>/terraform-provider-<type>[_v<version>]
 */
import { parseVersion } from './versions.js';

export const PLUGINS_DIR = '/plugins';

export interface PluginEntry {
  /** Path below /plugins, `/`-separated, no leading slash. */
  path: string;
  kind: 'file' | 'directory' | 'symlink' | 'other';
  mode: number;
}

export interface FoundProvider {
  /** `<host>/<namespace>/<type>`, as `required_providers` names it. */
  source: string;
  version: string;
  platform: string;
  file: string;
}

export interface PluginWarning {
  path: string;
  rule: string;
}

export interface PluginScan {
  providers: FoundProvider[];
  warnings: PluginWarning[];
}

const NAME = /^[a-z0-9][a-z0-9._-]*$/i;

/** Classifies every file under /plugins against the mirror layout. */
export function scanPlugins(entries: readonly PluginEntry[], platform: string): PluginScan {
  const providers: FoundProvider[] = [];
  const warnings: PluginWarning[] = [];
  const warn = (path: string, rule: string): void => {
    warnings.push({ path: `${PLUGINS_DIR}/${path}`, rule });
  };
  for (const entry of entries) {
    if (entry.kind === 'directory') continue;
    const parts = entry.path.split('/').filter(Boolean);
    if (parts.length !== 6) {
      warn(
        entry.path,
        `wrong depth: a provider lives at ${PLUGINS_DIR}/<host>/<namespace>/<type>/<version>/<os>_<arch>/terraform-provider-<type>, ${parts.length} levels here instead of 6`,
      );
      continue;
    }
    const [host, namespace, type, version, os_arch, file] = parts as [
      string,
      string,
      string,
      string,
      string,
      string,
    ];
    if (![host, namespace, type].every((p) => NAME.test(p))) {
      warn(entry.path, 'host, namespace and type must be names of letters, digits, ., _ and -');
      continue;
    }
    const parsed = parseVersion(version);
    if (!parsed || !/^\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?$/.test(version)) {
      warn(entry.path, `"${version}" is not a semantic version (MAJOR.MINOR.PATCH)`);
      continue;
    }
    if (!/^[a-z0-9]+_[a-z0-9]+$/.test(os_arch)) {
      warn(entry.path, `"${os_arch}" is not an <os>_<arch> directory such as ${platform}`);
      continue;
    }
    if (os_arch !== platform) {
      warn(
        entry.path,
        `built for ${os_arch}, but the job's container is ${platform}; Terraform will not use it`,
      );
      continue;
    }
    const base = `terraform-provider-${type}`;
    if (file !== base && !file.startsWith(`${base}_v`)) {
      warn(entry.path, `the file must be named ${base} or ${base}_v${version}`);
      continue;
    }
    if (entry.kind === 'other') {
      warn(entry.path, 'not a regular file');
      continue;
    }
    if (entry.kind === 'file' && (entry.mode & 0o111) === 0) {
      warn(entry.path, 'not executable: chmod +x it in the image');
      continue;
    }
    providers.push({
      source: `${host}/${namespace}/${type}`.toLowerCase(),
      version,
      platform: os_arch,
      file: `${PLUGINS_DIR}/${entry.path}`,
    });
  }
  return { providers, warnings };
}

export type ProviderTool = 'terraform' | 'tofu';

/** Terraform 0.12 and older find providers next to their binary; nothing to configure. */
export function usesFilesystemMirror(tool: ProviderTool, version: string): boolean {
  if (tool === 'tofu') return true;
  const v = parseVersion(version);
  return v === null || v.major > 0 || v.minor >= 13;
}

function hclList(values: readonly string[]): string {
  return `[${values.map((v) => JSON.stringify(v)).join(', ')}]`;
}

/**
 * The provider_installation block: /plugins for exactly the providers found there, the registry
 * for everything else. Null when there is nothing to mirror.
 */
export function providerInstallationBlock(providers: readonly FoundProvider[]): string | null {
  const sources = [...new Set(providers.map((p) => p.source))].sort();
  if (sources.length === 0) return null;
  return [
    'provider_installation {',
    '  filesystem_mirror {',
    `    path    = "${PLUGINS_DIR}"`,
    `    include = ${hclList(sources)}`,
    '  }',
    '  direct {',
    `    exclude = ${hclList(sources)}`,
    '  }',
    '}',
    '',
  ].join('\n');
}

/**
 * berth's CLI configuration merged with the user's own (e.g. a mounted .terraformrc): the user's
 * settings are kept whole; berth adds its provider_installation block, unless the user wrote one,
 * which then wins (Terraform allows only one) and is reported.
 */
export function mergeCliConfig(
  user: string | null,
  block: string | null,
): { text: string; warning: string | null } {
  const own = user ?? '';
  if (!block) return { text: own, warning: null };
  if (/^\s*provider_installation\s*\{/m.test(own)) {
    return {
      text: own,
      warning: `your CLI configuration has its own provider_installation block, so berth did not add /plugins to it; add a filesystem_mirror for ${PLUGINS_DIR} to use the providers there`,
    };
  }
  return {
    text:
      own.trim() === ''
        ? block
        : `${own.replace(/\s*$/, '\n\n')}# Added by berth: providers from ${PLUGINS_DIR}\n${block}`,
    warning: null,
  };
}
