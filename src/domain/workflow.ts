/**
 * The Terraform/OpenTofu workflow's phases for each run type, with their hooks and states, and
 * the plan summary read from `show -json`. Pure: the launcher runs what this describes.
 *
 *   proposed  init, plan                       (PLANNING ends the run)
 *   tracked   init, plan | confirm | apply     (apply runs the exact saved plan)
 *   destroy   init, destroy
 */
import { renderTemplate, type TemplateData } from './command-template.js';
import { phaseScript } from './hook-script.js';
import type { StackSettings } from './runtime-config.js';

export const RUN_TYPES = ['task', 'proposed', 'tracked', 'destroy'] as const;
export type RunType = (typeof RUN_TYPES)[number];

/** Where the saved plan and its JSON form live: inside the workspace, so they travel with it. */
export const PLAN_FILE = '/mnt/workspace/.berth/plan.tfplan';
export const PLAN_JSON = '/mnt/workspace/.berth/plan.json';

export interface WorkflowPhase {
  name: 'init' | 'plan' | 'apply' | 'destroy';
  /** The run state while the phase runs. */
  state: 'INITIALIZING' | 'PLANNING' | 'APPLYING' | 'DESTROYING';
  script: string;
}

function phase(
  name: WorkflowPhase['name'],
  state: WorkflowPhase['state'],
  command: string,
  settings: StackSettings,
): WorkflowPhase {
  const before = settings[`before_${name}`] ?? [];
  const after = settings[`after_${name}`] ?? [];
  return {
    name,
    state,
    script: phaseScript({ before, command, after, strict: settings.strict_hooks ?? false }),
  };
}

/** The shell commands of the workflow's steps. */
export interface WorkflowCommands {
  init: string;
  plan: string;
  showPlan: string;
  apply: string;
  destroy: string;
}

/** Terraform's and OpenTofu's own commands. */
export function toolCommands(tool: string): WorkflowCommands {
  return {
    init: `${tool} init -input=false`,
    plan: `${tool} plan -input=false -out=${PLAN_FILE}`,
    showPlan: `${tool} show -json ${PLAN_FILE}`,
    apply: `${tool} apply -input=false ${PLAN_FILE}`,
    destroy: `${tool} destroy -auto-approve -input=false`,
  };
}

/** The phases of the first container, and (tracked runs) of the apply. */
export function workflowPhases(
  type: Exclude<RunType, 'task'>,
  commands: WorkflowCommands,
  settings: StackSettings,
): { first: WorkflowPhase[]; apply: WorkflowPhase[] } {
  const init = phase('init', 'INITIALIZING', commands.init, settings);
  const plan = phase(
    'plan',
    'PLANNING',
    `${commands.plan} && ${commands.showPlan} > ${PLAN_JSON}`,
    settings,
  );
  switch (type) {
    case 'proposed':
      return { first: [init, plan], apply: [] };
    case 'tracked':
      return { first: [init, plan], apply: [phase('apply', 'APPLYING', commands.apply, settings)] };
    case 'destroy':
      return {
        first: [init, phase('destroy', 'DESTROYING', commands.destroy, settings)],
        apply: [],
      };
  }
}

/** The templates a CUSTOM workflow file may hold, as the reference names them. */
export const CUSTOM_TEMPLATES = [
  'init',
  'workspaceSelect',
  'workspaceNew',
  'plan',
  'showState',
  'showPlan',
  'getOutputs',
  'apply',
  'destroy',
] as const;
export type CustomTemplate = (typeof CUSTOM_TEMPLATES)[number];

/** The templates each run type needs. */
export function requiredTemplates(type: Exclude<RunType, 'task'>): CustomTemplate[] {
  switch (type) {
    case 'proposed':
      return ['init', 'plan', 'showPlan'];
    case 'tracked':
      return ['init', 'plan', 'showPlan', 'apply'];
    case 'destroy':
      return ['init', 'destroy'];
  }
}

/**
 * The values a CUSTOM workflow's templates may use, as the reference names them. berth runs no
 * targeted plans and selects no workspaces itself, so Targets is empty and WorkspaceName blank.
 */
export const TEMPLATE_VALUES: TemplateData = {
  PlanFileName: PLAN_FILE,
  WorkspaceName: '',
  Lock: true,
  Refresh: true,
  Targets: [],
};

/** Fills a workflow file's command template (Go template syntax, the subset in command-template.ts). */
export function fillTemplate(template: string): { command: string } | { error: string } {
  const filled = renderTemplate(template, TEMPLATE_VALUES);
  return 'error' in filled ? filled : { command: filled.text };
}

