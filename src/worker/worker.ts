/**
 * `berth worker`: registers in its pool, waits for runs (a long poll: outbound connections only),
 * runs up to `concurrency` of them at once through the same launcher as `berth run`, ships each
 * run's masked log in ordered batches, reports its states, and heartbeats. SIGTERM drains (no new
 * runs, the current ones finish); a second SIGTERM stops them the documented way.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import path from 'node:path';
import { execFile } from 'node:child_process';
import { BerthError, coerceError } from '../domain/errors.js';
import type { RunEvent } from '../domain/run-events.js';
import type { RunStateName } from '../domain/run-state.js';
import type { RunType } from '../domain/workflow.js';
import type { Executor, ResolvedImage } from '../executor/executor.js';
import { readJobFile } from '../launcher/job-files.js';
import { planRun, type RunSettings } from '../launcher/plan-run.js';
import { startRun, type RunningJob } from '../launcher/run-job.js';
import type { DockerConfigDir } from '../registry/docker-config.js';
import { LogShipper } from './log-shipper.js';
import type { AssignmentBody, Report, WorkerProtocol } from './protocol.js';

type PlanCounts = NonNullable<Report['plan']>;

export interface WorkerOptions {
  protocol: WorkerProtocol;
  executor: Executor;
  concurrency: number;
  /** Run settings from the worker's own configuration (timeouts, network, runtime, limits). */
  settings: Omit<RunSettings, 'pool' | 'allowList' | 'env' | 'secretEnv' | 'image'>;
  dockerConfig: DockerConfigDir | null;
  env: NodeJS.ProcessEnv;
  stateDir: string;
  defaultRunnerImage: string;
  launcherId: string;
  berthVersion: string;
  engineVersion: string;
  /** This worker's id from an earlier start, so it registers as the same worker. */
  workerId?: string;
  /** Builds the standard runner image when a run needs it and it is missing (as berth run does). */
  buildRunnerImage?: (image: string, onLine: (line: string) => void) => Promise<ResolvedImage>;
  say: (line: string) => void;
}

export class Worker {
  private workerId = '';
  private heartbeatMs = 20_000;
  private readonly running = new Map<string, RunningJob>();
  private draining = false;
  /** Drained on the server (berth worker drain): no new runs until undrained; the process stays. */
  private paused = false;
  private readonly stopLeasing = new AbortController();
  private heartbeatTimer: NodeJS.Timeout | undefined;

  constructor(private readonly options: WorkerOptions) {}

  get id(): string {
    return this.workerId;
  }

  async start(): Promise<void> {
    const registered = await this.options.protocol.register({
      ...(this.options.workerId ? { id: this.options.workerId } : {}),
      host: hostname(),
      berthVersion: this.options.berthVersion,
      engineVersion: this.options.engineVersion,
      concurrency: this.options.concurrency,
    });
    this.workerId = registered.workerId;
    this.heartbeatMs = registered.heartbeatMs;
    this.options.say(
      `worker ${this.workerId} registered in pool ${registered.pool}; up to ${this.options.concurrency} run(s) at once`,
    );
    this.heartbeatTimer = setInterval(() => void this.beat(), this.heartbeatMs);
  }

  /** Leases and runs until drained; resolves once every run it started has ended. */
  async serve(): Promise<void> {
    const slots = new Set<Promise<void>>();
    while (!this.draining) {
      if (slots.size >= this.options.concurrency) {
        await Promise.race(slots);
        continue;
      }
      if (this.paused) {
        await new Promise((resolve) => setTimeout(resolve, Math.min(this.heartbeatMs, 1000)));
        continue;
      }
      let assignment: AssignmentBody | null;
      try {
        assignment = await this.options.protocol.lease(
          this.workerId,
          25_000,
          this.stopLeasing.signal,
        );
      } catch (err) {
        if (this.draining) break;
        this.options.say(
          `cannot lease from the server: ${coerceError(err).message}; trying again in 2 s`,
        );
        await new Promise((resolve) => setTimeout(resolve, 2000));
        continue;
      }
      if (!assignment) continue;
      const slot = this.execute(assignment).finally(() => slots.delete(slot));
      slots.add(slot);
    }
    await Promise.all(slots);
    clearInterval(this.heartbeatTimer);
  }

