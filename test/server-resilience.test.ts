/**
 * The worker path under failure, with real `berth server` and `berth worker` processes and the
 * real engine: the server killed and started again mid-run loses no run and no log line (the
 * worker sends again what did not arrive), and a worker whose connections are cut, before a
 * request reaches the server or after the server handled it, still leaves a complete, ordered
 * log without duplicates and a finished run. And a bad server setting is refused with its value,
 * and a secrets key other than the database's stops the server before it serves anything.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, inject, it } from 'vitest';
import { expectNothingLeftBehind } from './harness/cleanup.js';
import { runBerth, spawnBerth, type BerthProcess } from './harness/cli.js';
import { berthContainers, testEngine } from './harness/engine.js';
import { LABELS } from '../src/executor/executor.js';
import { startApiProxy, type ApiProxy } from './harness/api-proxy.js';
import {
  apiClient,
  jobOutput,
  planStackDir,
  spawnServer,
  startServerProcess,
  type ServerProcess,
} from './harness/berth-server.js';
import { tempDir } from './harness/ownership.js';
import { until } from './harness/until.js';
import { SecretBox } from '../src/server/secrets.js';
import { openStore } from '../src/store/open-store.js';

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
    /** A stack of pool pool-r, on the busybox image, from a directory of this machine. */
    stack: async (id: string, localDir: string): Promise<void> => {
      const created = await client.api('POST', '/stacks', {
        id,
        localDir,
        pool: 'pool-r',
        runnerImage: inject('busyboxImage'),
      });
      expect(created.status, JSON.stringify(created.body)).toBe(201);
    },
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
  it('forgets a worker silent for longer than BERTH_WORKER_FORGET_AFTER, which registers again under its id when it is back', async () => {
    const { proxy, client, token, server, stack } = await start({
      BERTH_WORKER_LEASE_TIMEOUT: '3s',
      BERTH_WORKER_FORGET_AFTER: '4s',
    });
    const { api, settled } = client;
    await stack('forgotten', repo(2, 1, '0'));
    const worker = startWorker(proxy.url, token);
    await worker.waitFor('registered in pool');
    const id = /worker (\S+) registered/.exec(worker.stderr())?.[1] as string;
    const listed = async (): Promise<string[]> =>
      (await api<{ workers: { id: string }[] }>('GET', '/workers')).body.workers.map((w) => w.id);
    expect(await listed()).toEqual([id]);
    // Cut off from the server: the worker is forgotten once silent for the forget time.
    proxy.setRule(() => 'drop-request');
    await until(async () => !(await listed()).includes(id), 'the worker forgotten', 30_000);
    expect(server().stderr()).toMatch(
      new RegExp(
        `worker ${id} of pool pool-r \\(host \\S+\\) forgotten: not heard from since \\S+ \\(BERTH_WORKER_FORGET_AFTER\\); it registers again if it comes back`,
      ),
    );
    // Back: it registers again under the same id, and runs what comes.
    proxy.setRule(() => 'pass');
    await worker.waitFor(
      `worker ${id} registered again in pool pool-r (the server had forgotten this worker: it was not heard from for longer than the server's BERTH_WORKER_FORGET_AFTER)`,
      30_000,
    );
    expect(await listed()).toEqual([id]);
    const run = (await api<{ id: string }>('POST', '/stacks/forgotten/runs', { type: 'task' }))
      .body;
    const done = await settled(run.id, ['FINISHED', 'FAILED']);
    expect(done).toMatchObject({ state: 'FINISHED', worker: id });
  }, 120_000);

  /**
   * A tracked run of a plan stack on a worker that reaches the server through the test's proxy,
   * once its plan waits for confirmation and the worker is done with it.
   */
  async function awaitingConfirmation(stackId: string) {
    const setup = await start();
    const { api, settled } = setup.client;
    await setup.stack(stackId, planStackDir());
    const worker = startWorker(setup.proxy.url, setup.token);
    await worker.waitFor('registered in pool');
    const run = (await api<{ id: string }>('POST', `/stacks/${stackId}/runs`, { type: 'tracked' }))
      .body;
    expect((await settled(run.id, ['UNCONFIRMED', 'FAILED'])).state).toBe('UNCONFIRMED');
    await worker.waitFor(`run ${run.id}: done here, UNCONFIRMED`);
    return { ...setup, worker, run };
  }

  it("stops the download of a confirmed plan's workspace at a cancel: CANCELED, its apply never started", async () => {
    const { proxy, client, worker, run } = await awaitingConfirmation('download');
    const { api, settled, logText } = client;
    // The workspace's download hangs (a server or network that stops answering).
    const download = 'GET /api/v1/worker/runs/:id/workspace';
    proxy.setRule(({ method, path: route }) =>
      `${method} ${route}` === download ? 'hold' : 'pass',
    );
    expect((await api('POST', `/runs/${run.id}/confirm`)).status).toBe(200);
    await until(() => (proxy.held[download] ?? 0) > 0, 'the download hangs');
    expect((await api('POST', `/runs/${run.id}/cancel`)).status).toBe(200);
    // Heard at the worker's next heartbeat (every 5 s), not at the lease's end.
    const ended = await settled(run.id, ['CANCELED', 'FAILED', 'STOPPED', 'FINISHED']);
    expect(ended.state).toBe('CANCELED');
    expect(ended.stateReason).toMatch(
      /^canceled by \S+; worker \S+: stopped: canceled, during the download of its saved workspace; its job never started$/,
    );
    // The stop's own end of the download is no failure of the server's.
    const log = await logText(run.id);
    expect(log).toContain(
      '[berth: stopped: canceled, during the download of its saved workspace; its job never started]\n',
    );
    expect(log).not.toContain('[berth: error:');
    await worker.waitFor(`run ${run.id}: done here, CANCELED`);
  });

  it("keeps a plan's workspace and its apply through a server out of reach, then without its database: both are tried again until it answers", async () => {
    const { proxy, client, token, stack } = await start();
    const { api, settled, logText } = client;
    await stack('hand-off', planStackDir());
    const worker = startWorker(proxy.url, token);
    await worker.waitFor('registered in pool');
    // The first five uploads meet no server (a restart), the first five downloads a server
    // without its database: more than the worker tried before (five uploads, one download).
    const upload = 'PUT /api/v1/worker/runs/:id/workspace';
    const download = 'GET /api/v1/worker/runs/:id/workspace';
    proxy.setRule(({ method, path: route, nth }) => {
      const request = `${method} ${route}`;
      if (request === upload && nth < 5) return 'drop-request';
      if (request === download && nth < 5) return 'unavailable';
      return 'pass';
    });
    const run = (await api<{ id: string }>('POST', '/stacks/hand-off/runs', { type: 'tracked' }))
      .body;
    const planned = await settled(run.id, ['UNCONFIRMED', 'FAILED'], 60_000);
    expect(planned.state, planned.stateReason ?? '').toBe('UNCONFIRMED');
    expect(proxy.cuts.request[upload]).toBe(5);
    expect(worker.stderr()).toMatch(
      new RegExp(
        `run ${run.id}: uploading the saved workspace failed \\(cannot reach the berth server .+\\); trying again in 8\\.0s`,
      ),
    );
    expect((await api('POST', `/runs/${run.id}/confirm`)).status).toBe(200);
    const applied = await settled(run.id, ['FINISHED', 'FAILED', 'CONFIRMED'], 60_000);
    expect(applied.state, applied.stateReason ?? '').toBe('FINISHED');
    expect(proxy.cuts.request[download]).toBe(5);
    expect(worker.stderr()).toContain(
      `run ${run.id}: downloading the saved workspace failed (the berth server at ${proxy.url} answered /worker/runs/${run.id}/workspace: 503 DATABASE_UNAVAILABLE`,
    );
    expect(await logText(run.id)).toMatch(/applied \S+ with /);
    expect(worker.stderr()).not.toContain('a bug in berth');
  }, 120_000);

  it('leaves a confirmed apply whose worker lost the server before its job started to the lease sweep: back in the queue, then applied, never canceled', async () => {
    const { proxy, client, worker, run } = await awaitingConfirmation('left-back');
    const { api, settled, logText } = client;
    // The server out of reach for the worker's heartbeats and the workspace's download (the
    // rest passes, so that the test sees it all through the same server).
    let away = true;
    const cut = ['POST /api/v1/worker/heartbeat', 'GET /api/v1/worker/runs/:id/workspace'];
    proxy.setRule(({ method, path: route }) =>
      away && cut.includes(`${method} ${route}`) ? 'drop-request' : 'pass',
    );
    expect((await api('POST', `/runs/${run.id}/confirm`)).status).toBe(200);
    await worker.waitFor(
      new RegExp(
        `run ${run.id}: this worker could not renew its lease .+; its job never started: the run goes back to the queue once its lease ends`,
      ),
    );
    away = false;
    const applied = await settled(run.id, ['FINISHED', 'FAILED', 'CANCELED', 'STOPPED'], 90_000);
    expect(applied.state, applied.stateReason ?? '').toBe('FINISHED');
    const states = (await api<{ states: { state: string }[] }>('GET', `/runs/${run.id}`)).body
      .states;
    expect(states.map((s) => s.state).filter((s) => s === 'CONFIRMED')).toHaveLength(2);
    expect(await logText(run.id)).toMatch(/applied \S+ with /);
  }, 150_000);

  it('loses no run and no log line when the server is killed and started again mid-run', async () => {
    const { proxy, client, token, restart, stack } = await start();
    const { api, settled, logText } = client;
    await stack('restart', repo(60, 30, '0.2'));
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
    const { proxy, client, token, stack } = await start();
    const { api, settled, logText } = client;
    await stack('cuts', repo(300, 5, '0.3'));
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

  /**
   * A task run of `script` (which prints `started` first) on a worker that reaches the server
   * through the test's proxy, once `started` is in the run's stored log.
   */
  async function startedTask(stackId: string, script: string) {
    const setup = await start();
    const { api, logText } = setup.client;
    const dir = tempDir('berth-stack-');
    mkdirSync(path.join(dir, '.berth'));
    writeFileSync(path.join(dir, '.berth', 'task.sh'), script);
    await setup.stack(stackId, dir);
    const worker = startWorker(setup.proxy.url, setup.token);
    await worker.waitFor('registered in pool');
    const run = (await api<{ id: string }>('POST', `/stacks/${stackId}/runs`, { type: 'task' }))
      .body;
    await until(async () => (await logText(run.id)).includes('started'), 'the job started', 60_000);
    return { ...setup, worker, run };
  }

  it('stops a job whose lease its worker cannot renew before the server gives the run up, and says why in its log', async () => {
    // A 20 s lease: the worker stops the job 15 s after its last renewal and kills it at 16 s;
    // the server gives the run up no sooner than 20 s after it. A job that ignores SIGINT: only
    // the kill before the lease runs out ends it.
    const { proxy, client, server, worker, run } = await startedTask(
      'unrenewed',
      "trap '' INT TERM\necho started\nsleep 300\n",
    );
    // The worker's connections to the server fail from now on; the test still reaches it.
    proxy.setTargets([]);
    try {
      await worker.waitFor(`run ${run.id}: this worker could not renew its lease`);
      const gaveUp = await client.settled(run.id, ['FAILED', 'STOPPED', 'FINISHED']);
      expect(gaveUp.state).toBe('FAILED');
      expect(gaveUp.stateReason).toContain('stopped answering while the run was PERFORMING');
      // When the server gave the run up (another run of the stack could start now), the job was
      // no longer running on the worker.
      const engine = testEngine();
      try {
        const running = (await berthContainers(engine)).filter(
          (c) => c.State === 'running' && c.Labels[LABELS.runId]?.toUpperCase() === run.id,
        );
        expect(running).toEqual([]);
      } finally {
        engine.close();
      }
    } finally {
      // Back in touch (also after a failure above: the worker could not end otherwise).
      proxy.setTargets([server().url]);
    }
    // The worker ships what it held: the reason is in the run's log.
    await until(
      async () =>
        (await client.logText(run.id)).includes('[berth: warning: this worker could not renew'),
      "the worker's warning in the run's log",
      60_000,
    );
    await worker.waitFor(`run ${run.id}: done here`);
  });

  it('does not take heartbeats that hang for a lost server: the job runs to its end', async () => {
    // A 20 s lease, a heartbeat every 5 s: the worker would stop the job 15 s after the last
    // renewal. Two heartbeats are held unanswered; the worker gives up on each (after a twelfth
    // of the lease time) and asks again, instead of waiting for them until the job is
    // stopped.
    const { proxy, client, run } = await startedTask(
      'hung-beat',
      'echo started\nsleep 22\necho done\n',
    );
    let beats = 0;
    proxy.setRule(({ method, path: route }) => {
      if (method !== 'POST' || route !== '/api/v1/worker/heartbeat') return 'pass';
      beats += 1;
      return beats <= 2 ? 'hold' : 'pass';
    });
    const done = await client.settled(run.id, ['FINISHED', 'FAILED', 'STOPPED']);
    expect(done.state, done.stateReason ?? '').toBe('FINISHED');
    expect(proxy.held['POST /api/v1/worker/heartbeat']).toBe(2);
    expect(await client.logText(done.id)).not.toContain('could not renew its lease');
  });

  it('ends a worker told twice to stop while its server does not answer, saying what it could not ship', async () => {
    // It says something as it stops: output that cannot reach the server.
    const { proxy, worker, run } = await startedTask(
      'unreached',
      "trap 'echo stopping; exit 1' INT\necho started\nsleep 300 &\nwait\n",
    );
    // The server stops answering at all (requests held, connections open): the worker's calls
    // would each wait for their timeout.
    proxy.setRule(() => 'hold');
    worker.child.kill('SIGTERM');
    await worker.waitFor('draining: no new runs');
    worker.child.kill('SIGTERM');
    // The job stopped, its last output and its end cannot reach the server: given up, and said.
    await worker.waitFor(
      new RegExp(
        `run ${run.id}: done here, STOPPED \\(log not all shipped: the worker was told to stop at once while the server could not be reached`,
      ),
    );
    expect((await worker.exited).code).not.toBeNull();
  });

  it('fails a plan whose saved workspace the server has no room for, saying so, and keeps nothing of it', async () => {
    if (process.getuid?.() !== 0) throw new Error('this test mounts a small tmpfs: run it as root');
    const blobDir = tempDir('berth-blobs-');
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'berth-test-blobs', blobDir]);
    try {
      const { client, token, server } = await start({ BERTH_BLOB_DIR: blobDir });
      const { api, settled } = client;
      const created = await api('POST', '/stacks', {
        id: 'full',
        // 256 KiB that no compression makes smaller, in a blob store of 64 KiB.
        localDir: planStackDir({ 'large.bin': randomBytes(256 * 1024) }),
        pool: 'pool-r',
        runnerImage: inject('busyboxImage'),
      });
      expect(created.status).toBe(201);
      const worker = startWorker(server().url, token);
      await worker.waitFor('registered in pool');
      const run = (await api<{ id: string }>('POST', '/stacks/full/runs', { type: 'tracked' }))
        .body;
      const failed = await settled(run.id, ['FAILED', 'UNCONFIRMED', 'FINISHED']);
      expect(failed.state).toBe('FAILED');
      expect(failed.stateReason).toBe(
        `the berth server has no space left for the saved workspace of run ${run.id} (ENOSPC): nothing was kept [BERTH_SERVER_STORAGE_FULL]`,
      );
      expect(failed.stateReason).toContain('BERTH_SERVER_STORAGE_FULL');
      // Tried once: the server's disk is not freed in the seconds a retry would wait.
      expect(worker.stderr()).not.toContain('uploading the saved workspace failed');
      // The operator learns where: the directory is in the server's output, not in the run.
      await until(
        () =>
          server()
            .stderr()
            .includes(
              `the blob store ${blobDir} is full (ENOSPC): the saved workspace of run ${run.id} was not kept`,
            ),
        "the server's line about its full blob store",
      );
      expect(readdirSync(blobDir)).toEqual(['.berth-blob-store']);
      await worker.waitFor(`run ${run.id}: done here, FAILED`);
    } finally {
      for (const server of servers.splice(0)) await server.stop();
      execFileSync('umount', [blobDir]);
    }
  });
});

