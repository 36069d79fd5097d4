/**
 * One run from start to end: image, fresh container, phases, stopping, clean-up, summary. The
 * executor does the engine work; this file decides the order and what happens on every way out.
 *
 * Stopping (run timeout, logs timeout, cancel) always goes the same way: SIGINT to the job, a
 * grace period, then SIGKILL. Clean-up always happens, in `finally`, under its own deadline.
 */
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { BerthError, EXIT_CODES, coerceError, exitCodeForError } from '../domain/errors.js';
import { shellQuote } from '../domain/hook-script.js';
import type { ExtraMount } from '../domain/worker-settings.js';
import type {
  RunConfiguration,
  PhaseRecord,
  RunEvent,
  RunEventInput,
  RunState,
  RunSummary,
  StopReason,
  StopRecord,
} from '../domain/run-events.js';
import {
  SOURCE_DIR,
  type Executor,
  type JobContainerSpec,
  type JobHandle,
  type OutputStream,
  type Phase,
  type PhaseOutcome,
  type PullPolicy,
  type ResolvedImage,
} from '../executor/executor.js';
import type { ImageAccessSettings } from './image-access.js';
import { formatBytes } from '../domain/units.js';
import { OutputLog } from './output-log.js';
import { prepareRunImage, type ImageSource } from './prepare-image.js';
import { OutputMasking, OutputText } from './output-masking.js';
import { shortSecretWarnings } from '../domain/log-masker.js';
import {
  PLAN_JSON,
  splitPhaseVariables,
  summarisePlan,
  PLAN_SUMMARY_LIMITS,
  type PlanSummary,
} from '../domain/workflow.js';
import type { ToolName } from '../workflow/tool-releases.js';
import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { configurePlugins, hostPlatform, prepareTool, type ToolRequest } from './tool-setup.js';
import { writeSealed, type SealedArchive } from './sealed-archive.js';

export interface Clock {
  now(): number;
  setTimeout(fn: () => void, ms: number): NodeJS.Timeout;
  clearTimeout(timer: NodeJS.Timeout): void;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (timer) => clearTimeout(timer),
};

export interface RunJobOptions {
  sourceDir: string;
  phases: Phase[];
  image: string;
  /** Where the image reference came from, for the summary (`--image`, default setting, …). */
  imageSource: string;
  /** Called when the image is missing and cannot be pulled; may build it (standard runner image). */
  buildMissingImage?: (onLine: (line: string) => void) => Promise<ResolvedImage>;
  /**
   * Policy, credentials and the per-job registry check. Null: no check (a private pool with
   * `--pull never` runs what the engine has, which is the operator's own cache).
   */
  imageAccess: ImageAccessSettings | null;
  pullPolicy: PullPolicy;
  pullTimeoutMs: number;
  env: Record<string, string>;
  secretEnv: Record<string, string>;
  timeoutMs: number;
  logsTimeoutMs: number;
  graceMs: number;
  network: string;
  runtime?: string;
  /** The operator's bind mounts for this run (a worker's extra mounts), besides berth's own. */
  extraMounts?: readonly ExtraMount[];
  nanoCpus?: number;
  memoryBytes?: number;
  pidsLimit: number;
  logLimitBytes: number;
  /**
   * Tracked runs: the most the workspace kept between plan and apply may be (bytes streamed out
   * of the container, sparse files in full); more fails the run and keeps nothing.
   */
  savedWorkspaceLimitBytes?: number;
  /** Directory for this run's stored output; null keeps no stored log. */
  stateDir: string | null;
  /**
   * False: no stored log in `stateDir` (a worker's runs are logged on its server; a copy per run
   * on the worker would only pile up there). The directory still holds a tracked run's workspace.
   */
  keepLog?: boolean;
  launcherId: string;
  /** Hooks run at the end of every run while the container is usable; BERTH_RUN_FINAL_STATE is set. */
  afterRun?: Phase;
  /** Warnings of the front end's own about this run, given as the run starts. */
  startWarnings?: readonly string[];
  /** Resolved settings and where each came from, shown at the start and in the summary. */
  configuration?: RunConfiguration;
  /** Terraform or OpenTofu to mount into the container, with /plugins configured. */
  tool?: ToolRequest;
  /** Proposed, tracked and destroy runs: what follows the first container's phases. */
  workflow?: WorkflowOptions;
  /**
   * The apply of a tracked run planned and confirmed elsewhere (a worker, after its server's
   * confirm): the plan's saved workspace is restored whole into a new container, where the apply
   * phases run; the plan phases do not run again.
   */
  resume?: ResumeOptions;
}

