/**
 * Stopping a run (run timeout, logs timeout, cancel; SIGINT, grace, SIGKILL; STOPPED, CANCELED,
 * FAILED) with the injected clock and an executor whose job does what the test says: no timing
 * luck, every step asserted. The real engine's side of it is in test/executor.test.ts.
 */
import { describe, expect, it } from 'vitest';
import type { RunEvent } from '../domain/run-events.js';
import type {
  Executor,
  JobHandle,
  OutputStream,
  PhaseOutcome,
  ResolvedImage,
} from '../executor/executor.js';
import { startRun, type Clock, type RunDeps, type RunJobOptions } from './run-job.js';

/** A clock that moves only when the test says so; due timers fire in order. */
class FakeClock implements Clock {
  private time = Date.parse('2026-01-01T00:00:00Z');
  private timers = new Map<number, { at: number; fn: () => void }>();
  private nextId = 1;

  now(): number {
    return this.time;
  }

  setTimeout(fn: () => void, ms: number): NodeJS.Timeout {
    const id = this.nextId++;
    this.timers.set(id, { at: this.time + ms, fn });
    return id as unknown as NodeJS.Timeout;
  }

  clearTimeout(timer: NodeJS.Timeout): void {
    this.timers.delete(timer as unknown as number);
  }

  /** Moves time on by `ms`, firing each timer that falls due, then lets promises settle. */
  async advance(ms: number): Promise<void> {
    const end = this.time + ms;
    for (;;) {
      const due = [...this.timers.entries()]
        .filter(([, t]) => t.at <= end)
        .sort((a, b) => a[1].at - b[1].at)[0];
      if (!due) break;
      this.timers.delete(due[0]);
      this.time = due[1].at;
      due[1].fn();
      await settle();
    }
    this.time = end;
    await settle();
  }
}

async function settle(): Promise<void> {
  for (let i = 0; i < 20; i++) await Promise.resolve();
  await new Promise((resolve) => setImmediate(resolve));
}

type Behaviour = 'honours-sigint' | 'ignores-sigint';

/** A job whose phase runs until it is interrupted (and honours it) or killed. */
class FakeJob implements JobHandle {
  readonly containerId = 'c'.repeat(64);
  readonly containerName = 'berth-fake';
  readonly warnings: string[] = [];
  readonly calls: string[] = [];
  private end: ((outcome: PhaseOutcome) => void) | undefined;
  private output: ((stream: OutputStream, chunk: Buffer) => void) | undefined;

  constructor(private readonly behaviour: Behaviour) {}

  runPhase(
    phase: { name: string },
    onOutput: (stream: OutputStream, chunk: Buffer) => void | Promise<void>,
    onStarted?: () => void,
  ): Promise<PhaseOutcome> {
    this.calls.push(`runPhase ${phase.name}`);
    onStarted?.();
    this.output = (stream, chunk) => void onOutput(stream, chunk);
    return new Promise((resolve) => (this.end = resolve));
  }
  /** The job's process ends by itself. */
  exit(exitCode: number): void {
    this.end?.({ exitCode });
  }
  /** The job prints something. */
  say(text: string): void {
    this.output?.('stdout', Buffer.from(text));
  }
  readFile(): Promise<Buffer | null> {
    return Promise.resolve(null);
  }
  exportWorkspace(): Promise<void> {
    return Promise.resolve();
  }
  listTree(): Promise<[]> {
    return Promise.resolve([]);
  }
  writeControlFile(): Promise<void> {
    return Promise.resolve();
  }
  interrupt(): Promise<void> {
    this.calls.push('interrupt');
    if (this.behaviour === 'honours-sigint') this.end?.({ exitCode: 130 });
    return Promise.resolve();
  }
  kill(): Promise<void> {
    this.calls.push('kill');
    this.end?.({ exitCode: 137 });
    return Promise.resolve();
  }
  destroy(): Promise<void> {
    this.calls.push('destroy');
    return Promise.resolve();
  }
}

const IMAGE: ResolvedImage = {
  reference: 'busybox',
  id: `sha256:${'a'.repeat(64)}`,
  digest: null,
  pulled: false,
  platform: 'linux_amd64',
  searchPath: null,
};

