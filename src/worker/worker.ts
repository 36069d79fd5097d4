/**
 * `berth worker`: registers in its pool, waits for runs (a long poll: outbound connections only),
 * runs up to `concurrency` of them at once through the same launcher as `berth run`, ships each
 * run's masked log in ordered batches, reports its states, and heartbeats. SIGTERM drains (no new
 * runs, the current ones finish); a second SIGTERM stops them the documented way.
 *
 * A tracked run without auto-deploy is two leases, maybe on two workers: the plan ends at
 * UNCONFIRMED with its sealed workspace uploaded to the server (and this worker free again); after
 * a confirm, the worker that leases the apply downloads it and the launcher restores it whole
 * into a new container, in the image the plan ran in.
 */
import { mkdir, rm } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { hostname } from 'node:os';
import path from 'node:path';
import { BerthError, ERROR_CATALOGUE, coerceError } from '../domain/errors.js';
import { MaskValues, maskAll } from '../domain/log-masker.js';
import { stoppingText, type RunEvent } from '../domain/run-events.js';
import type { RunStateName } from '../domain/run-state.js';
import type { RunType } from '../domain/workflow.js';
import { formatDuration } from '../domain/units.js';
import type { Executor, ResolvedImage } from '../executor/executor.js';
import { readJobFile } from '../launcher/job-files.js';
import { planRun, type RunSettings } from '../launcher/plan-run.js';
import { parseAllowList } from '../domain/pool-policy.js';
import { startRun, type ResumeOptions, type RunningJob } from '../launcher/run-job.js';
import { openSealed } from '../launcher/sealed-archive.js';
import { sealFromText, type Seal } from '../domain/workspace-seal.js';
import type { DockerConfigDir } from '../registry/docker-config.js';
import { extraMountsFor, jobVariables, type WorkerJobSettings } from '../domain/worker-settings.js';
import { LogShipper } from './log-shipper.js';
import type { RepositoryCache } from './repository-cache.js';
import { prepareSource, type RunSource } from './source.js';
import { extractPlannedSource } from '../launcher/planned-source.js';
import { gitCommit } from '../launcher/run-config.js';
import { OutageNotice } from './outage.js';
import {
  isTokenRejection,
  POOL_TOKEN_FIX,
  ProtocolError,
  type AssignmentBody,
  type Registration,
  type Report,
  type WorkerProtocol,
} from './protocol.js';

type PlanCounts = NonNullable<Report['plan']>;

/** How often a worker whose id is in use elsewhere asks again (WORKER_ID_IN_USE). */
const ID_IN_USE_RETRY_MS = 2000;
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
  /** The worker's own variables and bind mounts for every job (whitelist, masks, extra mounts). */
  jobSettings: Pick<WorkerJobSettings, 'env' | 'secretEnv' | 'mounts'>;
  /** The repository cache runs check their source out of (in the state directory). */
  repositories: RepositoryCache;
  say: (line: string) => void;
  /** What to do when the server refuses the pool token (`berth up`'s own worker: restart it). */
  tokenFix?: string;
}

export class Worker {
  private workerId = '';
  private heartbeatMs = 20_000;
  /** How long the server keeps a run leased to this worker without a heartbeat (registration). */
  private leaseMs = 60_000;
  /** Looks every second whether a run's lease is running out unrenewed (see checkLeases). */
  private leaseWatch: NodeJS.Timeout | undefined;
  /** A heartbeat again soon after one failed (see beat), instead of a whole period later. */
  private heartbeatRetry: NodeJS.Timeout | undefined;
  /** No heartbeat after the goodbye: set once the last one is awaited. */
  private beatsOver = false;
  /**
   * Aborts the calls still on their way to the server GIVE_UP_AFTER_MS after a second SIGTERM:
   * against a server that does not answer at all, each would otherwise wait for its timeout.
   */
  private readonly givingUp = new AbortController();
  private givingUpTimer: NodeJS.Timeout | undefined;
  /** Whether the server records a checked-out commit in a state report (older ones refuse it). */
  private reportsCommit = false;
  private readonly running = new Map<string, Slot>();
  private draining = false;
  /** Drained on the server (berth worker drain): no new runs until undrained; the process stays. */
  private paused = false;
  private readonly stopLeasing = new AbortController();
  private heartbeatTimer: NodeJS.Timeout | undefined;
  /** The heartbeat on its way: awaited at the end, so none lands after the worker's goodbye. */
  private readonly beating = new Set<Promise<void>>();
  /** Heartbeats sent, and the newest one whose answer set `paused`. */
  private beatsSent = 0;
  private drainHeardFrom = 0;
  /**
   * What follows a run's reported end: removing its container and its files here. A run's slot
   * is free once its end is reported: a new run is taken while fewer than `concurrency` of these
   * are in progress (so fewer than twice `concurrency` at once; with 1, the next run still waits
   * for the removal), and the worker exits only after all of them.
   */
  private readonly afterRuns = new Set<Promise<void>>();
  /** The server refused the pool token (401): the worker stops its runs and exits with this. */
  private rejected: BerthError | null = null;
  private readonly leaseOutage: OutageNotice;
  private heartbeatOutage: OutageNotice;
  /** What this worker registered with (its id as the server gave it), to register again. */
  private registration: Registration | null = null;
  /**
   * Registered with the server now: false before the first registration and while the server
   * has forgotten this worker (silent longer than its BERTH_WORKER_FORGET_AFTER) until it has
   * registered again. No heartbeat and no goodbye is sent under the id meanwhile: the id may be
   * another live worker's by then.
   */
  private registered = false;
  /** Registering again, once at a time (the lease and a heartbeat may both find it forgotten). */
  private reregistering: Promise<void> | null = null;