export interface ResumeOptions {
  archive: SealedArchive;
  /** The id of the image the plan ran in: the apply runs in the same one, or not at all. */
  imageId: string | null;
}

export interface WorkflowOptions {
  type: 'proposed' | 'tracked' | 'destroy';
  /** Run state of each phase, by phase name. */
  states: Record<string, string>;
  /** Tracked runs: the apply phases. */
  apply: Phase[];
  autoDeploy: boolean;
  /** Programs a CUSTOM workflow's commands call: each must be in the image. */
  programs: string[];
  /**
   * Asked when a tracked run without auto-deploy reaches UNCONFIRMED, whether to apply; must
   * answer false soon after `signal` aborts (the run stopped).
   */
  confirm: (plan: PlanSummary | null, signal: AbortSignal) => Promise<boolean>;
  /**
   * A front end whose decision comes later and maybe elsewhere (a worker: its server's confirm)
   * instead of `confirm`: the sealed workspace is handed over at UNCONFIRMED (the file is
   * removed afterwards) and the run ends UNCONFIRMED here; `resume` applies it later.
   */
  handOver?: (archive: SealedArchive, signal: AbortSignal) => Promise<void>;
}

export interface RunDeps {
  executor: Executor;
  emit: (event: RunEvent) => void;
  /** A promise while the consumer of events cannot take more (output is paused until then). */
  outputReady?: () => Promise<void> | undefined;
  clock?: Clock;
  runId?: string;
  /**
   * A value the job masked with `::add-mask` (after this, its output has it masked). Output
   * already handed to `emit` may contain it: a consumer that keeps or sends output on (the
   * worker) masks what it still holds and what it already sent. Never put it in an event.
   */
  maskAdded?: (value: string) => void;
  /**
   * Takes the job's masked output as bytes instead of `log` events (which carry it decoded as
   * text): a consumer that writes bytes on (the human view) spares decoding and encoding back.
   */
  output?: (chunk: OutputChunk) => void;
  /**
   * Takes over removing the run's container: the summary then comes as soon as the outcome and
   * the output are complete, before the removal, which `remove` does (rejecting when it failed).
   * A worker reports the run's end first and removes after, so the engine's removal is not part
   * of every run's time; a worker that dies in between leaves a labelled container that its next
   * start sweeps. Without it, the container is removed before the summary.
   */
  removeLater?: (remove: () => Promise<void>) => void;
}

/** Masked job output as it came, for RunDeps.output. */
export interface OutputChunk {
  phase: string;
  stream: OutputStream;
  /**
   * Masked bytes as a byte string (one character per byte: `Buffer.from(bytes, 'latin1')` gives
   * them back), cut anywhere: a character may be split between two chunks.
   */
  bytes: string;
  ts: string;
}

export interface RunningJob {
  runId: string;
  /** Stops the job: SIGINT, grace, SIGKILL. A second call skips what is left of the grace. */
  cancel(): void;
  result: Promise<RunSummary>;
}

const CLEANUP_DEADLINE_MS = 60_000;
/** The saved-workspace limit when none is set (docs/usage.md). */
export const DEFAULT_SAVED_WORKSPACE_LIMIT = 1024 ** 3;

export function newRunId(now: Date = new Date(), random: Buffer = randomBytes(4)): string {
  const stamp = now
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d+Z$/, 'Z')
    .toLowerCase();
  return `${stamp}-${random.toString('hex')}`;
}

export function startRun(options: RunJobOptions, deps: RunDeps): RunningJob {
  const run = new Run(options, deps);
  return { runId: run.runId, cancel: () => run.requestStop('canceled'), result: run.execute() };
}