/** An executor whose image is ready at once, or only when the test releases it. */
function fakeExecutor(job: FakeJob, imageGate?: Promise<void>): Executor & { started: number } {
  const executor = {
    sharesHostFiles: true,
    started: 0,
    async prepareImage(_request: unknown, _progress: unknown, signal?: AbortSignal) {
      if (imageGate) {
        await Promise.race([
          imageGate,
          new Promise((_resolve, reject) =>
            signal?.addEventListener('abort', () => reject(signal.reason as Error)),
          ),
        ]);
      }
      return IMAGE;
    },
    startJob() {
      executor.started += 1;
      return Promise.resolve(job);
    },
    removeOrphans: () => Promise.resolve([]),
  };
  return executor;
}

const OPTIONS: RunJobOptions = {
  sourceDir: '/src',
  phases: [{ name: 'task', script: 'work' }],
  image: 'busybox',
  imageSource: '--image',
  imageAccess: null,
  pullPolicy: 'never',
  pullTimeoutMs: 60_000,
  env: {},
  secretEnv: {},
  timeoutMs: 10_000,
  logsTimeoutMs: 600_000,
  graceMs: 3_000,
  network: 'none',
  pidsLimit: 256,
  logLimitBytes: 1024,
  stateDir: null,
  launcherId: 'test/run-job',
};

function begin(
  behaviour: Behaviour,
  options: Partial<RunJobOptions> = {},
  imageGate?: Promise<void>,
  deps: Partial<RunDeps> = {},
) {
  const clock = new FakeClock();
  const job = new FakeJob(behaviour);
  const executor = fakeExecutor(job, imageGate);
  const events: RunEvent[] = [];
  const run = startRun(
    { ...OPTIONS, ...options },
    { executor, emit: (e) => events.push(e), clock, runId: 'r1', ...deps },
  );
  const stopping = (): unknown[] =>
    events
      .filter((e): e is Extract<RunEvent, { type: 'run.stopping' }> => e.type === 'run.stopping')
      .map((e) => [e.reason, e.signal]);
  return { clock, job, executor, events, run, stopping };
}