  /** First call: take no new runs, let the current ones finish. Second: stop them too. */
  drain(): void {
    if (this.draining) {
      for (const run of this.running.values()) run.cancel();
      return;
    }
    this.draining = true;
    this.stopLeasing.abort();
    this.options.say(
      `draining: no new runs; ${this.running.size} running (a second SIGTERM stops them)`,
    );
  }

  private async beat(): Promise<void> {
    try {
      const answer = await this.options.protocol.heartbeat(this.workerId, [...this.running.keys()]);
      for (const id of answer.stop) this.running.get(id)?.cancel();
      if (answer.drained !== this.paused)
        this.options.say(
          answer.drained
            ? 'drained on the server: no new runs until undrained'
            : 'undrained: taking runs again',
        );
      this.paused = answer.drained;
    } catch (err) {
      this.options.say(`heartbeat failed: ${coerceError(err).message}`);
    }
  }

  private async execute(assignment: AssignmentBody): Promise<void> {
    const runId = assignment.run.id;
    const shipper = new LogShipper((first, texts) =>
      this.options.protocol.log(this.workerId, runId, first, texts),
    );
    const reports: Report[] = [];
    let reporting = Promise.resolve();
    const report = (r: Report): void => {
      reports.push(r);
      reporting = reporting.then(() =>
        this.options.protocol.report(this.workerId, runId, r).catch((err: unknown) => {
          this.options.say(
            `run ${runId}: reporting ${r.state} failed: ${coerceError(err).message}`,
          );
        }),
      );
    };
    let source: { dir: string; cleanup: () => Promise<void> } | null = null;
    try {
      source = await checkout(assignment);
      const type = assignment.run.type.toLowerCase() as RunType;
      if (type === 'tracked' && !assignment.run.autoDeploy) {
        throw new BerthError(
          'BERTH_USAGE',
          'this worker cannot yet keep a plan for confirmation across workers: turn on auto-deploy for the stack, or plan and apply with `berth run --type tracked` on a machine of the pool',
        );
      }
      const command =
        type === 'task' ? ((await readJobFile(source.dir, '.berth/task.sh')) ?? '') : '';
      if (type === 'task' && command.trim() === '') {
        throw new BerthError(
          'BERTH_USAGE',
          `a task run needs .berth/task.sh in the stack's source (${assignment.stack.projectRoot || '.'})`,
        );
      }
      const env = Object.fromEntries(
        assignment.environment.filter((v) => !v.secret).map((v) => [v.name, v.value]),
      );
      const secretEnv = Object.fromEntries(
        assignment.environment.filter((v) => v.secret).map((v) => [v.name, v.value]),
      );
      const pool = assignment.pool;
      const planned = await planRun({
        type,
        sourceDir: source.dir,
        runId,
        stack: assignment.stack.id,
        runnerImage: assignment.stack.runnerImage ?? undefined,
        projectRoot: assignment.stack.projectRoot || undefined,
        tool: toolFlag(assignment.stack.tool),
        toolVersion: assignment.stack.toolVersion ?? undefined,
        command,
        autoDeploy: assignment.run.autoDeploy,
        settings: {
          ...this.options.settings,
          image: undefined,
          env,
          secretEnv,
          pool: pool.kind,
          allowList: null,
          ...(pool.pullPolicy ? { pullPolicy: pool.pullPolicy as RunSettings['pullPolicy'] } : {}),
        },
        dockerConfig: pool.kind === 'private' ? this.options.dockerConfig : null,
        env: {
          ...this.options.env,
          ...(pool.defaultImage ? { BERTH_POOL_DEFAULT_RUNNER_IMAGE: pool.defaultImage } : {}),
        },
        stateDir: this.options.stateDir,
        defaultRunnerImage: this.options.defaultRunnerImage,
        launcherId: this.options.launcherId,
        confirm: () => Promise.resolve(false),
      });
      // No build of the standard runner image on a worker: its pool names the image to use.
      const runOptions: Omit<typeof planned, 'usesDefaultImage'> & { usesDefaultImage?: boolean } =
        {
          ...planned,
        };
      delete runOptions.usesDefaultImage;
      let image: Report['image'];
      let plan: PlanCounts | undefined;
      let started = false;
      const running = startRun(runOptions, {
        executor: this.options.executor,
        runId,
        emit: (event: RunEvent) => {
          switch (event.type) {
            case 'log':
              shipper.add(event.text);
              break;
            case 'image.resolved':
              image = { reference: event.reference, digest: event.digest, source: event.source };
              break;
            case 'plan.summary':
              plan = {
                add: event.add,
                change: event.change,
                destroy: event.destroy,
                replace: event.replace,
              };
              break;
            case 'phase.started':
              if (type === 'task' && !started) {
                started = true;
                report({ state: 'PERFORMING', started: true, ...(image ? { image } : {}) });
              }
              break;
            case 'run.state':
              if (['INITIALIZING', 'PLANNING', 'APPLYING', 'DESTROYING'].includes(event.state)) {
                started = true;
                report({
                  state: event.state as RunStateName,
                  started: true,
                  ...(image ? { image } : {}),
                });
              }
              break;
            default:
              break;
          }
        },
      });
      this.running.set(runId, running);
      const summary = await running.result;
      this.running.delete(runId);
      await shipper.close();
      await reporting;
      const reason = summary.error
        ? `${summary.error.message} [${summary.error.code}]`
        : summary.stop
          ? `stopped: ${summary.stop.reason}, ended by ${summary.stop.endedBy}`
          : summary.state === 'FAILED'
            ? `the job ended with exit code ${summary.jobExitCode ?? 'none'}`
            : null;
      report({
        state: summary.state,
        ...(reason ? { reason } : {}),
        ...(image ? { image } : {}),
        ...(plan ? { plan } : {}),
      });
    } catch (err) {
      const error = coerceError(err);
      await shipper.close().catch(() => undefined);
      await reporting;
      report({ state: 'FAILED', reason: `${error.message} [${error.code}]` });
    } finally {
      this.running.delete(runId);
      await reporting;
      await source?.cleanup();
    }
  }
}

