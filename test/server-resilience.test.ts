/**
 * The worker path under failure, with real `berth server` and `berth worker` processes and the
 * real engine: the server killed and started again mid-run loses no run and no log line (the
 * worker sends again what did not arrive), and a worker whose connections are cut, before a
 * request reaches the server or after the server handled it, still leaves a complete, ordered
 * log without duplicates and a finished run. And a bad server setting is refused with its value.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, inject, it } from 'vitest';
import { expectNothingLeftBehind } from './harness/cleanup.js';
import { runBerth, spawnBerth, type BerthProcess } from './harness/cli.js';
import { testEngine } from './harness/engine.js';
import { startApiProxy, type ApiProxy } from './harness/api-proxy.js';
import {
  apiClient,
  jobOutput,
  startServerProcess,
  type ServerProcess,
} from './harness/berth-server.js';
import { tempDir } from './harness/ownership.js';

const servers: ServerProcess[] = [];
const workers: BerthProcess[] = [];
const proxies: ApiProxy[] = [];

afterEach(async () => {
  for (const worker of workers.splice(0)) {
    worker.child.kill('SIGTERM');
    await worker.exited;
  }
  // The proxy first: a long poll it still holds would keep a stopping server waiting.
  for (const proxy of proxies.splice(0)) await proxy.stop();
  for (const server of servers.splice(0)) await server.stop();
  const engine = testEngine();
  try {
    await expectNothingLeftBehind(engine);
  } finally {
    engine.close();
  }
});

/** A stack source whose task prints `lines` numbered lines in `bursts`, pausing between them. */
function repo(lines: number, bursts: number, pause: string): string {
  const dir = tempDir('berth-stack-');
  mkdirSync(path.join(dir, '.berth'));
  const per = lines / bursts;
  writeFileSync(
    path.join(dir, '.berth', 'task.sh'),
    `i=1\nwhile [ $i -le ${lines} ]; do echo "line-$i"; [ $((i % ${per})) -eq 0 ] && sleep ${pause}; i=$((i + 1)); done\n`,
  );
  return dir;
}

function expectedLines(count: number): string {
  return Array.from({ length: count }, (_, i) => `line-${i + 1}\n`).join('');
}

async function start(env: Record<string, string> = {}) {
  const dataDir = tempDir('berth-server-');
  const settings = { BERTH_WORKER_LEASE_TIMEOUT: '20s', ...env };
  const first = await startServerProcess(dataDir, settings);
  servers.push(first);
  const proxy = await startApiProxy([first.url]);
  proxies.push(proxy);
  let current = first;
  const client = apiClient(() => current.url, first.admin as string);
  const token = await client.createPool('pool-r');
  return {
    proxy,
    client,
    token,
    server: () => current,
    /** Kills the server (a crash) and starts it again on the same data; the proxy follows. */
    restart: async (): Promise<void> => {
      await current.kill();
      servers.splice(servers.indexOf(current), 1);
      current = await startServerProcess(dataDir, settings);
      servers.push(current);
      proxy.setTargets([current.url]);
    },
  };
}

function startWorker(url: string, token: string): BerthProcess {
  const worker = spawnBerth(['worker', '--server', url], {
    BERTH_POOL_TOKEN: token,
    BERTH_STATE_DIR: tempDir('berth-worker-'),
  });
  workers.push(worker);
  return worker;
}

describe('the worker path when the server or the network fails', () => {
  it('loses no run and no log line when the server is killed and started again mid-run', async () => {
    const { proxy, client, token, restart } = await start();
    const { api, settled, logText } = client;
    expect(
      (
        await api('POST', '/stacks', {
          id: 'restart',
          localDir: repo(60, 30, '0.2'),
          pool: 'pool-r',
          runnerImage: inject('busyboxImage'),
        })
      ).status,
    ).toBe(201);
    const worker = startWorker(proxy.url, token);
    await worker.waitFor('registered in pool');
    // One worker slot: the second run waits in the queue while the server is gone.
    const first = (await api<{ id: string }>('POST', '/stacks/restart/runs', { type: 'task' }))
      .body;
    const second = (await api<{ id: string }>('POST', '/stacks/restart/runs', { type: 'task' }))
      .body;
    for (;;) {
      const log = await logText(first.id);
      if ((log.match(/line-/g) ?? []).length >= 6) break;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    const before = await api<{ state: string }>('GET', `/runs/${first.id}`);
    expect(before.body.state).toBe('PERFORMING');
    expect((await api<{ state: string }>('GET', `/runs/${second.id}`)).body.state).toBe('READY');
    await restart();

    const done = await settled(first.id, ['FINISHED', 'FAILED', 'STOPPED']);
    expect(done.state, done.stateReason ?? '').toBe('FINISHED');
    expect(jobOutput(await logText(first.id))).toBe(expectedLines(60));
    const next = await settled(second.id, ['FINISHED', 'FAILED', 'STOPPED']);
    expect(next.state, next.stateReason ?? '').toBe('FINISHED');
    expect(jobOutput(await logText(second.id))).toBe(expectedLines(60));
  });

  it('keeps the log complete, ordered and without duplicates when connections are cut', async () => {
    const { proxy, client, token } = await start();
    const { api, settled, logText } = client;
    await api('POST', '/stacks', {
      id: 'cuts',
      localDir: repo(300, 5, '0.3'),
      pool: 'pool-r',
      runnerImage: inject('busyboxImage'),
    });
    // Log batches and state reports cut after the server stored them (the worker cannot know)
    // and before they arrived, the first time and again later.
    proxy.setRule(({ method, path: route, nth }) => {
      if (method !== 'POST' || !/^\/api\/v1\/worker\/runs\/:id\/(logs|state)$/.test(route))
        return 'pass';
      return nth % 3 === 0 && nth < 6
        ? 'drop-answer'
        : nth % 3 === 1 && nth < 6
          ? 'drop-request'
          : 'pass';
    });
    const worker = startWorker(proxy.url, token);
    await worker.waitFor('registered in pool');
    const run = (await api<{ id: string }>('POST', '/stacks/cuts/runs', { type: 'task' })).body;
    const done = await settled(run.id, ['FINISHED', 'FAILED', 'STOPPED']);
    expect(done.state, done.stateReason ?? '').toBe('FINISHED');
    expect(jobOutput(await logText(run.id))).toBe(expectedLines(300));
    const states = (await api<{ states: { state: string }[] }>('GET', `/runs/${run.id}`)).body
      .states;
    expect(states.map((s) => s.state)).toEqual([
      'QUEUED',
      'READY',
      'PREPARING',
      'PERFORMING',
      'FINISHED',
    ]);
    // The cuts did happen, of both kinds, to logs and to reports.
    for (const kind of ['answer', 'request'] as const) {
      expect(proxy.cuts[kind]['POST /api/v1/worker/runs/:id/logs']).toBeGreaterThan(0);
    }
    expect(proxy.cuts.answer['POST /api/v1/worker/runs/:id/state']).toBeGreaterThan(0);
  });
});

describe('berth server settings', () => {
  it('refuses a database pool size that is not a number of connections, saying which', async () => {
    const result = await runBerth(
      ['server', '--listen', '127.0.0.1:0', '--data-dir', tempDir('berth-server-')],
      { BERTH_DATABASE_POOL_SIZE: 'lots' },
    );
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('BERTH_USAGE');
    expect(result.stderr).toContain(
      'BERTH_DATABASE_POOL_SIZE="lots" is not a number of connections',
    );
  });
});