describe('stopping a run', () => {
  it('run timeout: SIGINT at the timeout, SIGKILL exactly when the grace is over, FAILED 124', async () => {
    const { clock, job, run, stopping } = begin('ignores-sigint');
    await clock.advance(0);
    expect(job.calls).toEqual(['runPhase task']);
    await clock.advance(9_999);
    expect(stopping()).toEqual([]);
    await clock.advance(1);
    expect(stopping()).toEqual([['run-timeout', 'SIGINT']]);
    expect(job.calls).toEqual(['runPhase task', 'interrupt']);
    await clock.advance(2_999);
    expect(job.calls).not.toContain('kill');
    await clock.advance(1);
    expect(stopping()).toEqual([
      ['run-timeout', 'SIGINT'],
      ['run-timeout', 'SIGKILL'],
    ]);
    const summary = await run.result;
    expect(summary).toMatchObject({
      state: 'FAILED',
      exitCode: 124,
      jobExitCode: 137,
      stop: { reason: 'run-timeout', endedBy: 'SIGKILL', graceMs: 3_000 },
    });
    expect(job.calls.at(-1)).toBe('destroy');
  });

  it('a job that honours SIGINT is never killed: STOPPED, 130, ended by SIGINT', async () => {
    const { clock, job, run } = begin('honours-sigint');
    await clock.advance(0);
    run.cancel();
    const summary = await run.result;
    await clock.advance(60_000);
    expect(job.calls).toEqual(['runPhase task', 'interrupt', 'destroy']);
    expect(summary).toMatchObject({
      state: 'STOPPED',
      exitCode: 130,
      stop: { reason: 'canceled', endedBy: 'SIGINT' },
    });
  });

  it('a second cancel skips the rest of the grace period', async () => {
    const { clock, job, run, stopping } = begin('ignores-sigint');
    await clock.advance(0);
    run.cancel();
    await clock.advance(1_000);
    expect(job.calls).not.toContain('kill');
    run.cancel();
    await settle();
    expect(job.calls).toContain('kill');
    expect(stopping()).toEqual([
      ['canceled', 'SIGINT'],
      ['canceled', 'SIGKILL'],
    ]);
    expect(await run.result).toMatchObject({
      state: 'STOPPED',
      stop: { endedBy: 'SIGKILL' },
    });
  });

  it('canceled before anything of the job ran: CANCELED, no container', async () => {
    let release: () => void = () => undefined;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const { clock, executor, run } = begin('honours-sigint', {}, gate);
    await clock.advance(0);
    run.cancel();
    release();
    const summary = await run.result;
    expect(executor.started).toBe(0);
    expect(summary).toMatchObject({ state: 'CANCELED', exitCode: 130, phases: [] });
  });

  it('canceled once its container exists but before the job: CANCELED, as the after_run hooks are told', async () => {
    const clock = new FakeClock();
    const job = new FakeJob('honours-sigint');
    const executor = fakeExecutor(job);
    const events: RunEvent[] = [];
    const holder: { run?: ReturnType<typeof startRun> } = {};
    executor.startJob = () => {
      executor.started += 1;
      holder.run?.cancel(); // The cancel comes while the container starts.
      return Promise.resolve(job);
    };
    holder.run = startRun(
      { ...OPTIONS, afterRun: { name: 'after_run', script: 'echo "$BERTH_RUN_FINAL_STATE"' } },
      { executor, emit: (e) => events.push(e), clock, runId: 'r1' },
    );
    await clock.advance(0);
    expect(job.calls).toEqual(['runPhase after_run']);
    job.exit(0);
    const summary = await holder.run.result;
    expect(summary).toMatchObject({ state: 'CANCELED', exitCode: 130, phases: [] });
    expect(summary.afterRun).toMatchObject({ name: 'after_run', exitCode: 0 });
  });

  it('canceled while its container starts: after_run hooks that hang are killed when the grace is over', async () => {
    const clock = new FakeClock();
    const job = new FakeJob('ignores-sigint');
    const executor = fakeExecutor(job);
    const holder: { run?: ReturnType<typeof startRun> } = {};
    executor.startJob = () => {
      executor.started += 1;
      holder.run?.cancel();
      return Promise.resolve(job);
    };
    holder.run = startRun(
      { ...OPTIONS, afterRun: { name: 'after_run', script: 'sleep infinity' } },
      { executor, emit: () => undefined, clock, runId: 'r1' },
    );
    await clock.advance(0);
    expect(job.calls).toEqual(['runPhase after_run']);
    await clock.advance(2_999);
    expect(job.calls).not.toContain('kill');
    await clock.advance(1);
    expect(job.calls).toContain('kill');
    expect(await holder.run.result).toMatchObject({
      state: 'CANCELED',
      stop: { reason: 'canceled', endedBy: 'SIGKILL' },
    });
  });

  it('logs timeout: silence for the whole interval stops the run; output re-arms it', async () => {
    const { clock, job, run, stopping } = begin('honours-sigint', { logsTimeoutMs: 5_000 });
    await clock.advance(4_000);
    job.say('still here\n');
    await clock.advance(4_999);
    expect(stopping()).toEqual([]);
    await clock.advance(1);
    expect(stopping()).toEqual([['logs-timeout', 'SIGINT']]);
    expect(await run.result).toMatchObject({
      state: 'FAILED',
      exitCode: 124,
      stop: { reason: 'logs-timeout', endedBy: 'SIGINT' },
    });
  });
});

describe('removing the container later (a worker)', () => {
  it('gives the summary before the container is removed, and the removal to the front end', async () => {
    const removals: (() => Promise<void>)[] = [];
    const { clock, job, run } = begin('honours-sigint', {}, undefined, {
      removeLater: (remove) => removals.push(remove),
    });
    await clock.advance(0);
    job.exit(0);
    const summary = await run.result;
    expect(summary).toMatchObject({ state: 'FINISHED', containerName: 'berth-fake' });
    expect(job.calls).toEqual(['runPhase task']);
    expect(removals).toHaveLength(1);
    await removals[0]?.();
    expect(job.calls).toEqual(['runPhase task', 'destroy']);
  });

  it('without it, the container is removed before the summary', async () => {
    const { clock, job, run } = begin('honours-sigint');
    await clock.advance(0);
    job.exit(3);
    expect(await run.result).toMatchObject({ state: 'FAILED', jobExitCode: 3 });
    expect(job.calls).toEqual(['runPhase task', 'destroy']);
  });
});
