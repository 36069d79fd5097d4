/**
 * What `berth run` takes from the runtime configuration: reads `.berth/config.yml` (else
 * `.spacelift/config.yml`) from the job directory and the stack's own settings from
 * `--stack-settings FILE` and flags, resolves them for the stack, and turns the result into the
 * task phase (with its hooks), the after_run phase, the environment and the runner image.
 */
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { BerthError } from '../domain/errors.js';
import { hookChain, phaseScript } from '../domain/hook-script.js';
import type { RunConfiguration } from '../domain/run-events.js';
import {
  formatProblem,
  normaliseProjectRoot,
  projectRootProblem,
  resolveRunnerImage,
  resolveStackSettings,
  parseWorkflowTool,
  TOOL_SPELLINGS,
  type ConfigProblem,
  type RuntimeConfig,
  type StackSettings,
} from '../domain/runtime-config.js';
import { parseConstraint } from '../domain/versions.js';
import { SOURCE_DIR, type Phase } from '../executor/executor.js';
import { readJobFile } from './job-files.js';
import {
  CUSTOM_TEMPLATES,
  fillTemplate,
  programOf,
  requiredTemplates,
  toolCommands,
  workflowPhases,
  type RunType,
  type WorkflowCommands,
  type WorkflowPhase,
} from '../domain/workflow.js';

export const CONFIG_FILES = [
  path.join('.berth', 'config.yml'),
  path.join('.spacelift', 'config.yml'),
];

export interface RunConfigInput {
  type: RunType;
  sourceDir: string;
  stack: string;
  stackSettingsFile?: string;
  /** `--runner-image` and `--project-root`: the stack's own settings, over the settings file. */
  runnerImage?: string;
  projectRoot?: string;
  /** `--tool` and `--tool-version`: the stack's workflow tool and its version. */
  tool?: string;
  toolVersion?: string;
  /** `--image`: overrides every layer for this run. */
  imageOverride?: string;
  poolDefaultImage: string | null;
  berthDefaultImage: string;
  command: string;
  runId: string;
  /**
   * The commit and branch of the source when the front end knows them (a worker's checkout of
   * the run's commit, which has no .git of its own); otherwise git is asked about `sourceDir`.
   */
  commit?: { sha: string; branch: string };
  /**
   * Who or what triggered the run (`TF_VAR_berth_run_trigger`): the token's name for a server's
   * run; `berth run` when absent.
   */
  trigger?: string;
  /** The stack's labels (`TF_VAR_berth_stack_labels`, comma-separated; a server's stack). */
  stackLabels?: string[];
}

export interface ToolChoice {
  tool: 'terraform' | 'tofu';
  /** The version or constraint asked for; newest stable when none was. */
  constraint: string;
}

/** Which tool a run mounts: the workflow tool, else the one whose version is set, else none. */
export function chooseTool(values: StackSettings): ToolChoice | null {
  const workflow = values.terraform_workflow_tool;
  let tool: 'terraform' | 'tofu' | null = null;
  if (workflow === 'OPEN_TOFU') tool = 'tofu';
  else if (workflow === 'TERRAFORM_FOSS') tool = 'terraform';
  else if (workflow === undefined && values.terraform_version) tool = 'terraform';
  else if (workflow === undefined && values.opentofu_version) tool = 'tofu';
  if (!tool) return null;
  const constraint =
    (tool === 'terraform' ? values.terraform_version : values.opentofu_version) ?? '>= 0.0.0';
  return { tool, constraint };
}

export interface RunConfigResult {
  tool: ToolChoice | null;
  /** Workflow runs: each phase's state, and a tracked run's apply phases. */
  workflow: { states: Record<string, string>; apply: Phase[]; programs: string[] } | null;
  configuration: RunConfiguration;
  image: string;
  imageSource: string;
  phases: Phase[];
  afterRun?: Phase;
  environment: Record<string, string>;
}

function invalid(problems: ConfigProblem[]): BerthError {
  return new BerthError(
    'BERTH_CONFIG_INVALID',
    `${problems.length} problem${problems.length === 1 ? '' : 's'} in the configuration:\n  ${problems.map(formatProblem).join('\n  ')}`,
  );
}