/**
 * A server's data directory whose stack `sealed` has a secret variable TOKEN (sealed with `key`)
 * and a plain one REGION; the server is stopped again. Returns the admin token.
 */
async function sealedStack(dataDir: string, key: string): Promise<string> {
  const server = await startServerProcess(dataDir, { BERTH_SECRETS_KEY: key });
  servers.push(server);
  const admin = server.admin as string;
  const { api } = apiClient(() => server.url, admin);
  expect((await api('POST', '/pools', { id: 'keys', kind: 'private' })).status).toBe(201);
  const stackDir = tempDir('berth-stack-');
  expect(
    (await api('POST', '/stacks', { id: 'sealed', localDir: stackDir, pool: 'keys' })).status,
  ).toBe(201);
  const secret = await api('PUT', '/stacks/sealed/env/TOKEN', { value: 'hunter2', secret: true });
  expect(secret.status).toBe(200);
  expect((await api('PUT', '/stacks/sealed/env/REGION', { value: 'eu-west-1' })).status).toBe(200);
  expect(await server.stop()).toBe(0);
  servers.splice(0);
  return admin;
}

describe('berth server on a full disk', () => {
  it('answers 507 with a stable code while its database has no room, stores nothing half, and goes on once there is room', async () => {
    if (process.getuid?.() !== 0) throw new Error('this test mounts a small tmpfs: run it as root');
    const dataDir = tempDir('berth-server-');
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=4m', 'berth-test-full-db', dataDir]);
    try {
      const server = await startServerProcess(dataDir);
      servers.push(server);
      const { api } = apiClient(() => server.url, server.admin as string);
      // Everything left on the file system taken: the database's next write has no room.
      const filler = path.join(dataDir, 'filler');
      expect(() => writeFileSync(filler, Buffer.alloc(8 * 1024 * 1024))).toThrow(/ENOSPC/);
      const refused = await api<{ code: string; message: string; hint: string }>('POST', '/pools', {
        id: 'roomless',
        kind: 'private',
      });
      expect(refused.status).toBe(507);
      expect(refused.body).toMatchObject({
        code: 'SERVER_STORAGE_FULL',
        message:
          'the berth server has no space left to store this (SQLITE_FULL); nothing was stored',
      });
      expect(refused.body.hint).toContain('frees space where its database and data directory are');
      expect(server.stderr()).toContain(
        'berth server: POST /api/v1/pools failed: no space left (database or disk is full)',
      );
      expect(server.stderr()).not.toMatch(/^\s+at /m);
      rmSync(filler);
      // Nothing half made: the same pool is made whole now, not refused as existing.
      const made = await api('POST', '/pools', { id: 'roomless', kind: 'private' });
      expect(made.status).toBe(201);
    } finally {
      for (const server of servers.splice(0)) await server.stop();
      execFileSync('umount', [dataDir]);
    }
  });
});