function toolFlag(tool: string | null): string | undefined {
  return tool ?? undefined;
}

/** The run's source on this machine: the stack's local directory, or a checkout of its commit. */
async function checkout(
  assignment: AssignmentBody,
): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const stack = assignment.stack;
  if (stack.localDir) return { dir: stack.localDir, cleanup: () => Promise.resolve() };
  if (!stack.repository) throw new BerthError('BERTH_USAGE', `stack ${stack.id} has no source`);
  const dir = await mkdtemp(path.join(tmpdir(), 'berth-checkout-'));
  const git = (args: string[]): Promise<void> =>
    new Promise((resolve, reject) => {
      execFile(
        'git',
        ['-c', 'core.hooksPath=/dev/null', '-c', 'core.fsmonitor=false', ...args],
        { timeout: 10 * 60_000, env: { ...process.env, GIT_TERMINAL_PROMPT: '0' } },
        (err, _stdout, stderr) =>
          err
            ? reject(
                new BerthError(
                  'BERTH_WORKSPACE_UNREADABLE',
                  `git ${args[0]} of ${stack.repository} failed: ${stderr.trim().split('\n').at(-1) ?? err.message}`,
                ),
              )
            : resolve(),
      );
    });
  try {
    await git(['clone', '--quiet', '--no-checkout', '--', stack.repository, dir]);
    const target = assignment.run.commit ?? `origin/${stack.branch ?? 'main'}`;
    await git(['-C', dir, 'checkout', '--quiet', '--detach', target]);
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}