  constructor(private readonly options: WorkerOptions) {
    this.leaseOutage = new OutageNotice(options.say, 'lease from the server', 'every 2 s');
    this.heartbeatOutage = this.heartbeatNotice();
  }

  private heartbeatNotice(): OutageNotice {
    return new OutageNotice(
      this.options.say,
      'send a heartbeat to the server',
      // As heartbeat() does: a run's lease must be renewed as soon as the server is back.
      `every ${Math.max(1, Math.round(this.heartbeatMs / 1000))} s, every second while it holds runs`,
    );
  }

  get id(): string {
    return this.workerId;
  }

  async start(): Promise<void> {
    const registration = {
      ...(this.options.workerId ? { id: this.options.workerId } : {}),
      host: hostname(),
      berthVersion: this.options.berthVersion,
      engineVersion: this.options.engineVersion,
      concurrency: this.options.concurrency,
      // Its first registration: what the id held was an earlier process's (see registerAgain).
      fresh: true,
    };
    // Its id in use by a live worker on another host: this one waits until the id is free (the
    // same worker back under another host name after a crash) rather than exit and be restarted
    // into the same refusal; a real copy waits for ever, saying so once a minute.
    // Stopped while it waits for its id: it never registered, so it has nothing to leave.
    if (!(await this.register(registration))) return;
    // Every heartbeat on its way is awaited before the goodbye: one the server handled after it
    // would bring this worker back to the list. (They may overlap: a hung one must not hold back
    // the next, or the leases of the runs would expire behind it.)
    this.heartbeatTimer = setInterval(() => void this.heartbeat(), this.heartbeatMs);
    this.leaseWatch = setInterval(() => this.checkLeases(performance.now()), LEASE_WATCH_MS);
  }

  /**
   * Registers (again, `again`: the server forgot this worker, silent longer than its
   * BERTH_WORKER_FORGET_AFTER); waits while another live worker holds the id.
   */
  private async register(registration: Registration, again = false): Promise<boolean> {
    const idInUse = new OutageNotice(
      this.options.say,
      `register with worker id ${registration.id ?? ''}`,
      `every ${ID_IN_USE_RETRY_MS / 1000} s`,
    );
    let registered: Awaited<ReturnType<WorkerProtocol['register']>>;
    for (;;) {
      try {
        registered = await this.options.protocol.register(registration);
        break;
      } catch (err) {
        if (!(err instanceof ProtocolError && err.code === 'WORKER_ID_IN_USE')) throw err;
        idInUse.failed(err.message);
        await new Promise((resolve) => setTimeout(resolve, ID_IN_USE_RETRY_MS));
        if (this.draining) return false;
      }
    }
    idInUse.succeeded();
    this.workerId = registered.workerId;
    // Registering again is never fresh: this process may hold runs under the id by then.
    this.registration = { ...registration, id: registered.workerId, fresh: false };
    this.registered = true;
    if (again && registered.heartbeatMs !== this.heartbeatMs && this.heartbeatTimer) {
      clearInterval(this.heartbeatTimer);
      this.heartbeatTimer = setInterval(() => void this.heartbeat(), registered.heartbeatMs);
    }
    this.heartbeatMs = registered.heartbeatMs;
    this.leaseMs = registered.leaseMs;
    if (!again) this.heartbeatOutage = this.heartbeatNotice();
    this.paused = registered.drained === true;
    this.reportsCommit = registered.reportsCommit === true;
    const registeredText = again
      ? `registered again in pool ${registered.pool} (the server had forgotten this worker: it was not heard from for longer than the server's BERTH_WORKER_FORGET_AFTER)`
      : `registered in pool ${registered.pool}`;
    this.options.say(
      this.paused
        ? `worker ${this.workerId} ${registeredText}; drained: it takes no runs until \`berth worker undrain ${this.workerId}\``
        : `worker ${this.workerId} ${registeredText}; up to ${this.options.concurrency} run(s) at once`,
    );
    return true;
  }

  /** One heartbeat, kept among those on their way until it is answered. */
  private heartbeat(): Promise<void> {
    if (!this.registered) return Promise.resolve();
    const beat = this.beat();
    this.beating.add(beat);
    return beat.finally(() => this.beating.delete(beat));
  }

  /** Leases and runs until drained; resolves once every run it started has ended. */
  async serve(): Promise<void> {
    const slots = new Set<Promise<void>>();
    while (!this.draining) {
      if (slots.size >= this.options.concurrency) {
        await Promise.race(slots);
        continue;
      }
      if (this.afterRuns.size >= this.options.concurrency) {
        await Promise.race(this.afterRuns);
        continue;
      }
      if (this.paused) {
        // Drained: a heartbeat a second (not one per heartbeat period, up to 20 s) learns of an
        // undrain soon after it is given.
        await new Promise((resolve) => setTimeout(resolve, Math.min(this.heartbeatMs, 1000)));
        if (this.paused && !this.draining) await this.heartbeat();
        continue;
      }
      let assignment: AssignmentBody | null;
      try {
        // After a failure, a quick lease (no wait): the return of the server is said at once,
        // not at the end of a long poll.
        assignment = await this.options.protocol.lease(
          this.workerId,
          this.leaseOutage.ongoing ? 0 : 25_000,
          this.stopLeasing.signal,
        );
      } catch (err) {
        if (this.tokenRejected(err) || this.draining) break;
        // Forgotten by the server (silent too long): the same worker registers again.
        if (forgotten(err)) {
          this.leaseOutage.succeeded();
          await this.registerAgain();
          continue;
        }
        this.leaseOutage.failed(coerceError(err).message);
        await new Promise((resolve) => setTimeout(resolve, 2000));
        continue;
      }
      this.leaseOutage.succeeded();
      if (!assignment) continue;
      const slot = this.execute(assignment).finally(() => slots.delete(slot));
      slots.add(slot);
    }
    await Promise.all(slots);
    await Promise.all(this.afterRuns);
    clearInterval(this.heartbeatTimer);
    clearInterval(this.leaseWatch);
    this.beatsOver = true;
    clearTimeout(this.heartbeatRetry);
    await Promise.all(this.beating);
    if (this.rejected) throw this.rejected;
  }

