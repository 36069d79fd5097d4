/**
 * `berth worker` when things go wrong, with real `berth server` and `berth worker` processes: a
 * start-up mistake (wrong token, a person's token, no server, https on a plain port, no scheme,
 * the API's or the web page's path in the URL, a web page that is not berth's) is said with its code, the server's address and the fix, never as a
 * bug in berth; an outage of the server is said once (with the address and the cause) and its end
 * too; a rotated pool token stops the worker (its run stopped, a non-zero exit, no retries); and
 * the worker list shows a worker that left or died as OFFLINE.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import type { EngineClient } from '../src/executor/docker/engine-client.js';
import {
  apiClient,
  startServerProcess,
  stopWorkers,
  type ServerProcess,
} from './harness/berth-server.js';
import { expectNothingLeftBehind } from './harness/cleanup.js';
import { runBerth, spawnBerth, type BerthProcess } from './harness/cli.js';
import { testEngine } from './harness/engine.js';
import { tempDir } from './harness/ownership.js';
import { freePort } from './harness/registry.js';
import { apiRequest } from './harness/api-request.js';
import { until } from './harness/until.js';
import { startWebPage } from './harness/web-page.js';

let engine: EngineClient;
let server: ServerProcess | undefined;
let url = '';
let admin = '';
let dataDir = '';
const workers: BerthProcess[] = [];
/** The admin's client (its token is known once the server started). */
function admins() {
  return apiClient(() => url, admin);
}

function startWorker(token: string, stateDir: string, server = url): BerthProcess {
  const worker = spawnBerth(['worker', '--server', server], {
    BERTH_POOL_TOKEN: token,
    BERTH_STATE_DIR: stateDir,
  });
  workers.push(worker);
  return worker;
}

interface WorkerRow {
  id: string;
  status: string;
  drained: boolean;
}

async function statusOf(id: string): Promise<string | undefined> {
  const listed = await admins().api<{ workers: WorkerRow[] }>('GET', '/workers');
  return listed.body.workers.find((w) => w.id === id)?.status;
}

function untilStatus(id: string, status: string): Promise<void> {
  return until(async () => (await statusOf(id)) === status, `worker ${id} listed ${status}`);
}

function idOf(worker: BerthProcess): string {
  return /worker (\S+) registered/.exec(worker.stderr())?.[1] as string;
}

/** What a start-up error must never look like: a bug in berth with a stack trace. */
function expectNoBug(stderr: string): void {
  expect(stderr).not.toContain('BERTH_INTERNAL');
  expect(stderr).not.toContain('This is a bug in berth');
  expect(stderr).not.toMatch(/^\s+at /m);
}