/** A file named on the command line (the operator's own, not the job directory's). */
async function readIfPresent(file: string): Promise<string | null> {
  try {
    return await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new BerthError(
      'BERTH_WORKSPACE_UNREADABLE',
      `cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`,
      { cause: err },
    );
  }
}

export async function loadRuntimeConfig(sourceDir: string): Promise<RuntimeConfig | null> {
  for (const relative of CONFIG_FILES) {
    const text = await readJobFile(sourceDir, relative);
    if (text === null) continue;
    // The YAML reader (and its library) loads only when there is a file to read.
    const { parseRuntimeConfig } = await import('../domain/runtime-config-yaml.js');
    const parsed = parseRuntimeConfig(text, relative);
    if (!parsed.ok) throw invalid(parsed.problems);
    return parsed.config;
  }
  return null;
}

async function loadStackSettings(input: RunConfigInput): Promise<StackSettings> {
  let settings: StackSettings = {};
  if (input.stackSettingsFile) {
    const text = await readIfPresent(input.stackSettingsFile);
    if (text === null)
      throw new BerthError(
        'BERTH_USAGE',
        `--stack-settings ${input.stackSettingsFile}: no such file`,
      );
    const { parseStackSettings } = await import('../domain/runtime-config-yaml.js');
    const parsed = parseStackSettings(text, input.stackSettingsFile);
    if (!parsed.ok) throw invalid(parsed.problems);
    settings = parsed.settings;
  }
  if (input.runnerImage !== undefined) settings = { ...settings, runner_image: input.runnerImage };
  if (input.projectRoot !== undefined) {
    const problem = projectRootProblem(input.projectRoot);
    if (problem) throw new BerthError('BERTH_USAGE', `--project-root: ${problem}`);
    settings = { ...settings, project_root: normaliseProjectRoot(input.projectRoot) };
  }
  return withToolFlags(settings, input.tool, input.toolVersion);
}

/** `--tool` and `--tool-version` over the stack's own settings. */
export function withToolFlags(
  settings: StackSettings,
  tool: string | undefined,
  version: string | undefined,
): StackSettings {
  let result = settings;
  if (tool !== undefined) {
    const named = parseWorkflowTool(tool);
    if (!named) {
      throw new BerthError('BERTH_USAGE', `--tool ${JSON.stringify(tool)} is not a workflow tool`, {
        hint: `Use ${TOOL_SPELLINGS}.`,
      });
    }
    result = { ...result, terraform_workflow_tool: named };
  }
  if (version === undefined) return result;
  const constraint = parseConstraint(version);
  if ('error' in constraint)
    throw new BerthError('BERTH_USAGE', `--tool-version: ${constraint.error}`);
  switch (result.terraform_workflow_tool) {
    case 'TERRAFORM_FOSS':
      return { ...result, terraform_version: version.trim() };
    case 'OPEN_TOFU':
      return { ...result, opentofu_version: version.trim() };
    default:
      throw new BerthError(
        'BERTH_USAGE',
        result.terraform_workflow_tool === 'CUSTOM'
          ? '--tool-version: a CUSTOM workflow tool has no version berth provides'
          : '--tool-version needs the tool it is a version of',
        {
          hint: 'Add --tool terraform or --tool opentofu (or terraform_workflow_tool in --stack-settings).',
        },
      );
  }
}