  /**
   * The server has forgotten this worker (a lease or a heartbeat answered WORKER_NOT_FOUND):
   * registers again under its id, trying again every 2 s while the server cannot be reached; a
   * refused pool token ends the worker as anywhere else. The leases of runs it still holds are
   * renewed by the heartbeats that follow (the same id).
   */
  private registerAgain(): Promise<void> {
    const registration = this.registration;
    if (!registration) return Promise.resolve();
    this.registered = false;
    this.reregistering ??= (async () => {
      // Not once the worker is done (drained with nothing left to run, or told to stop at once).
      const over = (): boolean =>
        this.beatsOver ||
        this.rejected !== null ||
        this.givingUp.signal.aborted ||
        (this.draining && this.running.size === 0);
      while (!over()) {
        try {
          if (!(await this.register(registration, true))) return;
          this.leaseOutage.succeeded();
          // The runs it holds: their leases renewed now, not a heartbeat period later.
          if (this.running.size > 0) void this.heartbeat();
          return;
        } catch (err) {
          if (this.tokenRejected(err)) return;
          this.leaseOutage.failed(`register again: ${coerceError(err).message}`);
          await new Promise((resolve) => setTimeout(resolve, 2000));
        }
      }
    })().finally(() => {
      this.reregistering = null;
    });
    return this.reregistering;
  }

  /** Tells the server this worker leaves (a clean exit): it shows as OFFLINE at once. */
  async leave(): Promise<void> {
    // Stopped before it registered, or while registering again (the id may be another's).
    if (!this.workerId || !this.registered) return;
    try {
      await this.options.protocol.deregister(this.workerId, this.givingUp.signal);
    } catch (err) {
      this.options.say(
        `could not tell the server this worker leaves (${coerceError(err).message}); it shows as OFFLINE once its lease time passes`,
      );
    }
  }

  /**
   * A 401 from the server: it no longer takes this worker's pool token (rotated, or wrong). Said
   * once; the worker takes no more runs, stops the ones it holds (as a second SIGTERM does) and
   * exits with the error (retrying would only hammer the server with a dead token).
   */
  private tokenRejected(err: unknown): boolean {
    if (!isTokenRejection(err)) return false;
    if (this.rejected) return true;
    const fix = this.options.tokenFix ?? POOL_TOKEN_FIX;
    this.rejected = new BerthError(
      'BERTH_SERVER_REFUSED',
      `the berth server no longer accepts this worker's pool token (${(err as Error).message}): it was rotated (berth pool rotate-token) or is wrong`,
      { cause: err, hint: fix },
    );
    this.options.say(
      `${this.rejected.message}; stopping ${this.running.size} run(s) and exiting. ${fix}`,
    );
    this.draining = true;
    this.stopLeasing.abort();
    for (const slot of this.running.values()) {
      slot.stopWhy ??= "the server no longer accepts the worker's pool token";
      stopSlot(slot);
    }
    return true;
  }

  /**
   * First call: take no new runs, let the current ones finish. Second: stop them too, and give
   * up shipping what the server cannot be reached for (the worker would wait for ever for a
   * server that is gone).
   */
  drain(): void {
    if (this.draining) {
      // Not holding the process up once everything else has ended.
      this.givingUpTimer ??= setTimeout(() => this.givingUp.abort(), GIVE_UP_AFTER_MS).unref();
      for (const slot of this.running.values()) {
        slot.stopWhy ??= 'the worker was told to stop at once (a second SIGTERM or Ctrl-C)';
        // Told again while its job stops (a third signal): no more grace, as berth run's Ctrl-C.
        stopHarder(slot);
        slot.giveUpShipping?.();
      }
      return;
    }
    this.draining = true;
    this.stopLeasing.abort();
    this.options.say(
      `draining: no new runs; ${this.running.size} running (a second SIGTERM or Ctrl-C stops them)`,
    );
  }

  private async beat(): Promise<void> {
    const sent = ++this.beatsSent;
    // The server renews each run's lease from when it handles this heartbeat: no sooner than now.
    const sentAt = performance.now();
    const held = [...this.running.entries()];
    try {
      // Not waited for long: one that hangs (a half-open connection, a stuck proxy) would keep
      // the leases unrenewed until the jobs are stopped for it; it fails, and is tried again.
      const answer = await this.options.protocol.heartbeat(
        this.workerId,
        held.map(([id]) => id),
        AbortSignal.timeout(heartbeatTimeoutMs(this.leaseMs)),
      );
      this.heartbeatOutage.succeeded();
      for (const [, slot] of held) slot.renewedAt = Math.max(slot.renewedAt, sentAt);
      for (const id of answer.stop) {
        const slot = this.running.get(id);
        if (slot && !slot.ended) stopSlot(slot);
      }
      // Heartbeats may overlap: an answer older than one already heard says an older drain state.
      if (sent < this.drainHeardFrom) return;
      this.drainHeardFrom = sent;
      if (answer.drained !== this.paused)
        this.options.say(
          answer.drained
            ? 'drained on the server: no new runs until undrained'
            : 'undrained: taking runs again',
        );
      this.paused = answer.drained;
    } catch (err) {
      if (this.tokenRejected(err)) return;
      if (forgotten(err)) {
        // A drained worker never leases, and a busy one may not for long: register again now.
        void this.registerAgain();
        return;
      }
      this.heartbeatOutage.failed(coerceError(err).message);
      // While runs are held, the next try comes in a second: their leases are renewed as soon
      // as the server is back (a restart), not up to a heartbeat period later.
      if (this.running.size > 0 && !this.beatsOver && !this.heartbeatRetry)
        this.heartbeatRetry = setTimeout(() => {
          this.heartbeatRetry = undefined;
          if (!this.beatsOver) void this.heartbeat();
        }, LEASE_WATCH_MS);
    }
  }