class Run {
  readonly runId: string;
  private readonly clock: Clock;
  private readonly masking: OutputMasking;
  private readonly started: number;
  private job: JobHandle | undefined;
  private stop: StopRecord | null = null;
  private graceTimer: NodeJS.Timeout | undefined;
  private runTimer: NodeJS.Timeout | undefined;
  private logsTimer: NodeJS.Timeout | undefined;
  /** When the running phase last gave output (see armLogsTimer). */
  private lastOutputAt = 0;
  private readonly abort = new AbortController();
  private readonly warnings: string[] = [];
  private log: OutputLog | null = null;
  private afterRunRecord: PhaseRecord | null = null;
  /** When the first phase's process started: the end of PREPARING. */
  private firstPhaseAt: number | null = null;
  /** A sole-phase container, announced as started once its phase has started it. */
  private containerToAnnounce: JobHandle | null = null;
  private readonly variables: ReturnType<typeof splitPhaseVariables>;
  private spec: JobContainerSpec | undefined;
  private tool: { tool: ToolName; version: string; platform: string } | null = null;
  private phaseEnv: Record<string, string> = {};
  private cacheEnv: Record<string, string> = {};
  /** Every intended phase ran and succeeded. */
  private completed = false;
  private discarded = false;
  /** The plan's workspace went to the front end at UNCONFIRMED: the run waits elsewhere. */
  private handedOver = false;
  private plan: PlanSummary | null = null;

  constructor(
    private readonly options: RunJobOptions,
    private readonly deps: RunDeps,
  ) {
    this.clock = deps.clock ?? systemClock;
    this.runId = deps.runId ?? newRunId(new Date(this.clock.now()));
    this.masking = new OutputMasking(
      Object.values(options.secretEnv),
      (message) => this.warn(message),
      deps.maskAdded,
    );
    this.variables = splitPhaseVariables({ ...options.env, ...options.secretEnv });
    this.started = this.clock.now();
  }

  private emit(event: RunEventInput): void {
    this.deps.emit({ ...event, ts: new Date(this.clock.now()).toISOString() });
  }

  private warn(message: string, mask = true): void {
    const shown = mask ? this.masking.mask(message) : message;
    this.warnings.push(shown);
    this.emit({ type: 'warning', message: shown });
  }

  /** Starts (or hurries) stopping. Safe to call at any time, any number of times. */
  requestStop(reason: StopReason): void {
    if (this.stop) {
      // A second request (Ctrl-C twice) does not wait for the rest of the grace period.
      if (reason === 'canceled' && this.stop.endedBy === 'SIGINT') this.forceKill();
      return;
    }
    this.stop = { reason, endedBy: 'SIGINT', graceMs: this.options.graceMs };
    this.abort.abort(new BerthError('BERTH_USAGE', `run stopped: ${reason}`));
    this.emit({ type: 'run.stopping', reason, signal: 'SIGINT', graceMs: this.options.graceMs });
    if (!this.job) return;
    const job = this.job;
    void job.interrupt();
    this.graceTimer = this.clock.setTimeout(() => this.forceKill(), this.options.graceMs);
  }

  private forceKill(): void {
    if (!this.stop || this.stop.endedBy === 'SIGKILL') return;
    this.stop.endedBy = 'SIGKILL';
    this.emit({
      type: 'run.stopping',
      reason: this.stop.reason,
      signal: 'SIGKILL',
      graceMs: this.options.graceMs,
    });
    void this.job?.kill().catch(() => undefined);
  }