export async function resolveRunConfig(input: RunConfigInput): Promise<RunConfigResult> {
  const config = await loadRuntimeConfig(input.sourceDir);
  const resolved = resolveStackSettings(config, input.stack, await loadStackSettings(input));
  const chain = resolveRunnerImage(resolved, input.poolDefaultImage, input.berthDefaultImage);
  const { image, source: imageSource } = input.imageOverride
    ? { image: input.imageOverride, source: '--image' }
    : chain;
  const values = resolved.values;

  const projectRoot = values.project_root ?? '';
  if (projectRoot) {
    const info = await stat(path.join(input.sourceDir, projectRoot)).catch(() => null);
    if (!info?.isDirectory()) {
      throw new BerthError(
        'BERTH_CONFIG_INVALID',
        `project_root "${projectRoot}" (from ${resolved.sources.project_root}) is not a directory in ${input.sourceDir}`,
        {
          hint: 'Set project_root to a directory that exists in the repository, relative to its root.',
        },
      );
    }
  }
  const workingDir = projectRoot ? `${SOURCE_DIR}/${projectRoot}` : SOURCE_DIR;
  const strict = values.strict_hooks ?? false;
  let tool = chooseTool(values);
  let phases: Phase[];
  let workflow: RunConfigResult['workflow'] = null;
  if (input.type === 'task') {
    phases = [
      {
        name: 'task',
        workingDir,
        script: phaseScript({
          before: values.before_perform ?? [],
          command: input.command,
          after: values.after_perform ?? [],
          strict,
        }),
      },
    ];
  } else {
    let commands: WorkflowCommands;
    let programs: string[] = [];
    if (values.terraform_workflow_tool === 'CUSTOM') {
      commands = await loadCustomWorkflow(input.sourceDir, input.type);
      programs = [...new Set(Object.values(commands).filter(Boolean).map(programOf))];
      tool = null;
    } else {
      // Workflow runs always have a tool: OpenTofu, newest stable, unless the settings say otherwise.
      tool ??= { tool: 'tofu', constraint: '>= 0.0.0' };
      commands = toolCommands(tool.tool);
    }
    const planned = workflowPhases(input.type, commands, values);
    const toPhase = (p: WorkflowPhase): Phase => ({ name: p.name, workingDir, script: p.script });
    phases = planned.first.map(toPhase);
    workflow = {
      states: Object.fromEntries(
        [...planned.first, ...planned.apply].map((p) => [p.name, p.state]),
      ),
      apply: planned.apply.map(toPhase),
      programs,
    };
  }
  const afterRun = values.after_run?.length
    ? { name: 'after_run', workingDir, script: hookChain(values.after_run, strict) }
    : undefined;

  const commit = input.commit ?? (await gitCommit(input.sourceDir));
  const runValues: Record<string, string> = {
    run_id: input.runId,
    commit_sha: commit.sha,
    commit_branch: commit.branch,
    stack_id: input.stack,
    run_type: input.type.toUpperCase(),
    project_root: projectRoot,
    workspace_root: SOURCE_DIR,
    run_trigger: input.trigger ?? 'berth run',
    stack_labels: (input.stackLabels ?? []).join(','),
  };
  const environment: Record<string, string> = { ...(values.environment ?? {}) };
  for (const [name, value] of Object.entries(runValues)) {
    environment[`TF_VAR_berth_${name}`] = value;
    // For images and configurations written for the reference product.
    environment[`TF_VAR_spacelift_${name}`] = value;
  }

  const settings: RunConfiguration['settings'] = {};
  for (const [name, value] of Object.entries(values)) {
    if (name === 'runner_image') continue;
    settings[name] = {
      value,
      source: resolved.sources[name as keyof StackSettings] ?? 'stack settings',
    };
  }
  settings.runner_image = { value: image, source: imageSource };
  return {
    configuration: { stack: input.stack, file: config?.file ?? null, settings },
    image,
    imageSource,
    phases,
    afterRun,
    environment,
    tool,
    workflow,
  };
}

export const WORKFLOW_FILES = [
  path.join('.berth', 'workflow.yml'),
  path.join('.spacelift', 'workflow.yml'),
];