  /**
   * Stops the runs whose lease the server has not renewed for long: past the lease time the
   * server takes this worker for gone and ends the run or hands it to another worker, and a job
   * still running here would then run beside the next run of its stack (two applies at once).
   * At 75 % of the lease time without a renewal the job is stopped (SIGINT, as a cancel), and
   * killed shortly before the lease runs out if it has not ended by then; what it did is in its
   * log, and the run ends STOPPED with the reason (or FAILED by the server's sweep, if the server
   * is not back by then).
   */
  private checkLeases(now: number): void {
    for (const [runId, slot] of this.running) {
      // Its job is over (only its end is still being reported): nothing runs to stop.
      if (slot.ended) continue;
      const unrenewed = now - slot.renewedAt;
      if (unrenewed >= leaseKillAfterMs(this.leaseMs)) {
        if (slot.leaseKilled) continue;
        slot.leaseKilled = true;
        this.leaseLost(runId, slot, unrenewed);
        // Killed, whether or not it was stopping already (a stop asked for earlier gives the
        // job a grace period that may outlast the lease): a second cancel of the job skips the
        // grace.
        stopSlot(slot);
        slot.job?.cancel();
        continue;
      }
      if (unrenewed < leaseStopAfterMs(this.leaseMs) || slot.leaseLost) continue;
      this.leaseLost(runId, slot, unrenewed);
      stopSlot(slot);
    }
  }

  /** Says, once, that a run's lease could not be renewed: on stderr and in the run's log. */
  private leaseLost(runId: string, slot: Slot, unrenewed: number): void {
    if (slot.leaseLost) return;
    slot.stopWhy ??= 'its lease could not be renewed with the server';
    slot.leaseLost = `this worker could not renew its lease on the run with the server for ${Math.round(unrenewed / 1000)} s (the lease is ${Math.round(this.leaseMs / 1000)} s): stopped before the server gives the run up, so that it never runs beside another worker's`;
    this.options.say(`run ${runId}: ${slot.leaseLost}`);
    slot.onLeaseLost?.(slot.leaseLost);
  }