  async execute(): Promise<RunSummary> {
    const phases: PhaseRecord[] = [];
    let image: ResolvedImage | null = null;
    let imageSource: RunSummary['image']['source'] = null;
    let error: BerthError | null = null;
    this.runTimer = this.clock.setTimeout(
      () => this.requestStop('run-timeout'),
      this.options.timeoutMs,
    );
    try {
      if (this.options.stateDir && this.options.keepLog !== false) {
        this.log = new OutputLog(
          path.join(this.options.stateDir, 'runs', this.runId, 'output.log'),
          this.options.logLimitBytes,
        );
      }
      this.emit({
        type: 'run.started',
        runId: this.runId,
        sourceDir: this.options.sourceDir,
        image: this.options.image,
        imageSource: this.options.imageSource,
      });
      if (this.options.configuration)
        this.emit({ type: 'run.configured', ...this.options.configuration });
      // Not masked: they hold no value, and masking the value's letters in them would show it
      // (`*****ly 2 characters l*****g` for `on`).
      for (const warning of shortSecretWarnings(this.options.secretEnv)) this.warn(warning, false);
      for (const warning of this.options.startWarnings ?? []) this.warn(warning);
      ({ image, source: imageSource } = await this.prepareImage());
      this.throwIfStopped();
      const tool = this.options.tool
        ? await prepareTool(this.options.tool, {
            platform: image.platform ?? hostPlatform(),
            sharesHostFiles: this.deps.executor.sharesHostFiles,
            searchPath: image.searchPath,
            image: image.reference,
          })
        : null;
      if (tool) {
        const { provided } = tool;
        if (provided.discarded) this.warn(provided.discarded);
        this.emit({
          type: 'tool.ready',
          tool: provided.tool,
          version: provided.version,
          platform: provided.platform,
          downloaded: provided.downloaded,
          path: tool.path,
          delivery: tool.copies.length > 0 ? 'copied' : 'mounted',
        });
      }
      this.throwIfStopped();
      this.spec = {
        runId: this.runId,
        launcherId: this.options.launcherId,
        expiresAt: new Date(
          this.clock.now() + this.options.timeoutMs + this.options.graceMs + CLEANUP_DEADLINE_MS,
        ),
        image: image.id,
        imageReference: image.reference,
        sourceDir: this.options.sourceDir,
        // Secrets go to each phase's exec only: never into the container's configuration, which
        // the engine writes to its disk and shows to anyone who can `docker inspect`.
        env: this.containerEnv(),
        network: this.options.network,
        runtime: this.options.runtime,
        nanoCpus: this.options.nanoCpus,
        memoryBytes: this.options.memoryBytes,
        pidsLimit: this.options.pidsLimit,
        phases: this.options.phases,
        solePhase: this.solePhase(tool !== null),
        mounts: [...(tool?.mounts ?? []), ...(this.options.extraMounts ?? [])],
        copies: tool?.copies ?? [],
      };
      this.tool = tool?.provided ?? null;
      this.cacheEnv = tool?.cache?.env ?? {};
      if (tool?.cache) this.warn(tool.cache.note);
      if (this.options.resume) {
        if (this.options.workflow?.type !== 'tracked')
          throw new BerthError(
            'BERTH_USAGE',
            'only a tracked run has an apply to resume; its runtime configuration no longer makes it one',
            {
              hint: "Nothing was applied. The stack's runtime configuration changed since the plan; trigger a new tracked run to plan and apply with the current one.",
            },
          );
        requireSameImage(this.options.resume.imageId, image);
        this.completed = await this.applySaved(this.options.resume.archive, phases, image);
      } else {
        await this.startContainer(this.spec);
        await this.requirePrograms(this.options.workflow?.programs ?? [], image.reference);
        // Stopped while the container was being made: nothing of the job ran (see startContainer).
        if (!this.stop && (await this.runPhases(this.options.phases, phases))) {
          this.completed = !this.options.workflow || (await this.continueWorkflow(phases));
        }
      }
    } catch (err) {
      if (!this.stop) error = coerceError(err);
    } finally {
      await this.runAfterRun(this.outcome(phases, error).state);
      this.clearTimers();
      await this.cleanUp();
    }
    // Preparing lasts until the first phase's process runs (a sole phase starts the container).
    const preparingMs = (this.firstPhaseAt ?? this.clock.now()) - this.started;
    return this.finish({ phases, image, imageSource, error, preparingMs });
  }

  /** Starts a fresh container for `spec`, with the tool's /plugins configuration. */
  private async startContainer(spec: JobContainerSpec): Promise<JobHandle> {
    const job = await this.deps.executor.startJob(spec, (bytes) =>
      this.emit({ type: 'workspace.copying', bytes }),
    );
    this.job = job;
    // Stopped while the container was being made (requestStop found no job to signal): the grace
    // starts now, so after_run hooks that hang are killed as a job would be; a kill asked for
    // meanwhile (a second Ctrl-C, the worker's lease watch) is carried out at once.
    if (this.stop) {
      if (this.stop.endedBy === 'SIGKILL') void job.kill().catch(() => undefined);
      else this.graceTimer ??= this.clock.setTimeout(() => this.forceKill(), this.options.graceMs);
    }
    // A sole phase's container starts with that phase (see runPhase); others are running now.
    if (spec.solePhase) this.containerToAnnounce = job;
    else this.announceContainer(job);
    for (const warning of job.warnings) this.warn(warning);
    this.phaseEnv = {};
    if (this.tool) {
      // A CLI configuration the job names itself is merged with berth's, not replaced.
      const own = this.variables.common.TF_CLI_CONFIG_FILE;
      const userConfig = own
        ? await job.readFile(own.startsWith('/') ? own : `${SOURCE_DIR}/${own}`)
        : null;
      if (own && userConfig === null)
        this.warn(
          `TF_CLI_CONFIG_FILE names ${own}, which is not in the container; berth's configuration is used alone`,
        );
      const plugins = await configurePlugins(
        job,
        this.tool.tool,
        this.tool.version,
        userConfig?.toString('utf8') ?? null,
        this.tool.platform,
      );
      this.emit({
        type: 'plugins.found',
        providers: plugins.providers.map((p) => ({
          source: p.source,
          version: p.version,
          file: p.file,
        })),
      });
      for (const warning of plugins.warnings) this.warn(`${warning.path}: ${warning.rule}`);
      if (plugins.note) this.warn(plugins.note);
      this.phaseEnv = { ...plugins.env, ...this.cacheEnv };
    }
    return job;
  }