describe('berth server settings', () => {
  it('refuses an address another process listens on, naming it, and makes no admin token it would never show', async () => {
    const first = await startServerProcess(tempDir('berth-server-'));
    servers.push(first);
    const address = new URL(first.url).host;
    const dataDir = tempDir('berth-server-');
    const taken = await runBerth(['server', '--listen', address, '--data-dir', dataDir]);
    expect(taken.code).toBe(2);
    expect(taken.stderr).toContain(
      `cannot listen on ${address}: another process listens there (EADDRINUSE) [BERTH_USAGE]`,
    );
    expect(taken.stderr).toContain('give another --listen HOST:PORT');
    expect(taken.stderr).not.toContain('admin token');
    expect(taken.stderr).not.toMatch(/^\s+at /m);
    // The token was never made: the next start on that data directory makes and shows it.
    const next = await startServerProcess(dataDir);
    servers.push(next);
    expect(next.admin).toMatch(/^berth_admin_/);
  });

  it('refuses a worker forget time shorter than the lease, or not a duration, saying which', async () => {
    const args = ['server', '--listen', '127.0.0.1:0', '--data-dir', tempDir('berth-server-')];
    const short = await runBerth(args, {
      BERTH_WORKER_LEASE_TIMEOUT: '60s',
      BERTH_WORKER_FORGET_AFTER: '30s',
    });
    expect(short.code).toBe(2);
    expect(short.stderr).toContain(
      'BERTH_WORKER_FORGET_AFTER=30s is shorter than the lease time (BERTH_WORKER_LEASE_TIMEOUT, 60 s) [BERTH_USAGE]',
    );
    expect(short.stderr).toContain('Set BERTH_WORKER_FORGET_AFTER to the lease time or longer');
    const bad = await runBerth(args, { BERTH_WORKER_FORGET_AFTER: 'a day' });
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('BERTH_WORKER_FORGET_AFTER=a day: ');
    expect(bad.stderr).toContain(
      'Set BERTH_WORKER_FORGET_AFTER to a duration such as 24h, 7d or 90m',
    );
  });

  it('refuses a data or state directory it cannot make, saying where and why, never as a bug (nor hanging on /proc)', async () => {
    const file = path.join(tempDir('berth-not-a-dir-'), 'file');
    writeFileSync(file, '');
    const server = await runBerth(['server', '--listen', '127.0.0.1:0', '--data-dir', file], {});
    expect(server.code).toBe(2);
    expect(server.stderr).toContain(
      `berth: error: cannot create the data directory ${file}: ${file} is a file [BERTH_USAGE]`,
    );
    expect(server.stderr).toContain(
      `in --data-dir (BERTH_DATA_DIR), or move ${file} out of the way.`,
    );
    const worker = await runBerth(['worker', '--server', 'http://127.0.0.1:1'], {
      BERTH_POOL_TOKEN: 'unused',
      BERTH_STATE_DIR: '/proc/berth-test-nope/state',
    });
    expect(worker.code).toBe(2);
    expect(worker.stderr).toContain(
      'cannot create the state directory /proc/berth-test-nope/state: this file system does not let berth create it at /proc/berth-test-nope (ENOENT) [BERTH_USAGE]',
    );
    for (const { stderr } of [server, worker]) {
      expect(stderr).not.toContain('bug in berth');
      expect(stderr).not.toMatch(/\n\s+at /);
    }
  });

  it('says a port fetch clients refuse is one its clients cannot reach: refused by berth up, said by berth server', async () => {
    const up = await runBerth(
      ['up', '--data-dir', tempDir('berth-up-'), '--listen', '127.0.0.1:6666'],
      {},
    );
    expect(up.code).toBe(2);
    expect(up.stderr).toContain(
      `berth: error: --listen "127.0.0.1:6666": port 6666 is one that web browsers and Node's fetch refuse to connect to (a "bad port" of the fetch standard), so this berth up's own worker could never reach its server there [BERTH_USAGE]`,
    );
    expect(up.stderr).toContain('Give another port, e.g. --listen 127.0.0.1:8080.');
    // A server may sit behind a proxy on another port: it starts, and says what it means.
    const server = spawnBerth(
      ['server', '--data-dir', tempDir('berth-server-'), '--listen', '127.0.0.1:6666'],
      {},
    );
    try {
      await server.waitFor('can reach this server only through a proxy on another port');
    } finally {
      server.child.kill('SIGTERM');
      await server.exited;
    }
    // Node's fetch does refuse it: the list is the one the clients apply.
    const reached = await fetch('http://127.0.0.1:6666/').catch((err: Error) => err);
    expect(String((reached as Error).cause)).toContain('bad port');
  });

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

  it('refuses to start with a secrets key other than the one the values of its database were sealed with, and starts again with the right one, the secret intact', async () => {
    const dataDir = tempDir('berth-server-');
    const right = randomBytes(32).toString('base64');
    const admin = await sealedStack(dataDir, right);

    const wrong = await runBerth(['server', '--listen', '127.0.0.1:0', '--data-dir', dataDir], {
      BERTH_SECRETS_KEY: randomBytes(32).toString('base64'),
    });
    expect(wrong.code).toBe(2);
    expect(wrong.stderr).toContain('BERTH_SECRETS_KEY_MISMATCH');
    expect(wrong.stderr).toContain(
      'the secrets key (BERTH_SECRETS_KEY) is not the key recorded for this database',
    );
    expect(wrong.stderr).toContain('Every server on one database needs the same secrets key');
    expect(wrong.stderr).not.toContain('listening on');
    // Without BERTH_SECRETS_KEY and without a key file, no key is made: one would not open them.
    const generated = await runBerth(
      ['server', '--listen', '127.0.0.1:0', '--data-dir', dataDir],
      {},
    );
    expect(generated.code).toBe(2);
    expect(generated.stderr).toContain('BERTH_SECRETS_KEY_MISMATCH');
    expect(generated.stderr).toContain(
      `the secrets key is missing (${dataDir}/secrets.key, or BERTH_SECRETS_KEY), and the database holds values sealed with it`,
    );
    expect(existsSync(path.join(dataDir, 'secrets.key'))).toBe(false);

    const again = await startServerProcess(dataDir, { BERTH_SECRETS_KEY: right });
    servers.push(again);
    const stack = await apiClient(() => again.url, admin).api<{ variables: unknown[] }>(
      'GET',
      '/stacks/sealed',
    );
    expect(stack.body.variables).toContainEqual({ name: 'TOKEN', secret: true });
    // Nothing was sealed again or lost on the way: the stored value opens with the right key.
    const store = await openStore({ dataDir });
    try {
      const variable = (await store.listStackVariables('sealed')).find((v) => v.name === 'TOKEN');
      expect(SecretBox.fromKey(Buffer.from(right, 'base64')).open(variable?.value ?? '')).toBe(
        'hunter2',
      );
    } finally {
      await store.close();
    }
  });

  it('refuses to start with another key than the first server on the database recorded, before any secret exists', async () => {
    const dataDir = tempDir('berth-server-');
    const first = await startServerProcess(dataDir, {
      BERTH_SECRETS_KEY: randomBytes(32).toString('base64'),
    });
    expect(await first.stop()).toBe(0);
    const second = await runBerth(['server', '--listen', '127.0.0.1:0', '--data-dir', dataDir], {
      BERTH_SECRETS_KEY: randomBytes(32).toString('base64'),
    });
    expect(second.code).toBe(2);
    expect(second.stderr).toContain('BERTH_SECRETS_KEY_MISMATCH');
    expect(second.stderr).toContain(
      'the secrets key (BERTH_SECRETS_KEY) is not the key recorded for this database',
    );
    expect(second.stderr).not.toContain('listening on');
    // No key at all: none is made, the record alone is something it could not open.
    const none = await runBerth(['server', '--listen', '127.0.0.1:0', '--data-dir', dataDir], {});
    expect(none.code).toBe(2);
    expect(none.stderr).toContain('BERTH_SECRETS_KEY_MISMATCH');
    expect(none.stderr).toContain('the secrets key is missing');
    expect(existsSync(path.join(dataDir, 'secrets.key'))).toBe(false);
  });

  it('forgets what a lost key sealed with --new-secrets-key, only when the key does not open it, and then holds to the new key', async () => {
    const dataDir = tempDir('berth-server-');
    const lost = randomBytes(32).toString('base64');
    const fresh = randomBytes(32).toString('base64');
    const admin = await sealedStack(dataDir, lost);

    // The switch without a key to use from now on: refused, nothing made, nothing forgotten.
    const keyless = await runBerth(
      ['server', '--listen', '127.0.0.1:0', '--data-dir', dataDir, '--new-secrets-key'],
      {},
    );
    expect(keyless.code).toBe(2);
    expect(keyless.stderr).toContain('BERTH_USAGE');
    expect(keyless.stderr).toContain('--new-secrets-key needs the key to use from now on');
    expect(existsSync(path.join(dataDir, 'secrets.key'))).toBe(false);

    // The right key with the switch: nothing is forgotten.
    const same = await spawnServer(['--data-dir', dataDir, '--new-secrets-key'], {
      BERTH_SECRETS_KEY: lost,
    });
    servers.push(same);
    expect(same.stderr()).toContain('opens what the database holds; nothing was forgotten');
    const kept = await apiClient(() => same.url, admin).api<{ variables: unknown[] }>(
      'GET',
      '/stacks/sealed',
    );
    expect(kept.body.variables).toContainEqual({ name: 'TOKEN', secret: true });
    expect(await same.stop()).toBe(0);
    servers.splice(0);

    // A key file left from before holds yet another key: said, since BERTH_SECRETS_KEY wins.
    writeFileSync(path.join(dataDir, 'secrets.key'), `${randomBytes(32).toString('base64')}\n`, {
      mode: 0o600,
    });
    // Another key with the switch: the secret goes (no one can open it), the plain one stays.
    const renewed = await spawnServer(['--data-dir', dataDir, '--new-secrets-key'], {
      BERTH_SECRETS_KEY: fresh,
    });
    servers.push(renewed);
    expect(renewed.stderr()).toContain(
      "--new-secrets-key: the secrets key (BERTH_SECRETS_KEY) is now the servers' key",
    );
    expect(renewed.stderr()).toContain('1 secret variable(s), to be set again: sealed/TOKEN');
    expect(renewed.stderr()).toContain(
      `warning: ${dataDir}/secrets.key holds another key than BERTH_SECRETS_KEY, which is the one used`,
    );
    const after = await apiClient(() => renewed.url, admin).api<{ variables: unknown[] }>(
      'GET',
      '/stacks/sealed',
    );
    expect(after.body.variables).toEqual([{ name: 'REGION', secret: false, value: 'eu-west-1' }]);
    expect(await renewed.stop()).toBe(0);
    servers.splice(0);

    // From now on the new key is the one, and the lost one is refused.
    const old = await runBerth(['server', '--listen', '127.0.0.1:0', '--data-dir', dataDir], {
      BERTH_SECRETS_KEY: lost,
    });
    expect(old.code).toBe(2);
    expect(old.stderr).toContain('BERTH_SECRETS_KEY_MISMATCH');
    const next = await startServerProcess(dataDir, { BERTH_SECRETS_KEY: fresh });
    servers.push(next);
    expect(next.stderr()).not.toContain('--new-secrets-key');
  });
});