/** The first word of a command: the program a CUSTOM workflow needs in the image. */
export function programOf(command: string): string {
  return command.trim().split(/\s+/)[0] ?? '';
}

export interface PlanSummary {
  add: number;
  change: number;
  destroy: number;
  /** Resources replaced (counted in add and destroy as well, as Terraform does). */
  replace: number;
  /** The first PLAN_SUMMARY_LIMITS.resources changed resources, addresses masked and bounded. */
  resources: { address: string; actions: string[] }[];
  /** Changed resources past that limit (counted above, not listed). */
  resourcesNotShown: number;
}

/**
 * The plan JSON is written by the job, so everything taken from it is bounded: the file read,
 * the resources listed, each address (an address can carry any for_each key).
 */
export const PLAN_SUMMARY_LIMITS = {
  jsonBytes: 16 * 1024 * 1024,
  resources: 100,
  addressChars: 256,
} as const;

const PLAN_ACTIONS = new Set(['no-op', 'create', 'read', 'update', 'delete', 'forget']);

/**
 * Reads `show -json` output; null when it is not a plan. `mask` hides secrets in addresses (a
 * for_each key can hold one); it runs before an address is shortened, so no cut can leave part
 * of a secret unmasked.
 */
export function summarisePlan(
  json: string,
  mask: (text: string) => string = (text) => text,
): PlanSummary | null {
  let plan: unknown;
  try {
    plan = JSON.parse(json);
  } catch {
    return null;
  }
  if (typeof plan !== 'object' || plan === null) return null;
  const changes = (plan as { resource_changes?: unknown }).resource_changes;
  const summary: PlanSummary = {
    add: 0,
    change: 0,
    destroy: 0,
    replace: 0,
    resources: [],
    resourcesNotShown: 0,
  };
  for (const change of Array.isArray(changes) ? (changes as unknown[]) : []) {
    if (typeof change !== 'object' || change === null) continue;
    const { address, change: detail } = change as { address?: unknown; change?: unknown };
    const listed = (detail as { actions?: unknown } | null)?.actions;
    const actions = (Array.isArray(listed) ? (listed as unknown[]) : []).filter(
      (a): a is string => typeof a === 'string' && PLAN_ACTIONS.has(a),
    );
    if (actions.length === 1 && actions[0] === 'no-op') continue;
    if (actions.includes('create')) summary.add += 1;
    if (actions.includes('delete')) summary.destroy += 1;
    if (actions.includes('update')) summary.change += 1;
    if (actions.includes('create') && actions.includes('delete')) summary.replace += 1;
    if (!actions.some((a) => a !== 'read')) continue;
    if (summary.resources.length >= PLAN_SUMMARY_LIMITS.resources) {
      summary.resourcesNotShown += 1;
      continue;
    }
    summary.resources.push({ address: boundAddress(address, mask), actions });
  }
  return summary;
}

function boundAddress(address: unknown, mask: (text: string) => string): string {
  if (typeof address !== 'string') return '?';
  const masked = mask(address);
  const max = PLAN_SUMMARY_LIMITS.addressChars;
  return masked.length > max ? `${masked.slice(0, max - 1)}…` : masked;
}

/** Phases that only read (plan); `ro_` variables reach only these, `wo_` ones only the others. */
const READ_PHASES = new Set(['init', 'plan']);

/**
 * Splits a job's variables by the reference's prefixes: `ro_NAME` only in read phases (init,
 * plan), `wo_NAME` only in write phases (apply, destroy, a task's command). Names are kept as
 * written; BERTH_PHASE_ONLY lists them so the phase wrapper does not carry them on.
 */
export function splitPhaseVariables(env: Record<string, string>): {
  common: Record<string, string>;
  forPhase: (phase: string) => Record<string, string>;
} {
  const common: Record<string, string> = {};
  const readOnly: Record<string, string> = {};
  const writeOnly: Record<string, string> = {};
  for (const [name, value] of Object.entries(env)) {
    if (name.startsWith('ro_')) readOnly[name] = value;
    else if (name.startsWith('wo_')) writeOnly[name] = value;
    else common[name] = value;
  }
  const only = (vars: Record<string, string>): Record<string, string> =>
    Object.keys(vars).length === 0
      ? {}
      : { ...vars, BERTH_PHASE_ONLY: Object.keys(vars).join(' ') };
  return { common, forPhase: (phase) => only(READ_PHASES.has(phase) ? readOnly : writeOnly) };
}