  private announceContainer(job: JobHandle): void {
    this.emit({
      type: 'container.started',
      containerId: job.containerId,
      containerName: job.containerName,
    });
  }

  /** Checks, quietly, that the programs a custom workflow calls exist in the container. */
  private async requirePrograms(programs: readonly string[], image: string): Promise<void> {
    for (const program of programs) {
      const { exitCode } = await (this.job as JobHandle).runPhase(
        { name: 'preflight', script: `command -v ${shellQuote(program)} >/dev/null 2>&1` },
        () => undefined,
      );
      if (exitCode !== 0) {
        throw new BerthError(
          'BERTH_CUSTOM_TOOL_MISSING',
          `the workflow file calls "${program}", which image ${image} does not have (not on PATH and no such file)`,
        );
      }
    }
  }

  /** Runs phases in the current container until one fails; true when all succeeded. */
  private async runPhases(list: readonly Phase[], records: PhaseRecord[]): Promise<boolean> {
    for (const phase of list) {
      // Stopped since the last phase (or before the first): the next one never starts.
      if (this.stop) return false;
      const state = this.options.workflow?.states[phase.name];
      if (state) this.emit({ type: 'run.state', state });
      const record = await this.runPhase(this.job as JobHandle, this.withPhaseEnv(phase));
      records.push(record);
      if (record.exitCode !== 0 || this.stop) return false;
    }
    return true;
  }

  /** The phase with its own variables over the job's. */
  private withPhaseEnv(phase: Phase): Phase {
    const phaseVars = this.variables.forPhase(phase.name);
    // Secrets and phase-only variables are never written to the saved phase environment (it
    // travels with the workspace); secrets come with every phase's exec instead.
    const notSaved = [phaseVars.BERTH_PHASE_ONLY, ...Object.keys(this.options.secretEnv)]
      .filter(Boolean)
      .join(' ');
    return {
      ...phase,
      env: {
        ...this.secretEnv(),
        ...phaseVars,
        ...(notSaved ? { BERTH_PHASE_ONLY: notSaved } : {}),
        ...this.phaseEnv,
        ...phase.env,
      },
    };
  }

  /** The job's variables without the secrets (see containerEnv). */
  private containerEnv(): Record<string, string> {
    const secret = new Set(Object.keys(this.options.secretEnv));
    return Object.fromEntries(
      Object.entries(this.variables.common).filter(([name]) => !secret.has(name)),
    );
  }

  /** The secrets every phase gets (`ro_`/`wo_` ones come with their phases). */
  private secretEnv(): Record<string, string> {
    return Object.fromEntries(
      Object.keys(this.options.secretEnv)
        .filter((name) => name in this.variables.common)
        .map((name) => [name, this.variables.common[name] as string]),
    );
  }

  /**
   * A job of one phase after which nothing runs in its container (no tool to set up, no
   * workflow, no after_run, no secrets) runs that phase as the container's own process: no idle
   * keeper, no exec.
   */
  private solePhase(hasTool: boolean): Phase | undefined {
    const [only, ...rest] = this.options.phases;
    if (!only || rest.length > 0 || hasTool || this.options.workflow || this.options.afterRun)
      return undefined;
    // A container's own process gets its environment from the container's configuration,
    // where secrets never go: a job with secrets runs its phase as an exec.
    if (Object.keys(this.options.secretEnv).length > 0) return undefined;
    return this.withPhaseEnv(only);
  }

