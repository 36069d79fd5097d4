/**
 * `berth server` and `berth worker` as real processes on the real engine: pools keep their runs
 * to their own workers, a stack's secret reaches the job and never the stored log, and a worker
 * killed mid-run leaves a FAILED run with a reason (within the lease) and a container its next
 * start removes. A tracked run without auto-deploy plans on one worker, waits UNCONFIRMED with its
 * workspace on the server (its worker free, or even dead), and applies on another after a confirm.
 * SIGTERM drains a worker (its run finishes, no new one is taken, its container goes before it
 * exits); a second SIGTERM stops the run it holds.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import type { EngineClient } from '../src/executor/docker/engine-client.js';
import { apiRequest } from './harness/api-request.js';
import { expectNothingLeftBehind } from './harness/cleanup.js';
import { BERTH_BIN, spawnBerth, type BerthProcess } from './harness/cli.js';
import { removeImage, tagImage, testEngine } from './harness/engine.js';
import { ensureBuiltImage } from './harness/images.js';
import {
  planStackDir,
  spawnServer,
  stopWorkers,
  type ServerProcess,
} from './harness/berth-server.js';
import { tempDir } from './harness/ownership.js';
import { until } from './harness/until.js';

let engine: EngineClient;
let server: ServerProcess | undefined;
let url = '';
let admin = '';
let dataDir = '';
const workers: BerthProcess[] = [];

async function api<T = Record<string, unknown>>(
  method: string,
  route: string,
  body?: unknown,
): Promise<{ status: number; body: T }> {
  const res = await apiRequest(url, admin, method, route, body);
  const text = await res.text();
  return { status: res.status, body: (text ? JSON.parse(text) : {}) as T };
}

interface RunBody {
  id: string;
  state: string;
  stateReason: string | null;
  worker: string | null;
}

async function settled(id: string, states: string[], timeoutMs = 60_000): Promise<RunBody> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const run = (await api<RunBody>('GET', `/runs/${id}`)).body;
    if (states.includes(run.state)) return run;
    if (Date.now() > until)
      throw new Error(`run ${id} is still ${run.state} after ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** A run's stored log, as its non-empty lines. */
async function logLines(runId: string): Promise<string[]> {
  const log = (await api<{ chunks: { text: string }[] }>('GET', `/runs/${runId}/logs`)).body;
  return log.chunks
    .map((c) => c.text)
    .join('')
    .split('\n')
    .filter(Boolean);
}

async function createPool(id: string): Promise<string> {
  // The tests' images are this engine's own: the pool runs them without a registry.
  const created = await api<{ token: string }>('POST', '/pools', {
    id,
    kind: 'private',
    pullPolicy: 'never',
  });
  expect(created.status).toBe(201);
  return created.body.token;
}

function startWorker(token: string, stateDir: string): BerthProcess {
  const worker = spawnBerth(['worker', '--server', url], {
    BERTH_POOL_TOKEN: token,
    BERTH_STATE_DIR: stateDir,
  });
  workers.push(worker);
  return worker;
}

/**
 * A task run of stack `stack-NAME` (made with `source`) on a worker of its own pool `pool-NAME`,
 * followed until it ends FAILED; `before` runs once the stack exists (to set a variable, say).
 */
async function failedTaskRun(
  name: string,
  source: { localDir: string; runnerImage: string },
  before?: () => Promise<unknown>,
): Promise<{ run: RunBody; failed: RunBody; worker: BerthProcess }> {
  const token = await createPool(`pool-${name}`);
  await api('POST', '/stacks', { id: `stack-${name}`, ...source, pool: `pool-${name}` });
  await before?.();
  const worker = startWorker(token, tempDir('berth-worker-'));
  await worker.waitFor('registered in pool');
  const run = (await api<RunBody>('POST', `/stacks/stack-${name}/runs`, { type: 'task' })).body;
  const failed = await settled(run.id, ['FAILED', 'FINISHED']);
  expect(failed.state).toBe('FAILED');
  return { run, failed, worker };
}

/**
 * A task run of stack `stack-NAME` that sleeps, on a worker of pool `pool-NAME` with its own state
 * directory, killed (SIGKILL) once the job has printed its first line.
 */