beforeAll(async () => {
  engine = testEngine();
  dataDir = tempDir('berth-server-');
  server = await startServerProcess(dataDir, { BERTH_WORKER_LEASE_TIMEOUT: '10s' });
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

describe('berth worker start-up mistakes', () => {
  it('a pool token the server does not know: refused, with the variable to set', async () => {
    const worker = startWorker('berth_pool_nope', tempDir('berth-worker-'));
    const { code } = await worker.exited;
    expect(code).toBe(2);
    const stderr = worker.stderr();
    expect(stderr).toContain(`the berth server at ${url} does not accept this worker's pool token`);
    expect(stderr).toContain('401 UNAUTHENTICATED');
    expect(stderr).toContain('[BERTH_SERVER_REFUSED]');
    expect(stderr).toContain('BERTH_POOL_TOKEN');
    expect(stderr).toContain('berth pool rotate-token POOL');
    expectNoBug(stderr);
  });

  it("the admin token as the pool token: refused, saying it is not a pool's token", async () => {
    const worker = startWorker(admin, tempDir('berth-worker-'));
    expect((await worker.exited).code).toBe(2);
    const stderr = worker.stderr();
    expect(stderr).toContain('refused BERTH_POOL_TOKEN: it is not a pool token');
    expect(stderr).toContain('403 FORBIDDEN');
    expect(stderr).toContain('[BERTH_SERVER_REFUSED]');
    expect(stderr).not.toContain(admin);
    expectNoBug(stderr);
  });

  it('a runtime or a network the engine does not have: refused before it registers (every run would fail)', async () => {
    const workersBefore = (
      await runBerth(['worker', 'list', '--json'], { BERTH_SERVER: url, BERTH_TOKEN: admin })
    ).stdout;
    for (const [variable, value, said] of [
      [
        'BERTH_WORKER_RUNTIME',
        'no-such-runtime',
        'BERTH_WORKER_RUNTIME=no-such-runtime: the Docker engine has no runtime of that name (it has ',
      ],
      [
        'SPACELIFT_WORKER_NETWORK',
        'berth-test-no-such-network',
        'SPACELIFT_WORKER_NETWORK=berth-test-no-such-network: the Docker engine has no network of that name, so every run would fail',
      ],
    ] as const) {
      const worker = spawnBerth(['worker', '--server', url], {
        BERTH_POOL_TOKEN: 'berth_pool_unused',
        BERTH_STATE_DIR: tempDir('berth-worker-'),
        [variable]: value,
      });
      workers.push(worker);
      expect((await worker.exited).code).toBe(2);
      expect(worker.stderr()).toContain(said);
      expect(worker.stderr()).toContain('[BERTH_USAGE]');
      expectNoBug(worker.stderr());
    }
    // Neither reached the server.
    expect(
      (await runBerth(['worker', 'list', '--json'], { BERTH_SERVER: url, BERTH_TOKEN: admin }))
        .stdout,
    ).toBe(workersBefore);
  });

  it('no server at the address: unreachable, naming the address and the cause', async () => {
    const nowhere = `http://127.0.0.1:${await freePort()}`;
    const worker = startWorker('berth_pool_x', tempDir('berth-worker-'), nowhere);
    expect((await worker.exited).code).toBe(4);
    const stderr = worker.stderr();
    expect(stderr).toContain(`cannot reach the berth server at ${nowhere} (ECONNREFUSED`);
    expect(stderr).toContain('[BERTH_SERVER_UNREACHABLE]');
    expectNoBug(stderr);
  });

  it('https:// on the plain HTTP port: unreachable, saying to use http://', async () => {
    const https = url.replace(/^http:/, 'https:');
    const worker = startWorker('berth_pool_x', tempDir('berth-worker-'), https);
    expect((await worker.exited).code).toBe(4);
    const stderr = worker.stderr();
    expect(stderr).toContain(`cannot reach the berth server at ${https} (`);
    expect(stderr).toContain(
      'no TLS on that port; if the server listens on plain HTTP, use http://',
    );
    expect(stderr).toContain('[BERTH_SERVER_UNREACHABLE]');
    expectNoBug(stderr);
  });

  it('an address without a scheme: a usage error with an example', async () => {
    const bare = url.replace(/^http:\/\//, '');
    const worker = startWorker('berth_pool_x', tempDir('berth-worker-'), bare);
    expect((await worker.exited).code).toBe(2);
    const stderr = worker.stderr();
    expect(stderr).toContain(`--server "${bare}" is not an http:// or https:// URL`);
    expect(stderr).toContain('[BERTH_USAGE]');
    expect(stderr).toContain('--server http://');
    expectNoBug(stderr);
  });

  it("the API's path in the address is taken; another path is said to be no berth server", async () => {
    const token = await admins().createPool('pool-path');
    const worker = startWorker(token, tempDir('berth-worker-'), `${url}/api/v1/`);
    await worker.waitFor('registered in pool pool-path');
    const wrong = startWorker(token, tempDir('berth-worker-'), `${url}/berth`);
    expect((await wrong.exited).code).toBe(2);
    expect(wrong.stderr()).toContain(
      `${url}/berth answered but is not the address of a berth server's API`,
    );
    expect(wrong.stderr()).toContain('without a path');
    expectNoBug(wrong.stderr());
  });

  it("the web page's address is taken; a web page that is not berth's is said to be one", async () => {
    const token = await admins().createPool('pool-web');
    const worker = startWorker(token, tempDir('berth-worker-'), `${url}/ui/runs/01JRUN`);
    await worker.waitFor('registered in pool pool-web');
    const page = await startWebPage();
    try {
      const wrong = startWorker(token, tempDir('berth-worker-'), page.url);
      expect((await wrong.exited).code).toBe(2);
      expect(wrong.stderr()).toContain(`${page.url} answered 200 with text/html`);
      expect(wrong.stderr()).toContain('[BERTH_SERVER_ANSWER_UNEXPECTED]');
      expectNoBug(wrong.stderr());
    } finally {
      await page.close();
    }
  });
});

describe('berth worker once running', () => {
  it('says an outage of the server once, with its address and cause, and when it answers again', async () => {
    const token = await admins().createPool('pool-outage');
    const worker = startWorker(token, tempDir('berth-worker-'));
    await worker.waitFor('registered in pool pool-outage');
    const port = new URL(url).port;
    await server?.stop();
    // The lease waiting when the server stopped is answered 503 (the server closing) or cut
    // (ECONNRESET), the next ones refused (ECONNREFUSED): the first is said, naming the server.
    await worker.waitFor(
      new RegExp(
        `cannot lease from the server: (cannot reach the berth server at ${url} \\([A-Z_]+: |the berth server at ${url} answered /worker/lease: 503 )`,
      ),
    );
    await worker.waitFor('cannot send a heartbeat to the server: cannot reach the berth server');
    expect(worker.stderr()).toMatch(
      /cannot send a heartbeat to the server: .+; trying again every 3 s, every second while it holds runs \(said again once a minute while it lasts\)/,
    );
    server = await startServerProcess(
      dataDir,
      { BERTH_WORKER_LEASE_TIMEOUT: '10s' },
      `127.0.0.1:${port}`,
    );
    await worker.waitFor(
      /the server answers again: could not lease from the server for \d+ s \(\d+ failed attempt\(s\)\)/,
    );
    // Said once while it lasted (the unit test of OutageNotice covers "once a minute").
    expect(worker.stderr().match(/cannot lease from the server/g)).toHaveLength(1);
    expect(worker.stderr()).not.toContain('BERTH_INTERNAL');
    // It works again: the worker is listed IDLE.
    await untilStatus(idOf(worker), 'IDLE');
  });

  it('a rotated pool token stops the worker: its run is stopped, it says why and exits non-zero', async () => {
    const token = await admins().createPool('pool-rotate');
    const dir = tempDir('berth-stack-');
    mkdirSync(path.join(dir, '.berth'));
    writeFileSync(
      path.join(dir, '.berth', 'task.sh'),
      "trap 'exit 143' TERM\necho started\nwhile :; do echo tick; sleep 0.2; done\n",
    );
    const created = await admins().api('POST', '/stacks', {
      id: 'stack-rotate',
      localDir: dir,
      pool: 'pool-rotate',
      runnerImage: inject('busyboxImage'),
    });
    expect(created.status).toBe(201);
    const worker = startWorker(token, tempDir('berth-worker-'));
    await worker.waitFor('registered in pool pool-rotate');
    const run = (
      await admins().api<{ id: string }>('POST', '/stacks/stack-rotate/runs', { type: 'task' })
    ).body;
    await admins().settled(run.id, ['PERFORMING']);
    await until(
      async () => (await admins().logText(run.id)).includes('tick'),
      'the run logged its output',
      60_000,
    );
    const rotated = await admins().api('POST', '/pools/pool-rotate/token');
    expect(rotated.status).toBe(200);

    const { code } = await worker.exited;
    expect(code).toBe(2);
    const stderr = worker.stderr();
    expect(stderr).toContain("the berth server no longer accepts this worker's pool token");
    expect(stderr).toContain(
      'rotated (berth pool rotate-token) or is wrong; stopping 1 run(s) and exiting',
    );
    expect(stderr).toContain('Start berth worker again with BERTH_POOL_TOKEN');
    expect(stderr).toContain('[BERTH_SERVER_REFUSED]');
    // The log stops at the rotation: the line does not claim it was all shipped.
    expect(stderr).toMatch(new RegExp(`run ${run.id}: done here, \\w+ \\(log not all shipped: `));
    expect(stderr).not.toContain('log shipped, container removed');
    expect(stderr.match(/stopping \d+ run\(s\) and exiting/g)).toHaveLength(1);
    expectNoBug(stderr);
    // The server ends the run by its lease.
    const ended = await admins().settled(run.id, ['FAILED', 'FINISHED', 'CANCELED']);
    expect(ended.state).toBe('FAILED');
  });
});

describe('the worker list', () => {
  it('refuses a second worker on the same state directory, naming the first; takes it over once the first died', async () => {
    const token = await admins().createPool('pool-shared-dir');
    const stateDir = tempDir('berth-worker-');
    const first = startWorker(token, stateDir);
    await first.waitFor('registered in pool pool-shared-dir');
    const second = startWorker(token, stateDir);
    expect((await second.exited).code).toBe(2);
    expect(second.stderr()).toContain(
      `another berth worker (process ${first.child.pid}) uses the state directory ${stateDir} [BERTH_USAGE]`,
    );
    expect(second.stderr()).toContain('BERTH_STATE_DIR=DIR berth worker');
    expectNoBug(second.stderr());
    // Killed, the first leaves its claim behind: the next worker takes it over, with the same id.
    first.child.kill('SIGKILL');
    await first.exited;
    const third = startWorker(token, stateDir);
    await third.waitFor(`worker ${idOf(first)} registered in pool pool-shared-dir`);
  });

  it('waits while its id is in use by a live worker on another host, and starts once that one left', async () => {
    const token = await admins().createPool('pool-id-in-use');
    // The live worker elsewhere: registered through the worker API under another host name.
    const elsewhere = await apiRequest(url, token, 'POST', '/worker/register', {
      host: 'build-9.example',
      berthVersion: '0.1.0',
      engineVersion: '20.10.24',
      concurrency: 1,
    });
    expect(elsewhere.status).toBe(200);
    const { workerId } = (await elsewhere.json()) as { workerId: string };
    // This machine's worker has a copy of its state directory (its id).
    const stateDir = tempDir('berth-worker-');
    writeFileSync(path.join(stateDir, 'worker-id'), `${workerId}\n`);
    // It stays live while the other starts (only as long as the lease after its last heartbeat).
    const beating = setInterval(() => {
      apiRequest(url, token, 'POST', '/worker/heartbeat', { workerId, runs: [] }).then(
        (res) => res.body?.cancel(),
        () => undefined,
      );
    }, 500);
    const copy = startWorker(token, stateDir);
    try {
      await copy.waitFor(
        `cannot register with worker id ${workerId}: /worker/register: 409 WORKER_ID_IN_USE: worker id ${workerId} is in use by a live worker on host build-9.example`,
      );
      expect(copy.stderr()).toContain('trying again every 2 s');
      expect(copy.child.exitCode).toBeNull();
    } finally {
      clearInterval(beating);
    }
    const left = await apiRequest(url, token, 'POST', '/worker/deregister', { workerId });
    expect(left.status).toBe(204);
    await copy.waitFor(`worker ${workerId} registered in pool pool-id-in-use`);
    expect(copy.stderr()).toContain(
      `the server answers again: could not register with worker id ${workerId}`,
    );
    expectNoBug(copy.stderr());
  });

  it('shows a worker that left cleanly, or died, as OFFLINE; a drained one says so at start', async () => {
    const token = await admins().createPool('pool-list');
    const stateDir = tempDir('berth-worker-');
    const first = startWorker(token, stateDir);
    await first.waitFor('registered in pool pool-list; up to 1 run(s) at once');
    const id = idOf(first);
    await untilStatus(id, 'IDLE');
    await stopWorkers(workers);
    // A clean exit says goodbye: OFFLINE at once, not IDLE until the heartbeat grows old.
    expect(await statusOf(id), first.stderr()).toBe('OFFLINE');

    // The same worker (its id kept in the state directory), drained while away, says so at start.
    expect((await admins().api('POST', `/workers/${id}/drain`)).status).toBe(200);
    const again = startWorker(token, stateDir);
    await again.waitFor(
      `worker ${id} registered in pool pool-list; drained: it takes no runs until \`berth worker undrain ${id}\``,
    );
    await untilStatus(id, 'DRAINED');

    // Killed: no goodbye; OFFLINE once its last heartbeat is older than the lease time (10 s).
    again.child.kill('SIGKILL');
    await again.exited;
    await untilStatus(id, 'OFFLINE');
    // Still drained (the web page's Undrain button goes by this, not by the status).
    const listed = await admins().api<{ workers: WorkerRow[] }>('GET', '/workers');
    expect(listed.body.workers.find((w) => w.id === id)).toMatchObject({
      status: 'OFFLINE',
      drained: true,
    });
    // The list says it too (a drained worker is never forgotten: why its row stays).
    const shown = await runBerth(['worker', 'list'], { BERTH_SERVER: url, BERTH_TOKEN: admin });
    expect(shown.stdout).toMatch(new RegExp(`^${id}  pool-list  OFFLINE \\(drained\\) `, 'm'));
  });
});