  /**
   * After the plan: the summary; for tracked runs, apply (auto-deploy: in the same container;
   * otherwise the workspace is saved, the container ends at UNCONFIRMED, and after confirmation
   * the exact saved plan is applied in a new container). True when the run is complete.
   */
  private async continueWorkflow(records: PhaseRecord[]): Promise<boolean> {
    const workflow = this.options.workflow as WorkflowOptions;
    const job = this.job as JobHandle;
    if (workflow.type !== 'destroy') {
      const limit = PLAN_SUMMARY_LIMITS.jsonBytes;
      const json = await job.readFile(PLAN_JSON, limit);
      if (json && json.length > limit) {
        this.warn(`no plan summary: ${PLAN_JSON} is larger than ${formatBytes(limit)}`);
      } else {
        this.plan = json ? summarisePlan(json.toString('utf8'), (t) => this.masking.mask(t)) : null;
        if (this.plan) this.emit({ type: 'plan.summary', ...this.plan });
        else this.warn(`no plan summary: ${PLAN_JSON} is missing or not a plan in JSON`);
      }
    }
    if (workflow.type !== 'tracked' || workflow.apply.length === 0) return true;
    if (workflow.autoDeploy) return this.runPhases(workflow.apply, records);
    const limit = this.options.savedWorkspaceLimitBytes ?? DEFAULT_SAVED_WORKSPACE_LIMIT;
    const archive = await writeSealed(
      path.join(this.options.stateDir ?? tmpdir(), 'runs', this.runId, 'workspace.tar.sealed'),
      (sink) => job.exportWorkspace(sink),
      {
        bytes: limit,
        tooLarge: (bytes) =>
          new BerthError(
            'BERTH_SAVED_WORKSPACE_TOO_LARGE',
            `the workspace to keep between plan and apply is more than ${formatBytes(limit)} (the saved-workspace limit): ${formatBytes(bytes)} had streamed out of the container when berth stopped`,
          ),
      },
    );
    this.emit({ type: 'run.state', state: 'UNCONFIRMED' });
    await job.destroy();
    this.job = undefined;
    this.clearTimers();
    if (workflow.handOver) {
      try {
        await workflow.handOver(archive, this.abort.signal);
      } finally {
        await rm(archive.file, { force: true });
      }
      this.handedOver = !this.stop;
      return false;
    }
    const confirmed = await workflow.confirm(this.plan, this.abort.signal);
    if (this.stop) {
      // Canceled (Ctrl-C, SIGTERM) while waiting for the answer: nothing is applied or kept.
      await rm(archive.file, { force: true });
      return false;
    }
    if (!confirmed) {
      await rm(archive.file, { force: true });
      this.discarded = true;
      this.emit({ type: 'run.state', state: 'DISCARDED' });
      return false;
    }
    this.emit({ type: 'run.state', state: 'CONFIRMED' });
    this.runTimer = this.clock.setTimeout(
      () => this.requestStop('run-timeout'),
      this.options.timeoutMs,
    );
    return this.applySaved(archive, records, null);
  }

  /**
   * The apply half of a tracked run, here or on another machine: the saved workspace restored
   * whole (checked against its seal first) into a new container, then the apply phases. The
   * archive's file is removed once it is in the container (or could not get there).
   */
  private async applySaved(
    archive: SealedArchive,
    records: PhaseRecord[],
    /** Set when the plan ran elsewhere: the custom workflow's programs are checked here. */
    resumedIn: ResolvedImage | null,
  ): Promise<boolean> {
    const workflow = this.options.workflow as WorkflowOptions;
    try {
      await this.startContainer({
        ...(this.spec as JobContainerSpec),
        workspaceArchive: () => archive.open(),
        phases: workflow.apply,
      });
    } finally {
      await rm(archive.file, { force: true });
    }
    if (resumedIn) await this.requirePrograms(workflow.programs, resumedIn.reference);
    if (this.stop) return false;
    return this.runPhases(workflow.apply, records);
  }

