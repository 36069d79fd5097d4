/**
 * Everything that decides a run, shared by `berth run` and `berth worker`: the runtime
 * configuration and the stack's settings, the tool, the image chain, the pull policy and the
 * image policy, the phases, the limits. The front ends only gather their inputs (flags, or a
 * server's assignment) and render the events.
 */
import path from 'node:path';
import {
  DEFAULT_PUBLIC_ALLOW_LIST,
  defaultPullPolicy,
  type AllowRule,
  type PoolKind,
} from '../domain/pool-policy.js';
import type { PullPolicy } from '../executor/executor.js';
import type { ExtraMount } from '../domain/worker-settings.js';
import type { DockerConfigDir } from '../registry/docker-config.js';
import { ecrTokenFromSdk } from '../registry/ecr.js';
import { releaseSourceFromEnv } from '../workflow/tool-releases.js';
import {
  parseReferenceOrThrow,
  publicEcrAccountsFrom,
  type ImageAccessSettings,
} from './image-access.js';
import { resolveRunConfig, type RunConfigInput } from './run-config.js';
import type { RunJobOptions, WorkflowOptions } from './run-job.js';
import { DEFAULT_TOOL_DIR } from './tool-setup.js';

/** The checked limits and policies of one run (from flags, or from a pool and a worker's settings). */
export interface RunSettings {
  image: string | undefined;
  env: Record<string, string>;
  secretEnv: Record<string, string>;
  timeoutMs: number;
  logsTimeoutMs: number;
  graceMs: number;
  pullTimeoutMs: number;
  nanoCpus?: number;
  memoryBytes?: number;
  pidsLimit: number;
  network: string;
  runtime?: string;
  /** Bind mounts the operator gives the run (a worker's extra mounts). */
  extraMounts?: ExtraMount[];
  /** `auto`: decided by the pool and the reference (see defaultPullPolicy). */
  pullPolicy: PullPolicy | 'auto';
  logLimitBytes: number;
  savedWorkspaceLimitBytes: number;
  pool: PoolKind;
  allowList: AllowRule[] | null;
}

/** The stack's side (as for resolveRunConfig; the image layers come from `settings` and `env`). */
export interface RunPlanInput extends Omit<
  RunConfigInput,
  'imageOverride' | 'poolDefaultImage' | 'berthDefaultImage'
> {
  autoDeploy: boolean;
  settings: RunSettings;
  dockerConfig: DockerConfigDir | null;
  /** berth's own environment: release sources, tool directory, caches, ECR accounts. */
  env: NodeJS.ProcessEnv;
  stateDir: string;
  defaultRunnerImage: string;
  launcherId: string;
  /** Asked when a tracked run reaches UNCONFIRMED without auto-deploy. */
  confirm: WorkflowOptions['confirm'];
  /** Instead of asking: the front end keeps the plan's workspace elsewhere (a worker). */
  handOver?: WorkflowOptions['handOver'];
}

/**
 * The pull policy a run of `image` uses and the image access it checks (null: none, a private
 * pool told never to pull runs what its own engine has). Shared with `berth image check`.
 */
export function imagePolicyFor(
  image: string,
  settings: {
    pool: PoolKind;
    pullPolicy: PullPolicy | 'auto';
    allowList: AllowRule[] | null;
    dockerConfig: DockerConfigDir | null;
    env: NodeJS.ProcessEnv;
  },
): { pullPolicy: PullPolicy; imageAccess: ImageAccessSettings | null } {
  const { pool, env } = settings;
  const pullPolicy =
    settings.pullPolicy === 'auto'
      ? defaultPullPolicy(pool, parseReferenceOrThrow(image))
      : settings.pullPolicy;
  const imageAccess: ImageAccessSettings | null =
    pool === 'private' && pullPolicy === 'never'
      ? null
      : {
          pool,
          allowList: settings.allowList ?? DEFAULT_PUBLIC_ALLOW_LIST,
          dockerConfig: settings.dockerConfig,
          env,
          ecrToken: ecrTokenFromSdk,
          publicEcrAccounts: publicEcrAccountsFrom(env),
        };
  return { pullPolicy, imageAccess };
}

/** The run's options, ready for startRun (the caller adds how to build a missing default image). */
export async function planRun(
  input: RunPlanInput,
): Promise<Omit<RunJobOptions, 'buildMissingImage'> & { usesDefaultImage: boolean }> {
  const { settings, env } = input;
  const run = await resolveRunConfig({
    type: input.type,
    sourceDir: input.sourceDir,
    stack: input.stack,
    stackSettingsFile: input.stackSettingsFile,
    runnerImage: input.runnerImage,
    projectRoot: input.projectRoot,
    tool: input.tool,
    toolVersion: input.toolVersion,
    command: input.command,
    runId: input.runId,
    ...(input.commit ? { commit: input.commit } : {}),
    ...(input.trigger === undefined ? {} : { trigger: input.trigger }),
    ...(input.stackLabels === undefined ? {} : { stackLabels: input.stackLabels }),
    imageOverride: settings.image,
    poolDefaultImage: env.BERTH_POOL_DEFAULT_RUNNER_IMAGE?.trim() || null,
    berthDefaultImage: input.defaultRunnerImage,
  });
  const image = run.image;
  const { pullPolicy, imageAccess } = imagePolicyFor(image, {
    pool: settings.pool,
    pullPolicy: settings.pullPolicy,
    allowList: settings.allowList,
    dockerConfig: input.dockerConfig,
    env,
  });
  return {
    usesDefaultImage: run.imageSource === "berth's default",
    sourceDir: input.sourceDir,
    phases: run.phases,
    afterRun: run.afterRun,
    configuration: run.configuration,
    tool: run.tool
      ? {
          tool: run.tool.tool,
          constraint: run.tool.constraint,
          source: await releaseSourceFromEnv(run.tool.tool, env),
          cacheDir: path.join(input.stateDir, 'tools'),
          binDir: env.BERTH_TOOL_DIR?.trim() || DEFAULT_TOOL_DIR,
          pluginCacheDir: env.BERTH_PLUGIN_CACHE_DIR?.trim() || undefined,
          // A public pool's tenants never share a writable cache: one per stack.
          cacheScope: settings.pool === 'public' ? run.configuration.stack : undefined,
        }
      : undefined,
    workflow:
      input.type === 'task' || !run.workflow
        ? undefined
        : {
            type: input.type,
            states: run.workflow.states,
            apply: run.workflow.apply,
            autoDeploy: input.autoDeploy,
            programs: run.workflow.programs,
            confirm: input.confirm,
            ...(input.handOver ? { handOver: input.handOver } : {}),
          },
    image,
    imageSource: run.imageSource,
    pullPolicy,
    imageAccess,
    pullTimeoutMs: settings.pullTimeoutMs,
    // The run's own variables are the most specific: they win over the runtime configuration's.
    env: { ...run.environment, ...settings.env },
    secretEnv: settings.secretEnv,
    timeoutMs: settings.timeoutMs,
    logsTimeoutMs: settings.logsTimeoutMs,
    graceMs: settings.graceMs,
    network: settings.network,
    runtime: settings.runtime,
    extraMounts: settings.extraMounts,
    nanoCpus: settings.nanoCpus,
    memoryBytes: settings.memoryBytes,
    pidsLimit: settings.pidsLimit,
    logLimitBytes: settings.logLimitBytes,
    savedWorkspaceLimitBytes: settings.savedWorkspaceLimitBytes,
    stateDir: input.stateDir,
    launcherId: input.launcherId,
  };
}