  private async execute(assignment: AssignmentBody): Promise<void> {
    const runId = assignment.run.id;
    // Held from the lease on: a cancel arriving during the checkout is not lost.
    // The lease was granted a moment before its answer came: the kill's margin covers that.
    const slot: Slot = {
      canceled: false,
      job: null,
      renewedAt: performance.now(),
      preparing: new AbortController(),
    };
    this.running.set(runId, slot);
    const shipper = new LogShipper(
      (first, texts) =>
        this.options.protocol
          .log(this.workerId, runId, first, texts, this.givingUp.signal)
          .catch((err: unknown) => {
            this.tokenRejected(err);
            throw err;
          }),
      {
        firstSeq: assignment.logNext,
        limitBytes: shippedLogLimit(this.options.settings.logLimitBytes, assignment.logLimitBytes),
        remask: (values) =>
          this.options.protocol.remask(this.workerId, runId, values, this.givingUp.signal),
      },
    );
    // What berth itself says of the run (its failure, in the log and the reason) is masked as the
    // job's output is: an error message may quote a value.
    const secrets = new MaskValues([
      ...assignment.environment.filter((v) => v.secret).map((v) => v.value),
      ...Object.values(this.options.jobSettings.secretEnv),
    ]);
    const masked = (text: string): string => (secrets.size > 0 ? maskAll(text, secrets) : text);
    slot.onLeaseLost = (why) => shipper.add(`[berth: warning: ${why}]\n`);
    slot.giveUpShipping = () =>
      shipper.stopRetrying(
        'the worker was told to stop at once while the server could not be reached',
        this.givingUp.signal,
      );
    let started = false;
    let reporting = Promise.resolve();
    // The state this worker last reported: what the operator's "done here" line names.
    let reported: Report['state'] | null = null;
    // The commit checked out for a run bound to none: the server records it with the next report.
    let checkedOut: string | undefined;
    const report = (r: Report): void => {
      reported = r.state;
      const body: Report = {
        ...r,
        ...(checkedOut ? { commit: checkedOut } : {}),
        ...(started ? { started: true } : {}),
        ...(r.reason !== undefined ? { reason: printableReason(masked(r.reason)) } : {}),
      };
      reporting = reporting.then(() => this.deliverReport(runId, body, slot));
    };
    this.options.say(
      `run ${runId}: taken, ${assignment.resume ? 'the apply of its confirmed plan' : `${assignment.run.type} run`} of stack ${assignment.stack.id}`,
    );
    let source: RunSource | null = null;
    // The container goes after the run's end is reported (its log complete and stored first).
    let removeContainer: (() => Promise<void>) | null = null;
    // What a stop before the job started ended (see stopSlot), for its reason.
    let preparing = 'the checkout of its source';
    try {
      source = await prepareSource(assignment, this.options.repositories, slot.preparing.signal);
      if (this.reportsCommit && !assignment.run.commit && source.commit)
        checkedOut = source.commit.sha;
      for (const warning of source.warnings) shipper.add(masked(`[berth: warning: ${warning}]\n`));
      const type = assignment.run.type.toLowerCase() as RunType;
      preparing = 'the download of its saved workspace';
      const resume = assignment.resume
        ? await this.fetchWorkspace(assignment, slot.preparing.signal)
        : undefined;
      preparing = 'its preparation';
      // The apply of a directory stack runs the configuration the plan ran with (the directory
      // may have changed since the plan was reviewed), taken from the saved workspace.
      let sourceDir = source.dir;
      let commit = source.commit;
      if (resume && assignment.stack.localDir) {
        sourceDir = path.join(path.dirname(this.workspaceFile(runId)), 'planned-source');
        await extractPlannedSource(resume.archive, sourceDir);
        // The directory's own commit, as the plan asked git (the copy has no .git).
        commit = await gitCommit(source.dir);
      }
      // The apply runs in the image the plan ran in: by its registry digest when it has one.
      const pinnedImage = resume
        ? (assignment.run.image.digest ?? assignment.run.image.reference ?? undefined)
        : undefined;
      let kept: Seal | null = null;
      const taskFile = type === 'task' ? await readJobFile(source.dir, '.berth/task.sh') : null;
      const command = taskFile ?? '';
      if (type === 'task' && command.trim() === '') {
        throw new BerthError(
          'BERTH_USAGE',
          taskFile === null
            ? "a task run needs .berth/task.sh at the root of the stack's source, and it has none"
            : ".berth/task.sh at the root of the stack's source is empty: a task run has nothing to run",
          { hint: NO_TASK_FIX },
        );
      }
      const { env, secretEnv } = jobVariables(this.options.jobSettings, source.environment);
      const pool = assignment.pool;
      // A public pool's allow-list is the operator's; berth's default only when it says so.
      let allowList = null;
      if (pool.kind === 'public' && pool.allowList.length > 0) {
        const parsed = parseAllowList(pool.allowList.join(','));
        if ('error' in parsed)
          throw new BerthError('BERTH_USAGE', `pool ${pool.id}'s allow-list: ${parsed.error}`, {
            hint: `The allow-list is pool ${pool.id}'s setting on the server: correct its entries there (the registry hosts or patterns the pool may pull from), then trigger the run again.`,
          });
        allowList = parsed.rules;
      }
      const planned = await planRun({
        type,
        sourceDir,
        runId,
        stack: assignment.stack.id,
        runnerImage: assignment.stack.runnerImage ?? undefined,
        projectRoot: assignment.stack.projectRoot || undefined,
        tool: assignment.stack.tool ?? undefined,
        toolVersion: assignment.stack.toolVersion ?? undefined,
        command,
        ...(commit ? { commit } : {}),
        trigger: assignment.trigger ?? assignment.run.triggeredBy,
        stackLabels: assignment.stack.labels,
        autoDeploy: assignment.run.autoDeploy,
        settings: {
          ...this.options.settings,
          image: pinnedImage,
          env,
          secretEnv,
          // A plan that waits for confirmation has a container of its own: a read-only run too.
          extraMounts: extraMountsFor(
            type === 'proposed' ||
              (type === 'tracked' && !assignment.run.autoDeploy && !assignment.resume),
            this.options.jobSettings.mounts,
          ),
          pool: pool.kind,
          allowList,
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
        // The plan waits on the server: its workspace goes there, and this worker is free.
        handOver: async (archive, signal) => {
          await this.upload(runId, archive.file, signal);
          kept = archive.seal;
        },
      });
      const { usesDefaultImage, ...planOptions } = planned;
      const build = this.options.buildRunnerImage;
      let image: Report['image'];
      let plan: PlanCounts | undefined;
      const running = startRun(
        {
          ...planOptions,
          keepLog: false,
          ...(resume ? { resume } : {}),
          buildMissingImage:
            usesDefaultImage && build
              ? (onLine: (line: string) => void) => build(planned.image, onLine)
              : undefined,
        },
        {
          executor: this.options.executor,
          runId,
          maskAdded: (value) => shipper.addMask(value),
          removeLater: (remove) => {
            removeContainer = remove;
          },
          emit: (event: RunEvent) => {
            switch (event.type) {
              case 'log':
                shipper.add(event.text);
                break;
              case 'warning':
                // What berth had to say about the run belongs to its log on the server too
                // (masked by the launcher already).
                shipper.add(`[berth: warning: ${event.message}]\n`);
                break;
              case 'run.stopping':
                // As berth run says it: why, and what the job is given before it is killed.
                shipper.add(`[berth: ${stoppingText(event, slot.stopWhy)}]\n`);
                break;
              case 'image.resolved':
                image = {
                  reference: event.reference,
                  digest: event.digest,
                  source: event.source,
                  chosenBy: planned.imageSource,
                  ...(event.id ? { id: event.id } : {}),
                };
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
                // The after_run hooks are not the task: a task stopped before it ran is not one
                // that performed.
                if (type === 'task' && !started && event.phase !== AFTER_RUN_PHASE) {
                  started = true;
                  report({ state: 'PERFORMING', ...(image ? { image } : {}) });
                }
                break;
              case 'run.state':
                if (['INITIALIZING', 'PLANNING', 'APPLYING', 'DESTROYING'].includes(event.state)) {
                  started = true;
                  report({ state: event.state as RunStateName, ...(image ? { image } : {}) });
                }
                break;
              default:
                break;
            }
          },
        },
      );
      slot.job = running;
      if (slot.canceled) running.cancel();
      const summary = await running.result;
      slot.ended = true;
      if (summary.error) shipper.add(masked(failureLines(summary.error)));
      await shipper.close();
      await reporting;
      const reason = summary.error
        ? `${summary.error.message} [${summary.error.code}]`
        : summary.stop
          ? `stopped: ${slot.leaseLost ?? slot.stopWhy ?? summary.stop.reason}, ended by ${summary.stop.endedBy}`
          : summary.state === 'FAILED'
            ? `the job ended with exit code ${summary.jobExitCode ?? 'none'}`
            : null;
      report({
        state: summary.state,
        ...(reason ? { reason } : {}),
        ...(image ? { image } : {}),
        ...(plan ? { plan } : {}),
        ...(summary.state === 'UNCONFIRMED' && kept ? { workspace: sealBody(kept) } : {}),
      });
    } catch (err) {
      slot.ended = true;
      this.tokenRejected(err);
      // Nothing of the job ran, and the server could not be reached for long (the run's lease not
      // renewed, or its saved workspace not to be had): not ended from here (a report sent again
      // could reach a server back from a restart and cancel a confirmed apply), but left to the
      // server's lease sweep, which puts the run back in the queue once its lease ends (a run
      // asked to stop meanwhile ends as the stop meant).
      if (slot.job === null && (slot.leaseLost || err instanceof LeftToServer)) {
        const why =
          slot.leaseLost ??
          `could not download the saved workspace (${(err as LeftToServer).why.message})`;
        this.options.say(
          `run ${runId}: ${why}; its job never started: the run goes back to the queue once its lease ends`,
        );
        shipper.add(
          masked(
            `[berth: worker ${this.workerId} ${why}; its job never started, and the run goes back to the queue once its lease ends]\n`,
          ),
        );
        await shipper.close().catch(() => undefined);
        await reporting;
        return;
      }
      if (slot.canceled && slot.job === null) {
        // Stopped before anything of the job ran: what was under way (a checkout, a download) was
        // ended for it, and whatever it threw is that end.
        const reason = `stopped: ${slot.leaseLost ?? slot.stopWhy ?? 'canceled'}, during ${preparing}; its job never started`;
        // A failure of its own that came with the stop (not the stop's end of the checkout) is
        // said too: the run is over either way, but what went wrong is not hidden.
        if (err !== slot.preparing.signal.reason) shipper.add(masked(failureLines(runError(err))));
        shipper.add(masked(`[berth: ${reason}]\n`));
        await shipper.close().catch(() => undefined);
        await reporting;
        report({ state: 'CANCELED', reason });
        return;
      }
      const error = runError(err);
      shipper.add(masked(failureLines(error)));
      await shipper.close().catch(() => undefined);
      await reporting;
      report({ state: 'FAILED', reason: `${error.message} [${error.code}]` });
    } finally {
      await reporting;
      if (this.running.get(runId) === slot) this.running.delete(runId);
      const unshipped = shipper.failure;
      const after = this.afterRun(runId, reported, removeContainer, source, unshipped).finally(() =>
        this.afterRuns.delete(after),
      );
      this.afterRuns.add(after);
    }
  }

  /** Removes what a run left here once its end is reported (see afterRuns). */
  private async afterRun(
    runId: string,
    state: Report['state'] | null,
    removeContainer: (() => Promise<void>) | null,
    source: RunSource | null,
    /** Why the log shipper stopped (the server refused a batch), or null: all of it was shipped. */
    unshipped: Error | null,
  ): Promise<void> {
    let clean = await this.removeAfterReport(runId, removeContainer);
    try {
      await source?.cleanup();
      // The run's directory here: the downloaded workspace, nothing else is kept after the run.
      await rm(path.dirname(this.workspaceFile(runId)), { recursive: true, force: true });
    } catch (err) {
      clean = false;
      this.options.say(
        `run ${runId}: could not remove its files here: ${coerceError(err).message}`,
      );
    }
    // For the operator (and tests): nothing of the run is left to ship or remove here. The state
    // says which part it was: a plan ends UNCONFIRMED here, its apply elsewhere or later.
    const ended = state ? `, ${state}` : '';
    const log = unshipped ? `log not all shipped: ${unshipped.message};` : 'log shipped,';
    const left = !clean
      ? `${log.slice(0, -1)}; what could not be removed is said above`
      : removeContainer
        ? `${log} container removed`
        : `${log} nothing left to remove`;
    this.options.say(`run ${runId}: done here${ended} (${left})`);
  }

  /** Removes a run's container once its end is reported; a failure is the operator's to know. */
  private async removeAfterReport(
    runId: string,
    remove: (() => Promise<void>) | null,
  ): Promise<boolean> {
    try {
      await remove?.();
      return true;
    } catch (err) {
      this.options.say(
        `run ${runId}: could not remove its container (${coerceError(err).message}); the next start of this worker removes it`,
      );
      return false;
    }
  }

  /**
   * Uploads a plan's sealed workspace; again after a network or server error (the server
   * replaces a broken upload whole), never after a refusal.
   */
  private async upload(runId: string, file: string, signal: AbortSignal): Promise<void> {
    try {
      await this.untilServerAnswers(`run ${runId}: uploading the saved workspace`, signal, () =>
        this.options.protocol.uploadWorkspace(this.workerId, runId, file, signal),
      );
    } catch (err) {
      if ((err as { status?: number }).status !== 507) throw err;
      // The server's disk will not be freed in the seconds a retry waits: the plan fails.
      throw new BerthError(
        'BERTH_SERVER_STORAGE_FULL',
        (err as Error).message.replace(/^.*SERVER_STORAGE_FULL: /, ''),
        { cause: err },
      );
    }
  }

  /**
   * `call`, again while the server cannot be reached or says it is away for a while (502, 503,
   * 504: a restart, its database down), as a state report is: for about two minutes, saying each
   * new try; anything else (a refusal, a full disk, a 500, a stop) is thrown at once.
   */
  private async untilServerAnswers<T>(
    what: string,
    signal: AbortSignal,
    call: () => Promise<T>,
  ): Promise<T> {
    for (let attempt = 0; ; attempt += 1) {
      try {
        return await call();
      } catch (err) {
        if (signal.aborted || !serverTrouble(err) || attempt >= SERVER_TRIES - 1) throw err;
        const delay = Math.min(500 * 2 ** attempt, 15_000);
        this.options.say(
          `${what} failed (${coerceError(err).message}); trying again in ${formatDuration(delay)}`,
        );
        // A stop (a cancel, the lease, a second SIGTERM) ends the wait too.
        await sleep(delay, undefined, { signal }).catch(() => undefined);
        signal.throwIfAborted();
      }
    }
  }

  private workspaceFile(runId: string): string {
    return path.join(this.options.stateDir, 'runs', runId, 'workspace.download');
  }

  /** The saved workspace of a confirmed run's plan, from the server, with what opens it. */
  private async fetchWorkspace(
    assignment: AssignmentBody,
    signal: AbortSignal,
  ): Promise<ResumeOptions> {
    const runId = assignment.run.id;
    const given = assignment.resume as NonNullable<AssignmentBody['resume']>;
    const seal = sealFromText(JSON.stringify(given.seal));
    if (!seal)
      throw new BerthError('BERTH_SAVED_WORKSPACE_INVALID', 'the server sent no usable seal');
    const file = this.workspaceFile(runId);
    await mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
    await this.untilServerAnswers(`run ${runId}: downloading the saved workspace`, signal, () =>
      this.options.protocol.downloadWorkspace(this.workerId, runId, file, signal),
    ).catch((err: unknown) => {
      // Stopped: the stop's own end of the download, not a network failure.
      signal.throwIfAborted();
      // The server still away: nothing of the apply has run, so the run goes back to the queue.
      if (serverTrouble(err)) throw new LeftToServer(coerceError(err));
      throw err;
    });
    return { archive: openSealed(file, seal), imageId: given.imageId };
  }

  /**
   * Sends one state report: again after a network error or a server error (it changes nothing
   * twice: the state machine refuses a repeat), never after a refusal. A refusal means the run is
   * no longer this worker's to run (canceled, ended, handed on): its job is stopped.
   */
  private async deliverReport(runId: string, report: Report, slot: Slot): Promise<void> {
    for (let attempt = 0; attempt < 12; attempt += 1) {
      try {
        const answer = await this.options.protocol.report(
          this.workerId,
          runId,
          report,
          this.givingUp.signal,
        );
        // Canceled on the server: stopped now rather than at the next heartbeat.
        if (answer.stopRequested && !slot.ended) stopSlot(slot);
        return;
      } catch (err) {
        const status = (err as { status?: number }).status ?? 0;
        if (this.tokenRejected(err)) return;
        if (status >= 400 && status < 500) {
          this.options.say(
            `run ${runId}: the server refused ${report.state} (${coerceError(err).message}); stopping it here`,
          );
          // Not this worker's any more (the stack's next run may start): no grace left to give.
          stopHarder(slot);
          return;
        }
        // Told to stop at once (a second SIGTERM: givingUpTimer set): a second apart for a few
        // seconds more, then the server's sweep ends the run instead.
        if (this.givingUp.signal.aborted) break;
        const delay = Math.min(500 * 2 ** attempt, this.givingUpTimer ? 1000 : 15_000);
        await new Promise((resolve) => setTimeout(resolve, delay));
      }
    }
    this.options.say(
      `run ${runId}: could not report ${report.state}; the server's lease sweep ends it`,
    );
  }
}

interface Slot {
  canceled: boolean;
  job: RunningJob | null;
  /** When the server last renewed the run's lease, at the latest (the lease, then heartbeats). */
  renewedAt: number;
  /** Why the run was stopped for a lease not renewed (see checkLeases), once it was. */
  leaseLost?: string;
  /** Why this worker stopped the run itself (not a cancel on the server), in a few words. */
  stopWhy?: string;
  /** The job was then killed, its lease about to run out. */
  leaseKilled?: boolean;
  /** The job has ended (its end may still be on the way to the server). */
  ended?: boolean;
  /** Puts a line in the run's log (set once its log is shipped). */
  onLeaseLost?: (why: string) => void;
  /** Stops sending again what the server cannot be reached for (a second SIGTERM). */
  giveUpShipping?: () => void;
  /** Aborted by a stop: ends the checkout or download under way before the job starts. */
  preparing: AbortController;
}

/** How many times a call the server did not answer is made (about two minutes in all). */
const SERVER_TRIES = 12;

/** Node's and undici's codes of a connection that failed or was cut. */
const NETWORK_CODES = new Set([
  'ECONNRESET',
  'ECONNREFUSED',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'UND_ERR_SOCKET',
]);

/**
 * The server out of reach (its connection refused or cut), or unavailable for a while (502, 503,
 * 504: a restart, its database away); not a refusal, a full disk, a bug's 500, or this machine's
 * own file errors.
 */
function serverTrouble(err: unknown): boolean {
  if (err instanceof BerthError) return err.code === 'BERTH_SERVER_UNREACHABLE';
  if (err instanceof ProtocolError) return SERVER_AWAY.includes(err.status);
  const { code, cause } = (err ?? {}) as { code?: string; cause?: { code?: string } };
  return NETWORK_CODES.has(code ?? '') || NETWORK_CODES.has(cause?.code ?? '');
}

/** A server's answers that say it is away for a while (a proxy's, or its own 503). */
const SERVER_AWAY: readonly number[] = [502, 503, 504];

/** A run's failure as said in its log and reason: a server away for a while is no bug. */
function runError(err: unknown): BerthError {
  if (err instanceof ProtocolError && SERVER_AWAY.includes(err.status))
    return new BerthError('BERTH_SERVER_UNAVAILABLE', err.message, { cause: err });
  return coerceError(err);
}

/** The apply's saved workspace could not be had from the server: the run is left to it. */
class LeftToServer extends Error {
  constructor(readonly why: BerthError) {
    super(why.message);
  }
}

/** The after_run hooks' phase (launcher/run-config.ts names it so). */
const AFTER_RUN_PHASE = 'after_run';

/** After a second SIGTERM, how long what fails on the network is still tried again. */
const GIVE_UP_AFTER_MS = 5000;

/** How often the worker looks at its runs' leases, and tries a failed heartbeat again. */
const LEASE_WATCH_MS = 1000;

/**
 * How long a heartbeat is waited for: a twelfth of the lease time (5 s for the default 60 s),
 * from 1 to 10 s; not tied to the heartbeat period (5 s at most), so that a server slowed down
 * (a busy database) is not taken for a lost one.
 */
export function heartbeatTimeoutMs(leaseMs: number): number {
  return Math.min(10_000, Math.max(1000, Math.floor(leaseMs / 12)));
}

/**
 * A run's lease unrenewed this long (75 % of the lease time): its job is stopped. Heartbeats come
 * every third of the lease time, so one lost heartbeat never stops a job; two in a row may.
 */
export function leaseStopAfterMs(leaseMs: number): number {
  return Math.floor(leaseMs * 0.75);
}

/** …and killed this long after its last renewal, shortly before the server gives the run up. */
export function leaseKillAfterMs(leaseMs: number): number {
  return leaseMs - Math.min(5000, Math.floor(leaseMs / 5));
}

/** Stops a run, or a job already stopping at once (its grace cut short), unless it has ended. */
function stopHarder(slot: Slot): void {
  if (slot.ended) return;
  if (slot.canceled) slot.job?.cancel();
  else stopSlot(slot);
}

/** The server answered that it does not know this worker (it forgot it: see registerAgain). */
function forgotten(err: unknown): boolean {
  return err instanceof ProtocolError && err.code === 'WORKER_NOT_FOUND';
}

/**
 * Stops a run now: its job, or the checkout or download under way before it (a stop that comes
 * between the two is kept, and the job stops as soon as it starts). Once:
 * a stop asked again (every heartbeat names a canceled run until its end is reported) must not
 * cut the job's grace short, as a second cancel of the job would (see checkLeases for the one
 * stop that does).
 */
function stopSlot(slot: Slot): void {
  if (slot.canceled) return;
  slot.canceled = true;
  if (slot.job) slot.job.cancel();
  else slot.preparing.abort(new Error('the run was stopped'));
}

/**
 * The bound of a run's shipped log: the worker's own (BERTH_LOG_LIMIT) within the server's, less
 * room for what berth adds around the bounded output (the cut marker, warnings, a dropped-output
 * note), so an honest worker is never refused for its log's size.
 */
export function shippedLogLimit(own: number, server: number | undefined): number {
  if (server === undefined) return own;
  return Math.max(1024, Math.min(own, server - Math.min(16 * 1024, Math.floor(server / 8))));
}

/** A reason as the server takes it: no control characters but newlines and tabs, bounded. */
/**
 * The run's failure as its log's last lines, as `berth run` shows it on the terminal: the reason
 * says what happened, the log also says how to fix it (the state reason has no room for that).
 */
export function failureLines(error: { code: string; message: string; hint?: string }): string {
  // The catalogue's generic usage fix names a command's --help: a worker's run has no command.
  const hint =
    error.code === 'BERTH_USAGE' && error.hint === ERROR_CATALOGUE.BERTH_USAGE.hint
      ? WORKER_USAGE_FIX
      : error.hint;
  return `[berth: error: ${error.message} [${error.code}]]\n${hint ? `[berth: fix: ${hint}]\n` : ''}`;
}

/** The fix of a task run whose source has no task (a worker's run takes no command). */
export const NO_TASK_FIX =
  "Add .berth/task.sh with the task's shell commands at the root of the stack's source (for a repository: commit and push it; for a stack's --dir: on the workers' machines), then trigger the run again. A task run on a worker runs that file; `berth run DIR -- COMMAND` runs a command of your own on this machine.";

/** A usage error of a worker's run without a fix of its own. */
const WORKER_USAGE_FIX =
  "The run's settings come from its stack and its pool on the server (`berth stack show STACK`): correct the one named above there, then trigger the run again.";

function printableReason(text: string): string {
  return text.replace(/[\u0000-\u0008\u000b-\u001f\u007f]/g, '?').slice(0, 4000);
}

/** The seal as the server takes it (base64 fields). */
function sealBody(seal: Seal): { key: string; iv: string; tag: string } {
  return {
    key: seal.key.toString('base64'),
    iv: seal.iv.toString('base64'),
    tag: seal.tag.toString('base64'),
  };
}