async function killedMidRun(
  name: string,
): Promise<{ token: string; stateDir: string; run: RunBody; worker: BerthProcess }> {
  const token = await createPool(`pool-${name}`);
  await api('POST', '/stacks', {
    id: `stack-${name}`,
    localDir: repo('echo started; sleep 300\n'),
    pool: `pool-${name}`,
    runnerImage: inject('busyboxImage'),
  });
  const stateDir = tempDir('berth-worker-');
  const worker = startWorker(token, stateDir);
  await worker.waitFor('registered in pool');
  const run = (await api<RunBody>('POST', `/stacks/stack-${name}/runs`, { type: 'task' })).body;
  await settled(run.id, ['PERFORMING']);
  // Wait for the job's own output before pulling the plug.
  for (;;) {
    const log = (await api<{ chunks: unknown[] }>('GET', `/runs/${run.id}/logs`)).body;
    if (log.chunks.length > 0) break;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  worker.child.kill('SIGKILL');
  await worker.exited;
  workers.splice(workers.indexOf(worker), 1);
  return { token, stateDir, run, worker };
}

function repo(task: string): string {
  const dir = tempDir('berth-stack-');
  mkdirSync(path.join(dir, '.berth'));
  writeFileSync(path.join(dir, '.berth', 'task.sh'), task);
  return dir;
}

beforeAll(async () => {
  engine = testEngine();
  dataDir = tempDir('berth-server-');
  // The server lives for the whole file (the per-test leak check ends the harness's children);
  // it makes no containers, and afterAll ends it.
  // A lease short enough for the killed worker's test, long enough that a worker slowed down by
  // a loaded machine is not taken for a dead one (heartbeats come every third of it).
  server = await spawnServer(['--data-dir', dataDir], { BERTH_WORKER_LEASE_TIMEOUT: '10s' });
  ({ url } = server);
  admin = server.admin ?? '';
  expect(admin).toMatch(/^berth_admin_/);
});

afterEach(async () => {
  await stopWorkers(workers);
  await expectNothingLeftBehind(engine);
});

afterAll(async () => {
  await server?.stop();
  engine?.close();
});

describe('berth server and berth worker', () => {
  it("runs each pool's runs on its own workers only, with the stack's secret masked in the stored log", async () => {
    const tokenA = await createPool('pool-a');
    const tokenB = await createPool('pool-b');
    const image = inject('busyboxImage');
    for (const [id, pool] of [
      ['stack-a', 'pool-a'],
      ['stack-b', 'pool-b'],
    ] as const) {
      const created = await api('POST', '/stacks', {
        id,
        localDir: repo(
          'echo "run of $TF_VAR_berth_stack_id as $(id -u) with $TOKEN"\n' +
            'echo "triggered by $TF_VAR_berth_run_trigger, labels $TF_VAR_spacelift_stack_labels"\n',
        ),
        pool,
        runnerImage: image,
        labels: ['team-x', pool],
      });
      expect(created.status).toBe(201);
      await api('PUT', `/stacks/${id}/env/TOKEN`, { value: `secret-of-${id}`, secret: true });
    }
    const a1 = startWorker(tokenA, tempDir('berth-worker-'));
    const a2 = startWorker(tokenA, tempDir('berth-worker-'));
    const b1 = startWorker(tokenB, tempDir('berth-worker-'));
    for (const w of [a1, a2, b1]) await w.waitFor('registered in pool');
    const idOf = (w: BerthProcess): string =>
      /worker (\S+) registered/.exec(w.stderr())?.[1] as string;
    const poolA = [idOf(a1), idOf(a2)];
    // Each reported the engine it runs jobs on, as the engine itself names its release.
    const release = (await engine.json<{ Version: string }>('GET', '/version')).Version;
    const registered = (
      await api<{ workers: { id: string; engineVersion: string }[] }>('GET', '/workers')
    ).body.workers;
    for (const w of [a1, a2, b1])
      expect(registered.find((r) => r.id === idOf(w))?.engineVersion).toBe(release);

    const runsA = [];
    for (let i = 0; i < 3; i += 1)
      runsA.push((await api<RunBody>('POST', '/stacks/stack-a/runs', { type: 'task' })).body);
    const runB = (await api<RunBody>('POST', '/stacks/stack-b/runs', { type: 'task' })).body;

    for (const run of runsA) {
      const done = await settled(run.id, ['FINISHED', 'FAILED']);
      expect(done.state, done.stateReason ?? '').toBe('FINISHED');
      const states = (await api<{ states: { state: string }[] }>('GET', `/runs/${run.id}`)).body
        .states;
      expect(states.map((s) => s.state)).toEqual([
        'QUEUED',
        'READY',
        'PREPARING',
        'PERFORMING',
        'FINISHED',
      ]);
      // The job's output, and berth's warnings about the run as log lines of their own.
      const lines = await logLines(run.id);
      expect(lines.filter((l) => !l.startsWith('[berth: warning: '))).toEqual([
        'run of stack-a as 1983 with *****',
        'triggered by admin, labels team-x,pool-a',
      ]);
    }
    const doneB = await settled(runB.id, ['FINISHED', 'FAILED']);
    expect(doneB.state).toBe('FINISHED');
    // Each run records the worker that ran it: pool A's on A's workers, pool B's on B's.
    const listed = (await api<{ runs: (RunBody & { stack: string })[] }>('GET', '/runs?limit=10'))
      .body.runs;
    expect(listed).toHaveLength(4);
    for (const run of listed) {
      if (run.stack === 'stack-a') expect(poolA).toContain(run.worker);
      else expect(run.worker).toBe(idOf(b1));
    }
    for (const w of [a1, a2, b1]) expect(w.stderr()).not.toContain('secret-of-');
  });

  it('fails a run whose worker was killed, within the lease, and the restarted worker removes its container', async () => {
    const { token, stateDir, run, worker } = await killedMidRun('kill');
    const failed = await settled(run.id, ['FAILED']);
    expect(failed.stateReason).toMatch(
      /^worker \S+ stopped answering while the run was PERFORMING/,
    );
    // The operator reads it in the server's output too, and who had registered.
    await until(
      () =>
        server
          ?.stderr()
          .includes(`run ${run.id} of stack stack-kill: FAILED (${failed.stateReason})`) ?? false,
      "the server's line about the failed run",
    );
    const id = /worker (\S+) registered/.exec(worker.stderr())?.[1] as string;
    expect(server?.stderr()).toMatch(
      new RegExp(
        `worker ${id} registered in pool pool-kill: \\S+, berth \\S+, Docker .+, up to 1 run\\(s\\) at once`,
      ),
    );
    // The same worker, started again, removes the container its dead process left, and the
    // checkouts (this run had none: one as a killed run of a repository stack leaves it).
    const left = path.join(stateDir, 'checkouts', 'run-Ab12Cd', 'source');
    mkdirSync(left, { recursive: true });
    writeFileSync(path.join(left, 'main.tf'), '');
    const again = startWorker(token, stateDir);
    await again.waitFor('registered in pool');
    expect(again.stderr()).toMatch(/removed 1 container\(s\) left by a worker that died/);
    expect(again.stderr()).toContain(
      'berth: removed 1 checkout(s) left by an earlier run of this worker that died\n',
    );
    expect(readdirSync(path.join(stateDir, 'checkouts'))).toEqual([]);
  });

  it('fails the runs of a killed worker as soon as it starts again, not at the end of their lease', async () => {
    const { token, stateDir, run } = await killedMidRun('restart');
    const again = startWorker(token, stateDir);
    await again.waitFor('registered in pool');
    const failed = await settled(run.id, ['FAILED']);
    // The registration ended it (the lease's end would say "stopped answering").
    expect(failed.stateReason).toMatch(
      /^worker \S+ started again while the run was PERFORMING: the process that ran it ended without reporting its end/,
    );
    expect(server?.stderr()).toContain(
      `run ${run.id} of stack stack-restart: FAILED (${failed.stateReason})`,
    );
    expect(again.stderr()).toMatch(/removed 1 container\(s\) left by a worker that died/);
    // The restarted worker goes on taking runs of its pool.
    await api('PATCH', '/stacks/stack-restart', { localDir: repo('echo second\n') });
    const next = (await api<RunBody>('POST', '/stacks/stack-restart/runs', { type: 'task' })).body;
    expect((await settled(next.id, ['FINISHED', 'FAILED'])).state).toBe('FINISHED');
  });

  it("fails a run whose stack's directory is not on the worker's machine, saying so", async () => {
    const missing = path.join(tempDir('berth-stack-'), 'not-here');
    const { run, failed, worker } = await failedTaskRun('nodir', {
      localDir: missing,
      runnerImage: inject('busyboxImage'),
    });
    expect(failed.stateReason).toBe(
      `stack stack-nodir's source directory ${missing} does not exist on worker host ${hostname()} [BERTH_WORKSPACE_UNREADABLE]`,
    );
    await worker.waitFor(`run ${run.id}: done here, FAILED (log shipped, nothing left to remove)`);
  });

  it('ends the log of a run that berth failed with the error and its fix, a secret masked in both and in the reason', async () => {
    // The image's name holds the stack's secret: the error quotes it.
    const secret = 'zq7noimagesecret';
    const missing = `localhost/berth-absent-${secret}:v1`;
    const { run, failed, worker } = await failedTaskRun(
      'noimage',
      { localDir: repo('echo never\n'), runnerImage: missing },
      () => api('PUT', '/stacks/stack-noimage/env/HIDDEN', { value: secret, secret: true }),
    );
    const masked = missing.replace(secret, '*****');
    expect(failed.stateReason).toContain(`image ${masked} is not in the local Docker engine`);
    expect(failed.stateReason).toMatch(/\[BERTH_IMAGE_NOT_FOUND\]$/);
    await worker.waitFor(`run ${run.id}: done here, FAILED`);
    const lines = await logLines(run.id);
    expect(lines.slice(-2)).toEqual([
      `[berth: error: ${failed.stateReason}]`,
      `[berth: fix: Pull or build ${masked} on this machine first, or use a pull policy that pulls: --pull if-not-present for berth run; the pool's policy for a worker (\`berth pool update POOL --pull if-not-present\`).]`,
    ]);
    expect(lines.join('\n')).not.toContain(secret);
  });
});

describe('a task run whose source has no task', () => {
  it('fails saying what to add, with a fix of its own rather than a command-line template', async () => {
    const { run, failed, worker } = await failedTaskRun('notask', {
      localDir: tempDir('berth-stack-'),
      runnerImage: inject('busyboxImage'),
    });
    expect(failed.stateReason).toBe(
      "a task run needs .berth/task.sh at the root of the stack's source, and it has none [BERTH_USAGE]",
    );
    await worker.waitFor(`run ${run.id}: done here, FAILED`);
    const lines = await logLines(run.id);
    expect(lines.slice(-2)).toEqual([
      `[berth: error: ${failed.stateReason}]`,
      "[berth: fix: Add .berth/task.sh with the task's shell commands at the root of the stack's source (for a repository: commit and push it; for a stack's --dir: on the workers' machines), then trigger the run again. A task run on a worker runs that file; `berth run DIR -- COMMAND` runs a command of your own on this machine.]",
    ]);
    expect(lines.join('\n')).not.toContain('COMMAND --help');
  });
});

describe('berth worker on SIGTERM', () => {
  async function drainSetup(pool: string, task: string) {
    const token = await createPool(pool);
    for (const id of [`${pool}-1`, `${pool}-2`]) {
      const created = await api('POST', '/stacks', {
        id,
        localDir: repo(task),
        pool,
        runnerImage: inject('busyboxImage'),
      });
      expect(created.status).toBe(201);
    }
    const worker = startWorker(token, tempDir('berth-worker-'));
    await worker.waitFor('registered in pool');
    const first = (await api<RunBody>('POST', `/stacks/${pool}-1/runs`, { type: 'task' })).body;
    await settled(first.id, ['PERFORMING']);
    // The job's own output first: the signal comes while it runs.
    for (;;) {
      const log = (await api<{ chunks: unknown[] }>('GET', `/runs/${first.id}/logs`)).body;
      if (log.chunks.length > 0) break;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    return { worker, first };
  }

  it('drains: finishes the run it holds, takes no new one, removes its container and exits', async () => {
    const { worker, first } = await drainSetup('pool-drain', 'echo started; sleep 5; echo ended\n');
    worker.child.kill('SIGTERM');
    await worker.waitFor('draining: no new runs; 1 running');
    // Triggered after the signal: it waits (READY) for another worker.
    const second = (await api<RunBody>('POST', '/stacks/pool-drain-2/runs', { type: 'task' })).body;
    expect((await worker.exited).code).toBe(0);
    const done = await settled(first.id, ['FINISHED', 'FAILED', 'STOPPED', 'CANCELED']);
    expect(done.state, done.stateReason ?? '').toBe('FINISHED');
    const log = (await api<{ chunks: { text: string }[] }>('GET', `/runs/${first.id}/logs`)).body;
    expect(log.chunks.map((c) => c.text).join('')).toContain('started\nended\n');
    const waiting = (await api<RunBody>('GET', `/runs/${second.id}`)).body;
    expect(waiting).toMatchObject({ state: 'READY', worker: null });
    expect(worker.stderr()).toContain(`run ${first.id}: taken, TASK run of stack `);
    expect(worker.stderr()).toContain(
      `run ${first.id}: done here, FINISHED (log shipped, container removed)`,
    );
    // Nothing left on the engine: afterEach checks.
  });

  it('a second SIGTERM stops the run it holds, which ends with the reason, and the worker exits', async () => {
    const { worker, first } = await drainSetup('pool-stop', 'echo started; sleep 300\n');
    worker.child.kill('SIGTERM');
    await worker.waitFor('draining: no new runs; 1 running');
    worker.child.kill('SIGTERM');
    expect((await worker.exited).code).toBe(0);
    const done = await settled(first.id, ['FINISHED', 'FAILED', 'STOPPED', 'CANCELED'], 30_000);
    expect(done.state).not.toBe('FINISHED');
    // Said as the worker's doing, not as a person's cancel; the log says it as berth run does.
    expect(done.stateReason).toMatch(
      /^stopped: the worker was told to stop at once \(a second SIGTERM or Ctrl-C\), ended by SIG(INT|KILL)$/,
    );
    const log = (await api<{ chunks: { text: string }[] }>('GET', `/runs/${first.id}/logs`)).body;
    expect(log.chunks.map((c) => c.text).join('')).toContain(
      '[berth: stopping (the worker was told to stop at once (a second SIGTERM or Ctrl-C)): SIGINT sent to the job, 30.0s grace before SIGKILL]\n',
    );
    expect(worker.stderr()).toContain(
      `run ${first.id}: done here, ${done.state} (log shipped, container removed)`,
    );
  });
});

describe('plan → confirm → apply across workers', () => {
  // A CUSTOM workflow: the plan leaves random bytes in the workspace and prints their digest;
  // the apply, in another container (maybe on another worker), prints the bytes it finds.
  async function trackedStack(id: string, pool: string): Promise<void> {
    const created = await api('POST', '/stacks', {
      id,
      localDir: planStackDir(),
      pool,
      runnerImage: inject('busyboxImage'),
    });
    expect(created.status).toBe(201);
  }

  async function logText(id: string): Promise<string> {
    const log = (await api<{ chunks: { text: string }[] }>('GET', `/runs/${id}/logs`)).body;
    return log.chunks.map((c) => c.text).join('');
  }

  const stateNames = async (id: string): Promise<string[]> =>
    (await api<{ states: { state: string }[] }>('GET', `/runs/${id}`)).body.states.map(
      (s) => s.state,
    );
  /** The saved workspaces in the server's blob store (its mark file is no workspace). */
  const blobs = (): string[] =>
    readdirSync(path.join(dataDir, 'blobs')).filter((name) => name.endsWith('.workspace'));
  const workerId = (w: BerthProcess): string =>
    /worker (\S+) registered/.exec(w.stderr())?.[1] as string;
  const cli = (args: string[]): BerthProcess =>
    spawnBerth(args, { BERTH_SERVER: url, BERTH_TOKEN: admin });

  it('plans on one worker, survives that worker dying while it waits, and applies on another with the workspace intact', async () => {
    const token = await createPool('pool-confirm');
    await trackedStack('stack-confirm', 'pool-confirm');
    const planStateDir = tempDir('berth-worker-');
    const planner = startWorker(token, planStateDir);
    await planner.waitFor('registered in pool');
    const run = (await api<RunBody>('POST', '/stacks/stack-confirm/runs', { type: 'tracked' }))
      .body;
    const waiting = await settled(run.id, ['UNCONFIRMED', 'FAILED']);
    expect(waiting.state, waiting.stateReason ?? '').toBe('UNCONFIRMED');
    expect(waiting.worker).toBe(workerId(planner));
    expect(blobs()).toEqual([`${run.id}.workspace`]);
    await planner.waitFor(`run ${run.id}: done here, UNCONFIRMED`);
    expect(planner.stderr()).toContain(`run ${run.id}: taken, TRACKED run of stack stack-confirm`);
    const marker = /marker ([0-9a-f]{32})/.exec(await logText(run.id))?.[1];
    expect(marker).toMatch(/^[0-9a-f]{32}$/);
    // The planner (one run at a time) is free at once: it runs a proposed run of the same stack
    // while the plan waits. It keeps no copy of the workspace.
    const proposed = (
      await api<RunBody>('POST', '/stacks/stack-confirm/runs', { type: 'proposed' })
    ).body;
    const proposedDone = await settled(proposed.id, ['FINISHED', 'FAILED']);
    expect(proposedDone.state, proposedDone.stateReason ?? '').toBe('FINISHED');
    expect(proposedDone.worker).toBe(workerId(planner));
    expect((await api<RunBody>('GET', `/runs/${run.id}`)).body.state).toBe('UNCONFIRMED');
    for (const dir of readdirSync(path.join(planStateDir, 'runs')))
      expect(readdirSync(path.join(planStateDir, 'runs', dir))).not.toContain(
        'workspace.tar.sealed',
      );
    // The planner dies while the plan waits: nothing of the run is lost.
    planner.child.kill('SIGKILL');
    await planner.exited;
    workers.splice(workers.indexOf(planner), 1);
    const applyStateDir = tempDir('berth-worker-');
    const applier = startWorker(token, applyStateDir);
    await applier.waitFor('registered in pool');
    expect((await api<RunBody>('POST', `/runs/${run.id}/confirm`)).body.state).toBe('CONFIRMED');
    const done = await settled(run.id, ['FINISHED', 'FAILED']);
    expect(done.state, done.stateReason ?? '').toBe('FINISHED');
    expect(done.worker).toBe(workerId(applier));
    const log = await logText(run.id);
    const kept = /applied planned with ([0-9a-f]{48})\n/.exec(log)?.[1] as string;
    expect(kept).toMatch(/^[0-9a-f]{48}$/);
    expect(createHash('md5').update(kept).digest('hex')).toBe(marker);
    expect(await stateNames(run.id)).toEqual([
      'QUEUED',
      'READY',
      'PREPARING',
      'INITIALIZING',
      'PLANNING',
      'UNCONFIRMED',
      'CONFIRMED',
      'PREPARING_APPLY',
      'APPLYING',
      'FINISHED',
    ]);
    // The ended run's workspace is gone from the server, and the applier kept no copy: its
    // files here go once the run's end is reported, beside whatever the worker does next. (The
    // server removes the workspace just after it stores the end: a look may come in between.)
    await until(() => blobs().length === 0, "the ended run's workspace removed", 10_000);
    expect(applier.stderr()).toContain(
      `run ${run.id}: taken, the apply of its confirmed plan of stack stack-confirm`,
    );
    await applier.waitFor(`run ${run.id}: done here, FINISHED`);
    expect(existsSync(path.join(applyStateDir, 'runs', run.id))).toBe(false);
  });

  it("applies a directory stack's plan with the workflow it was planned with, whatever the directory says since", async () => {
    const token = await createPool('pool-pinned');
    const dir = planStackDir();
    const created = await api('POST', '/stacks', {
      id: 'stack-pinned',
      localDir: dir,
      pool: 'pool-pinned',
      runnerImage: inject('busyboxImage'),
    });
    expect(created.status).toBe(201);
    const worker = startWorker(token, tempDir('berth-worker-'));
    await worker.waitFor('registered in pool');
    const workflowFile = path.join(dir, '.berth', 'workflow.yml');
    const planned = readFileSync(workflowFile, 'utf8');
    const changed = planned.replace(/^apply: .*$/m, 'apply: echo CHANGED-AFTER-PLAN');
    expect(changed).not.toBe(planned);
    const tracked = async (edit?: () => void): Promise<string> => {
      const run = (await api<RunBody>('POST', '/stacks/stack-pinned/runs', { type: 'tracked' }))
        .body;
      const waiting = await settled(run.id, ['UNCONFIRMED', 'FAILED']);
      expect(waiting.state, waiting.stateReason ?? '').toBe('UNCONFIRMED');
      edit?.();
      expect((await api<RunBody>('POST', `/runs/${run.id}/confirm`)).body.state).toBe('CONFIRMED');
      const done = await settled(run.id, ['FINISHED', 'FAILED']);
      expect(done.state, done.stateReason ?? '').toBe('FINISHED');
      return logText(run.id);
    };
    // Changed while the plan waits for its review: the confirmed apply is the planned one.
    const first = await tracked(() => writeFileSync(workflowFile, changed));
    expect(first).toMatch(/applied planned with [0-9a-f]{48}\n/);
    expect(first).not.toContain('CHANGED-AFTER-PLAN');
    // The next run plans with the directory as it is now, and applies that.
    const second = await tracked();
    expect(second).toContain('CHANGED-AFTER-PLAN\n');
    expect(second).not.toContain('applied planned with');
  });

  it('a tracked run canceled mid-plan keeps its stack locked until the worker has stopped the job, grace and all', async () => {
    const token = await createPool('pool-cancel');
    // The plan takes its time to stop: SIGINT starts a clean-up of 8 s, longer than two of the
    // worker's heartbeats (a third of the 10 s lease) and within the 30 s grace: the heartbeats
    // that name the stopping run again must not cut the grace short.
    const workflow = [
      'init: echo init-done',
      "plan: trap 'echo got-int; sleep 8; echo cleaned-up; exit 130' INT; echo planning; while :; do sleep 0.1; done",
      "showPlan: printf '{}'",
      'apply: echo applied',
    ].join('\n');
    const created = await api('POST', '/stacks', {
      id: 'stack-cancel',
      localDir: planStackDir({ '.berth/workflow.yml': `${workflow}\n` }),
      pool: 'pool-cancel',
      runnerImage: inject('busyboxImage'),
    });
    expect(created.status).toBe(201);
    const worker = startWorker(token, tempDir('berth-worker-'));
    await worker.waitFor('registered in pool');
    const first = (await api<RunBody>('POST', '/stacks/stack-cancel/runs', { type: 'tracked' }))
      .body;
    await until(
      async () => (await logText(first.id)).includes('planning\n'),
      'the plan running',
      60_000,
    );
    const second = (await api<RunBody>('POST', '/stacks/stack-cancel/runs', { type: 'tracked' }))
      .body;
    expect(second.state).toBe('QUEUED');
    const cancel = cli(['runs', 'cancel', first.id]);
    expect((await cancel.exited).code).toBe(0);
    expect(cancel.stdout()).toMatch(
      new RegExp(`^${first.id}  TRACKED  PLANNING .* \\(stopping: canceled by \\S+\\)\n$`),
    );
    expect(cancel.stderr()).toContain(
      `berth: worker ${workerId(worker)} hears of it within a heartbeat, stops the run (its job, if started: SIGINT, then SIGKILL after its 30 s grace) and reports its end; the stack stays locked until then.`,
    );
    // Asked again while it stops: said to change nothing.
    const again = cli(['runs', 'cancel', first.id]);
    expect((await again.exited).code).toBe(0);
    expect(again.stderr()).toMatch(
      new RegExp(
        `berth: run ${first.id} was already asked to stop at \\S+ \\(canceled by \\S+\\); asking again changes nothing: the worker stops it, or the run ends when its lease runs out`,
      ),
    );
    // While the job stops, the stack's next tracked run waits: never two at once.
    let ended: RunBody;
    const deadline = Date.now() + 90_000;
    for (;;) {
      ended = (await api<RunBody>('GET', `/runs/${first.id}`)).body;
      if (Date.now() > deadline) throw new Error(`run ${first.id} is still ${ended.state}`);
      if (['STOPPED', 'FAILED', 'FINISHED', 'CANCELED'].includes(ended.state)) break;
      expect((await api<RunBody>('GET', `/runs/${second.id}`)).body.state).toBe('QUEUED');
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    expect(ended.state, ended.stateReason ?? '').toBe('STOPPED');
    expect(ended.stateReason).toMatch(
      new RegExp(
        `^canceled by \\S+; worker ${workerId(worker)}: stopped: canceled, ended by SIGINT$`,
      ),
    );
    expect(await logText(first.id)).toMatch(/got-int\n(.*\n)*cleaned-up\n/);
    // Then the next one runs; canceled in turn, it ends the same way.
    await until(
      async () => (await logText(second.id)).includes('planning\n'),
      'the next plan',
      60_000,
    );
    expect((await api<RunBody>('POST', `/runs/${second.id}/cancel`)).body.state).toBe('PLANNING');
    expect((await settled(second.id, ['STOPPED', 'FAILED', 'FINISHED'], 60_000)).state).toBe(
      'STOPPED',
    );
  });

  it('follows a trigger to UNCONFIRMED, says how to confirm, and follows the apply to its end', async () => {
    const token = await createPool('pool-follow');
    await trackedStack('stack-follow', 'pool-follow');
    const worker = startWorker(token, tempDir('berth-worker-'));
    await worker.waitFor('registered in pool');
    const follow = cli(['stack', 'trigger', 'stack-follow', '--type', 'tracked', '--follow']);
    await follow.waitFor(/apply it with `berth runs confirm (\S+)`/);
    const id = /berth runs confirm (\S+)`/.exec(follow.stderr())?.[1] as string;
    expect(follow.stderr()).toContain('(1 to add, 0 to change, 0 to destroy)');
    const confirm = cli(['runs', 'confirm', id]);
    expect((await confirm.exited).code).toBe(0);
    expect(confirm.stdout()).toContain('CONFIRMED');
    const { code } = await follow.exited;
    expect(code, follow.stderr()).toBe(0);
    expect(follow.stdout()).toMatch(/applied planned with [0-9a-f]{48}\n/);
    expect(follow.stderr()).toContain(
      `run ${id} FINISHED (plan: 1 to add, 0 to change, 0 to destroy)\n`,
    );
  });

  it.each(['answered y', 'confirmed elsewhere'] as const)(
    'asks on a terminal whether to apply, and applies when %s',
    async (how) => {
      const pool = `pool-ask-${how === 'answered y' ? 'y' : 'api'}`;
      const stack = `stack-${pool}`;
      const token = await createPool(pool);
      await trackedStack(stack, pool);
      const worker = startWorker(token, tempDir('berth-worker-'));
      await worker.waitFor('registered in pool');
      // script(1) gives the command a terminal for its standard input.
      const command = [process.execPath, BERTH_BIN, 'stack', 'trigger', stack]
        .concat(['--type', 'tracked', '--follow'])
        .join(' ');
      const asking = spawn('script', ['-qec', command, '/dev/null'], {
        env: { ...process.env, NO_COLOR: '1', BERTH_SERVER: url, BERTH_TOKEN: admin },
        stdio: ['pipe', 'pipe', 'pipe'],
      });
      let said = '';
      asking.stdout.on('data', (chunk: Buffer) => (said += chunk.toString()));
      // 'close', not 'exit': the output is read to its end first.
      const exited = new Promise<number | null>((resolve) => asking.on('close', resolve));
      try {
        for (;;) {
          if (said.includes('Apply this plan? [y/N]')) break;
          if (asking.exitCode !== null) throw new Error(`script ended early: ${said}`);
          await new Promise((resolve) => setTimeout(resolve, 100));
        }
        expect(said).toContain('(1 to add, 0 to change, 0 to destroy)');
        const id = /run (\S+) is UNCONFIRMED/.exec(said)?.[1] as string;
        if (how === 'answered y') asking.stdin.write('y\n');
        else expect((await api<RunBody>('POST', `/runs/${id}/confirm`)).status).toBe(200);
        expect(await exited, said).toBe(0);
        expect(said).toMatch(/applied planned with [0-9a-f]{48}/);
        expect(said).toContain(`run ${id} FINISHED`);
        if (how === 'confirmed elsewhere') expect(said).toContain('the run was decided elsewhere');
      } finally {
        if (asking.exitCode === null) asking.kill('SIGKILL');
      }
    },
  );

  it("discard deletes the waiting workspace, which another pool's worker could not download", async () => {
    const token = await createPool('pool-discard');
    const otherToken = await createPool('pool-other');
    await trackedStack('stack-discard', 'pool-discard');
    const worker = startWorker(token, tempDir('berth-worker-'));
    await worker.waitFor('registered in pool');
    const run = (await api<RunBody>('POST', '/stacks/stack-discard/runs', { type: 'tracked' }))
      .body;
    expect((await settled(run.id, ['UNCONFIRMED', 'FAILED'])).state).toBe('UNCONFIRMED');
    expect(existsSync(path.join(dataDir, 'blobs', `${run.id}.workspace`))).toBe(true);
    // A worker of another pool, with its own valid token, asks for the workspace.
    const other = await fetch(`${url}/api/v1/worker/register`, {
      method: 'POST',
      headers: { authorization: `Bearer ${otherToken}`, 'content-type': 'application/json' },
      body: JSON.stringify({ host: 'h', berthVersion: '0', engineVersion: '0', concurrency: 1 }),
    });
    const otherId = ((await other.json()) as { workerId: string }).workerId;
    const stolen = await fetch(
      `${url}/api/v1/worker/runs/${run.id}/workspace?workerId=${otherId}`,
      { headers: { authorization: `Bearer ${otherToken}` } },
    );
    expect(stolen.status).toBe(404);
    expect(((await stolen.json()) as { code: string }).code).toBe('NOT_FOUND');
    const discard = cli(['runs', 'discard', run.id]);
    expect((await discard.exited).code).toBe(0);
    expect(discard.stdout()).toContain('DISCARDED');
    expect(existsSync(path.join(dataDir, 'blobs', `${run.id}.workspace`))).toBe(false);
    expect((await api<RunBody>('GET', `/runs/${run.id}`)).body.state).toBe('DISCARDED');
  });

  it('does not apply a plan in another image than the one it was planned in', async () => {
    const token = await createPool('pool-moved');
    const moving = 'berth-test/confirm-moving';
    await tagImage(engine, inject('busyboxImage'), moving, 'v1');
    try {
      const created = await api('POST', '/stacks', {
        id: 'stack-moved',
        localDir: planStackDir(),
        pool: 'pool-moved',
        runnerImage: `${moving}:v1`,
      });
      expect(created.status).toBe(201);
      const worker = startWorker(token, tempDir('berth-worker-'));
      await worker.waitFor('registered in pool');
      const run = (await api<RunBody>('POST', '/stacks/stack-moved/runs', { type: 'tracked' }))
        .body;
      expect((await settled(run.id, ['UNCONFIRMED', 'FAILED'])).state).toBe('UNCONFIRMED');
      // The tag moves to other content while the plan waits.
      const other = await ensureBuiltImage(
        engine,
        'confirm-moved',
        `FROM ${inject('busyboxImage')}\nLABEL berth.test=moved\n`,
      );
      await tagImage(engine, other, moving, 'v1');
      await api('POST', `/runs/${run.id}/confirm`);
      const failed = await settled(run.id, ['FINISHED', 'FAILED']);
      expect(failed.state).toBe('FAILED');
      expect(failed.stateReason).toContain('BERTH_APPLY_IMAGE_CHANGED');
      expect(await logText(run.id)).not.toContain('applied planned');
      await until(() => blobs().length === 0, "the failed run's workspace removed", 10_000);
    } finally {
      await removeImage(engine, `${moving}:v1`);
    }
  });
});