  /** after_run: at the end of every run whose container is still usable, with the final state. */
  private async runAfterRun(state: RunState): Promise<void> {
    const hooks = this.options.afterRun;
    if (!hooks || !this.job || this.stop?.endedBy === 'SIGKILL') return;
    try {
      const record = await this.runPhase(
        this.job,
        {
          ...(Object.keys(this.options.secretEnv).length
            ? {
                env: {
                  ...this.secretEnv(),
                  BERTH_PHASE_ONLY: Object.keys(this.options.secretEnv).join(' '),
                },
              }
            : {}),
          ...hooks,
          script: `BERTH_RUN_FINAL_STATE=${state}; export BERTH_RUN_FINAL_STATE\n${hooks.script}`,
        },
        false,
      );
      this.afterRunRecord = record;
      if (record.exitCode !== 0)
        this.warn(
          `after_run hooks ended with exit code ${record.exitCode}; the run stays ${state}`,
        );
    } catch (err) {
      this.warn(`after_run hooks could not run: ${coerceError(err).message}`);
    }
  }

  private prepareImage(): Promise<{ image: ResolvedImage; source: ImageSource }> {
    return prepareRunImage({
      image: this.options.image,
      pullPolicy: this.options.pullPolicy,
      pullTimeoutMs: this.options.pullTimeoutMs,
      imageAccess: this.options.imageAccess,
      buildMissingImage: this.options.buildMissingImage,
      executor: this.deps.executor,
      emit: (event) => this.emit(event),
      warn: (message) => this.warn(message),
      signal: this.abort.signal,
      stopped: () => this.stop !== null,
    });
  }

  private throwIfStopped(): void {
    if (this.stop) throw new BerthError('BERTH_USAGE', `run stopped: ${this.stop.reason}`);
  }

  /** `isJob` false: the after_run hooks (they do not make the job a started one). */
  private async runPhase(job: JobHandle, phase: Phase, isJob = true): Promise<PhaseRecord> {
    let started = this.clock.now();
    let announced = false;
    const announce = (): void => {
      if (announced) return;
      announced = true;
      if (this.containerToAnnounce) this.announceContainer(this.containerToAnnounce);
      this.containerToAnnounce = null;
      this.emit({ type: 'phase.started', phase: phase.name });
    };
    const toText = new OutputText((stream, text) =>
      this.emit({ type: 'log', phase: phase.name, stream, text }),
    );
    const output = this.masking.forPhase((stream, bytes) => {
      this.log?.appendBytes(bytes);
      if (this.deps.output) {
        const ts = new Date(this.clock.now()).toISOString();
        this.deps.output({ phase: phase.name, stream, bytes, ts });
      } else {
        toText.write(stream, bytes);
      }
    });
    this.armLogsTimer();
    let outcome: PhaseOutcome;
    try {
      outcome = await job.runPhase(
        phase,
        (stream, chunk) => {
          this.lastOutputAt = this.clock.now();
          output.write(stream, chunk);
          return this.deps.outputReady?.();
        },
        () => {
          // The phase's time is its process's: a sole phase's container start is preparing.
          started = this.clock.now();
          // after_run hooks are not the job: a run stopped before its job ran stays CANCELED.
          if (isJob) this.firstPhaseAt ??= started;
          announce();
        },
      );
    } finally {
      if (this.logsTimer) this.clock.clearTimeout(this.logsTimer);
      output.end();
      toText.end();
    }
    announce();
    const record = {
      name: phase.name,
      exitCode: outcome.exitCode,
      durationMs: this.clock.now() - started,
    };
    this.emit({
      type: 'phase.finished',
      phase: phase.name,
      exitCode: record.exitCode,
      durationMs: record.durationMs,
    });
    return record;
  }

  /**
   * Starts the logs timeout for a phase. Output only notes its time (`lastOutputAt`): re-arming
   * a timer on every chunk cost more than the rest of the run's bookkeeping on large outputs.
   * When the timer fires it checks that time and waits again for the rest of the interval.
   */
  private armLogsTimer(): void {
    if (this.logsTimer) this.clock.clearTimeout(this.logsTimer);
    this.lastOutputAt = this.clock.now();
    const check = (): void => {
      const quiet = this.clock.now() - this.lastOutputAt;
      if (quiet >= this.options.logsTimeoutMs) this.requestStop('logs-timeout');
      else this.logsTimer = this.clock.setTimeout(check, this.options.logsTimeoutMs - quiet);
    };
    this.logsTimer = this.clock.setTimeout(check, this.options.logsTimeoutMs);
  }

