/**
 * The runtime configuration's schema and its resolution for one stack: settings, precedence by
 * version (values replace, never merge), the runner image chain. Reading the YAML file, with
 * positions for every problem, is in runtime-config-yaml.ts (loaded only when a file exists).
 */

export const HOOKS = [
  'before_init',
  'after_init',
  'before_plan',
  'after_plan',
  'before_apply',
  'after_apply',
  'before_perform',
  'after_perform',
  'before_destroy',
  'after_destroy',
  'after_run',
] as const;
export type HookName = (typeof HOOKS)[number];

export const WORKFLOW_TOOLS = ['TERRAFORM_FOSS', 'OPEN_TOFU', 'CUSTOM'] as const;
export type WorkflowTool = (typeof WORKFLOW_TOOLS)[number];

/** The short names `--tool` takes besides the canonical ones (`berth run`, `berth stack`). */
const TOOL_NAMES: Record<string, WorkflowTool> = {
  terraform: 'TERRAFORM_FOSS',
  opentofu: 'OPEN_TOFU',
  tofu: 'OPEN_TOFU',
  custom: 'CUSTOM',
};

/** What `--tool` accepts, for a fix. */
export const TOOL_SPELLINGS =
  'terraform, opentofu (or tofu) or custom (or TERRAFORM_FOSS, OPEN_TOFU, CUSTOM)';

/** A tool as a user names it (any case of a short name, or the canonical name), else null. */
export function parseWorkflowTool(text: string): WorkflowTool | null {
  return TOOL_NAMES[text.trim().toLowerCase()] ?? WORKFLOW_TOOLS.find((t) => t === text) ?? null;
}

export interface StackSettings {
  runner_image?: string;
  terraform_version?: string;
  opentofu_version?: string;
  terraform_workflow_tool?: WorkflowTool;
  environment?: Record<string, string>;
  project_root?: string;
  strict_hooks?: boolean;
  before_init?: string[];
  after_init?: string[];
  before_plan?: string[];
  after_plan?: string[];
  before_apply?: string[];
  after_apply?: string[];
  before_perform?: string[];
  after_perform?: string[];
  before_destroy?: string[];
  after_destroy?: string[];
  after_run?: string[];
}
export type SettingName = keyof StackSettings;

export interface RuntimeConfig {
  file: string;
  version: 1 | 2;
  stackDefaults: StackSettings;
  stacks: Record<string, StackSettings>;
}

export interface ConfigProblem {
  file: string;
  line: number;
  column: number;
  message: string;
  hint: string;
}

export function formatProblem(problem: ConfigProblem): string {
  return `${problem.file}:${problem.line}:${problem.column}: ${problem.message} (${problem.hint})`;
}

export const SETTING_NAMES: readonly SettingName[] = [
  'runner_image',
  'terraform_version',
  'opentofu_version',
  'terraform_workflow_tool',
  'environment',
  'project_root',
  'strict_hooks',
  ...HOOKS,
];

/** Checks a `project_root` value: relative, inside the repository. Null when fine. */
export function projectRootProblem(value: string): string | null {
  if (value.startsWith('/'))
    return `project_root "${value}" is absolute; it must be relative to the repository root`;
  const parts = value.split('/').filter((p) => p !== '' && p !== '.');
  let depth = 0;
  for (const part of parts) {
    depth += part === '..' ? -1 : 1;
    if (depth < 0) return `project_root "${value}" leaves the repository`;
  }
  return null;
}

/** Normalises a valid project root: `./infra//prod/` → `infra/prod`, `.` → ``. */
export function normaliseProjectRoot(value: string): string {
  const out: string[] = [];
  for (const part of value.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') out.pop();
    else out.push(part);
  }
  return out.join('/');
}

export type SettingSource = string;

export interface ResolvedSettings {
  values: StackSettings;
  /** For each resolved setting, the layer it came from. */
  sources: Partial<Record<SettingName, SettingSource>>;
}

/**
 * Resolves one stack's settings. Version 2: the file's stack entry, then stack_defaults, then the
 * stack's own settings. Version 1: the file's stack entry, then the stack's settings, then
 * stack_defaults. The first layer that sets a value wins; values are never merged.
 */
export function resolveStackSettings(
  config: RuntimeConfig | null,
  stackId: string,
  stackSettings: StackSettings,
): ResolvedSettings {
  const layers: [SettingSource, StackSettings][] = [];
  const stackLayer: [SettingSource, StackSettings] = ['stack settings', stackSettings];
  if (config) {
    const entry: [SettingSource, StackSettings] = [
      `${config.file} stacks.${stackId}`,
      config.stacks[stackId] ?? {},
    ];
    const defaults: [SettingSource, StackSettings] = [
      `${config.file} stack_defaults`,
      config.stackDefaults,
    ];
    layers.push(entry, ...(config.version === 2 ? [defaults, stackLayer] : [stackLayer, defaults]));
  } else {
    layers.push(stackLayer);
  }
  const values: StackSettings = {};
  const sources: Partial<Record<SettingName, SettingSource>> = {};
  for (const name of SETTING_NAMES) {
    for (const [source, layer] of layers) {
      if (layer[name] !== undefined) {
        (values as Record<string, unknown>)[name] = layer[name];
        sources[name] = source;
        break;
      }
    }
  }
  return { values, sources };
}

/** The runner image chain: runtime config or stack setting (as resolved), pool default, berth's default. */
export function resolveRunnerImage(
  resolved: ResolvedSettings,
  poolDefault: string | null,
  berthDefault: string,
): { image: string; source: SettingSource } {
  if (resolved.values.runner_image)
    return {
      image: resolved.values.runner_image,
      source: resolved.sources.runner_image ?? 'stack settings',
    };
  if (poolDefault) return { image: poolDefault, source: 'pool default' };
  return { image: berthDefault, source: "berth's default" };
}