/** A CUSTOM tool's commands from the repository's workflow file, checked for this run type. */
export async function loadCustomWorkflow(
  sourceDir: string,
  type: Exclude<RunType, 'task'>,
): Promise<WorkflowCommands> {
  let text: string | null = null;
  let file = '';
  for (const relative of WORKFLOW_FILES) {
    text = await readJobFile(sourceDir, relative);
    file = relative;
    if (text !== null) break;
  }
  if (text === null) {
    throw new BerthError(
      'BERTH_CUSTOM_WORKFLOW_MISSING',
      `terraform_workflow_tool is CUSTOM, but ${sourceDir} has no ${WORKFLOW_FILES.join(' or ')}`,
    );
  }
  let parsed: unknown;
  try {
    const { parse } = await import('yaml');
    parsed = parse(text);
  } catch (err) {
    throw new BerthError(
      'BERTH_CONFIG_INVALID',
      `${file} is not valid YAML: ${(err as Error).message.split('\n')[0]}`,
      { cause: err },
    );
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new BerthError(
      'BERTH_CUSTOM_COMMANDS_MISSING',
      `${file} must be a mapping of command templates (${CUSTOM_TEMPLATES.join(', ')})`,
    );
  }
  const templates = parsed as Record<string, unknown>;
  const problems: string[] = [];
  for (const key of Object.keys(templates)) {
    if (!(CUSTOM_TEMPLATES as readonly string[]).includes(key))
      problems.push(`unknown command "${key}" (known: ${CUSTOM_TEMPLATES.join(', ')})`);
  }
  const needed = requiredTemplates(type);
  const missing = needed.filter(
    (key) => typeof templates[key] !== 'string' || templates[key].trim() === '',
  );
  if (missing.length > 0)
    problems.push(
      `a ${type} run needs ${missing.join(', ')}, which ${missing.length === 1 ? 'is' : 'are'} missing`,
    );
  const commands: WorkflowCommands = { init: '', plan: '', showPlan: '', apply: '', destroy: '' };
  for (const key of needed) {
    if (missing.includes(key)) continue;
    const filled = fillTemplate(templates[key] as string);
    if ('error' in filled) problems.push(`${key}: ${filled.error}`);
    else commands[key as keyof WorkflowCommands] = filled.command;
  }
  if (problems.length > 0) {
    throw new BerthError('BERTH_CUSTOM_COMMANDS_MISSING', `${file}: ${problems.join('; ')}`);
  }
  return commands;
}

/** The commit and branch of the job directory when it is a git checkout; empty otherwise. */
export async function gitCommit(dir: string): Promise<{ sha: string; branch: string }> {
  // Two git processes per run cost more than the rest of preparing it on a busy worker: not
  // started when git could find no repository here anyway.
  if (!(await mayBeInRepository(dir, process.env))) return { sha: '', branch: '' };
  const { execFile } = await import('node:child_process');
  const git = (args: string[]): Promise<string> =>
    new Promise((resolve) => {
      // The directory is a tenant's: no hooks, no fsmonitor command from its configuration.
      execFile(
        'git',
        ['-c', 'core.fsmonitor=false', '-c', 'core.hooksPath=/dev/null', '-C', dir, ...args],
        { timeout: 5000 },
        (err, stdout) => resolve(err ? '' : stdout.trim()),
      );
    });
  const [sha, branch] = await Promise.all([
    git(['rev-parse', '--verify', '-q', 'HEAD']),
    git(['symbolic-ref', '--short', '-q', 'HEAD']),
  ]);
  return { sha, branch };
}

/**
 * False only when git's own discovery could find no repository for `dir`: no `.git` in it or any
 * directory above, none of them a bare repository (HEAD, objects and refs), and no GIT_DIR or
 * GIT_WORK_TREE pointing elsewhere. True (ask git) in every other case, errors included.
 */
export async function mayBeInRepository(dir: string, env: NodeJS.ProcessEnv): Promise<boolean> {
  if (env.GIT_DIR || env.GIT_WORK_TREE) return true;
  const exists = (file: string): Promise<boolean> =>
    stat(file).then(
      () => true,
      (err: NodeJS.ErrnoException) => err.code !== 'ENOENT' && err.code !== 'ENOTDIR',
    );
  for (let at = path.resolve(dir); ; at = path.dirname(at)) {
    if (await exists(path.join(at, '.git'))) return true;
    if (
      (await exists(path.join(at, 'HEAD'))) &&
      (await exists(path.join(at, 'objects'))) &&
      (await exists(path.join(at, 'refs')))
    )
      return true;
    if (path.dirname(at) === at) return false;
  }
}