  private clearTimers(): void {
    for (const timer of [this.runTimer, this.logsTimer, this.graceTimer]) {
      if (timer) this.clock.clearTimeout(timer);
    }
  }

  private async cleanUp(): Promise<void> {
    const job = this.job;
    if (job && this.deps.removeLater) {
      this.deps.removeLater(() => this.removeContainer(job));
    } else if (job) {
      try {
        await this.removeContainer(job);
      } catch (err) {
        this.warn(
          `could not remove container ${job.containerName}: ${coerceError(err).message}; the next berth start removes it`,
        );
      }
    }
    // Values learnt from ::add-mask mid-run are masked once more over the whole stored log.
    await this.log?.close(
      this.masking.learntDuringRun ? (text) => this.masking.mask(text) : undefined,
    );
    if (this.log?.failure) {
      this.warn(
        `the stored log ${this.log.path} is incomplete (${this.log.failure}); the output shown above is complete`,
      );
    }
  }

  /** Removes the job's container; no answer within the clean-up deadline ends the wait quietly. */
  private async removeContainer(job: JobHandle): Promise<void> {
    let deadline: NodeJS.Timeout | undefined;
    const timeout = new Promise<void>((resolve) => {
      deadline = this.clock.setTimeout(resolve, CLEANUP_DEADLINE_MS);
    });
    try {
      await Promise.race([job.destroy(), timeout]);
    } finally {
      if (deadline) this.clock.clearTimeout(deadline);
    }
  }

  /** The run's state and berth's exit code from how it went. */
  private outcome(
    phases: PhaseRecord[],
    error: BerthError | null,
  ): { state: RunState; exitCode: number } {
    if (this.stop) {
      if (this.stop.reason !== 'canceled')
        return { state: 'FAILED', exitCode: EXIT_CODES.timedOut };
      return {
        state: this.firstPhaseAt === null ? 'CANCELED' : 'STOPPED',
        exitCode: EXIT_CODES.canceled,
      };
    }
    if (error) return { state: 'FAILED', exitCode: exitCodeForError(error) };
    if (this.discarded) return { state: 'DISCARDED', exitCode: EXIT_CODES.success };
    if (this.handedOver) return { state: 'UNCONFIRMED', exitCode: EXIT_CODES.success };
    if (this.completed && phases.at(-1)?.exitCode === 0)
      return { state: 'FINISHED', exitCode: EXIT_CODES.success };
    return { state: 'FAILED', exitCode: EXIT_CODES.jobFailed };
  }

  private finish(parts: {
    phases: PhaseRecord[];
    image: ResolvedImage | null;
    imageSource: RunSummary['image']['source'];
    error: BerthError | null;
    preparingMs: number;
  }): RunSummary {
    const jobExitCode = parts.phases.at(-1)?.exitCode ?? null;
    const { state, exitCode } = this.outcome(parts.phases, parts.error);
    const summary: RunSummary = {
      runId: this.runId,
      state,
      exitCode,
      jobExitCode,
      image: {
        reference: parts.image?.reference ?? this.options.image,
        id: parts.image?.id ?? null,
        digest: parts.image?.digest ?? null,
        source: parts.imageSource,
      },
      containerId: this.job?.containerId ?? null,
      containerName: this.job?.containerName ?? null,
      phases: parts.phases,
      afterRun: this.afterRunRecord,
      plan: this.plan,
      configuration: this.options.configuration ?? null,
      durations: { preparingMs: parts.preparingMs, totalMs: this.clock.now() - this.started },
      stop: this.stop,
      error: parts.error
        ? {
            code: parts.error.code,
            message: this.masking.mask(parts.error.message),
            hint: this.masking.mask(parts.error.hint),
          }
        : null,
      log: {
        path: this.log?.path ?? null,
        bytes: this.log?.bytes ?? 0,
        bytesCut: this.log?.bytesCut ?? 0,
      },
      warnings: this.warnings,
    };
    this.emit({ type: 'run.finished', ...summary });
    return summary;
  }
}

/** The apply runs in the image the plan ran in (by id: the same content), or not at all. */
function requireSameImage(planned: string | null, image: ResolvedImage): void {
  if (planned === null || planned === image.id) return;
  throw new BerthError(
    'BERTH_APPLY_IMAGE_CHANGED',
    `the plan ran in image ${planned}, but ${image.reference} is now ${image.id}; the saved plan is not applied in another image`,
  );
}
