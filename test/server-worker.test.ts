/**
 * `berth server` and `berth worker` as real processes on the real engine: pools keep their runs
 * to their own workers, a stack's secret reaches the job and never the stored log, and a worker
 * killed mid-run leaves a FAILED run with a reason (within the lease) and a container its next
 * start removes.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import type { EngineClient } from '../src/executor/docker/engine-client.js';
import { expectNothingLeftBehind } from './harness/cleanup.js';
import {
  apiClient,
  startServerProcess,
  type RunBody,
  type ServerProcess,
} from './harness/berth-server.js';
import { spawnBerth, type BerthProcess } from './harness/cli.js';
import { testEngine } from './harness/engine.js';
import { tempDir } from './harness/ownership.js';

let engine: EngineClient;
let server: ServerProcess;
const workers: BerthProcess[] = [];
let client: ReturnType<typeof apiClient>;
function api<T = Record<string, unknown>>(method: string, route: string, body?: unknown) {
  return client.api<T>(method, route, body);
}
const settled: ReturnType<typeof apiClient>['settled'] = (...args) => client.settled(...args);
const createPool = (id: string): Promise<string> => client.createPool(id);

function startWorker(token: string, stateDir: string): BerthProcess {
  const worker = spawnBerth(['worker', '--server', server.url], {
    BERTH_POOL_TOKEN: token,
    BERTH_STATE_DIR: stateDir,
  });
  workers.push(worker);
  return worker;
}

function repo(task: string): string {
  const dir = tempDir('berth-stack-');
  mkdirSync(path.join(dir, '.berth'));
  writeFileSync(path.join(dir, '.berth', 'task.sh'), task);
  return dir;
}

beforeAll(async () => {
  engine = testEngine();
  // The server lives for the whole file (it makes no containers); afterAll ends it.
  server = await startServerProcess(tempDir('berth-server-'), { BERTH_WORKER_LEASE_TIMEOUT: '3s' });
  expect(server.admin).toMatch(/^berth_admin_/);
  client = apiClient(() => server.url, server.admin as string);
});

afterEach(async () => {
  for (const worker of workers.splice(0)) {
    worker.child.kill('SIGTERM');
    await worker.exited;
  }
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
        localDir: repo('echo "run of $TF_VAR_berth_stack_id as $(id -u) with $TOKEN"\n'),
        pool,
        runnerImage: image,
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
      const log = (await api<{ chunks: { text: string }[] }>('GET', `/runs/${run.id}/logs`)).body;
      // The job's output, and berth's warnings about the run as log lines of their own.
      const lines = log.chunks
        .map((c) => c.text)
        .join('')
        .split('\n')
        .filter(Boolean);
      expect(lines.filter((l) => !l.startsWith('[berth: warning: '))).toEqual([
        'run of stack-a as 1983 with *****',
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
    const token = await createPool('pool-kill');
    await api('POST', '/stacks', {
      id: 'stack-kill',
      localDir: repo('echo started; sleep 300\n'),
      pool: 'pool-kill',
      runnerImage: inject('busyboxImage'),
    });
    const stateDir = tempDir('berth-worker-');
    const worker = startWorker(token, stateDir);
    await worker.waitFor('registered in pool');
    const run = (await api<RunBody>('POST', '/stacks/stack-kill/runs', { type: 'task' })).body;
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
    const failed = await settled(run.id, ['FAILED'], 30_000);
    expect(failed.stateReason).toMatch(
      /^worker \S+ stopped answering while the run was PERFORMING/,
    );
    // The same worker, started again, removes the container its dead process left.
    const again = startWorker(token, stateDir);
    await again.waitFor('registered in pool');
    expect(again.stderr()).toMatch(/removed 1 container\(s\) left by a worker that died/);
  });
});
