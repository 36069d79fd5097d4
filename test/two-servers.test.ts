/**
 * Two `berth server` processes on one PostgreSQL, a real `berth worker` (concurrency 8) whose
 * requests go to the two servers in turn, the real engine: 1,000 queued runs, triggered through
 * both servers, each executed exactly once: one lease in each run's history, one container
 * started per run (the engine's own events), the run's own output once in its log.
 *
 * Long polls wait on one server while runs are queued through the other: the wake-ups over
 * PostgreSQL (LISTEN/NOTIFY) get them leased without waiting for the poll's end.
 *
 * 1,000 real containers take time: about 10 minutes on the 2-core development machine under
 * load (2 runs a second). BERTH_TEST_RUNS sets another number for a quicker local run.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { EngineClient } from '../src/executor/docker/engine-client.js';
import { openStore } from '../src/store/open-store.js';
import type { KyselyStore } from '../src/store/kysely-store.js';
import { startApiProxy, type ApiProxy } from './harness/api-proxy.js';
import {
  apiClient,
  jobOutput,
  startServerProcess,
  type ServerProcess,
} from './harness/berth-server.js';
import { expectNothingLeftBehind } from './harness/cleanup.js';
import { runBerth, spawnBerth, type BerthProcess } from './harness/cli.js';
import { testEngine } from './harness/engine.js';
import { tempDir } from './harness/ownership.js';
import { startPostgres, type RunningPostgres } from './harness/postgres.js';

const RUNS = Number(process.env.BERTH_TEST_RUNS ?? 1000);
/** How long the many-runs test waits for the next run to end before it fails. */
const STALL_MS = 180_000;

let engine: EngineClient;
let postgres: RunningPostgres;
let store: KyselyStore;
let proxy: ApiProxy;
const servers: ServerProcess[] = [];
let worker: BerthProcess | undefined;
/** What every server of the database is started with. */
let shared: Record<string, string>;

beforeAll(async () => {
  engine = testEngine();
  postgres = startPostgres();
  postgres.createDatabase('berth');
  // Servers on one database share one secrets key (docs/server.md): each data directory would
  // otherwise get a key of its own, and the second server would refuse to start.
  // And one blob directory (a shared volume in production), where plans wait for their apply.
  shared = {
    BERTH_DATABASE_URL: postgres.url('berth'),
    BERTH_WORKER_LEASE_TIMEOUT: '30s',
    BERTH_SECRETS_KEY: randomBytes(32).toString('base64'),
    BERTH_BLOB_DIR: tempDir('berth-blobs-'),
  };
  // One after the other: the first migrates the database and makes the admin token.
  servers.push(await startServerProcess(tempDir('berth-server-'), shared));
  servers.push(await startServerProcess(tempDir('berth-server-'), shared));
  store = await openStore({ databaseUrl: postgres.url('berth'), dataDir: '/nonexistent' });
  proxy = await startApiProxy(servers.map((s) => s.url));
}, 120_000);

afterAll(async () => {
  if (worker) {
    worker.child.kill('SIGTERM');
    await worker.exited;
  }
  await proxy?.stop();
  for (const server of servers) await server.stop();
  await store?.close();
  postgres?.stop();
  if (engine) await expectNothingLeftBehind(engine);
  engine?.close();
});

/**
 * Counts container starts per container name from the engine's live event stream, until `stop`
 * (the engine keeps only its last 256 events, so they are watched as they come, not read later).
 */
async function watchContainerStarts(): Promise<{
  starts: Map<string, number>;
  stop(): Promise<void>;
}> {
  const res = await engine.stream('GET', '/events', {
    query: { filters: JSON.stringify({ type: ['container'], event: ['start'] }) },
  });
  const starts = new Map<string, number>();
  let rest = '';
  res.on('data', (chunk: Buffer) => {
    const lines = (rest + chunk.toString()).split('\n');
    rest = lines.pop() ?? '';
    for (const line of lines.filter(Boolean)) {
      const event = JSON.parse(line) as { Actor?: { Attributes?: { name?: string } } };
      const name = event.Actor?.Attributes?.name ?? '';
      starts.set(name, (starts.get(name) ?? 0) + 1);
    }
  });
  return {
    starts,
    stop: async () => {
      res.destroy();
      await new Promise((resolve) => res.once('close', resolve));
    },
  };
}

describe('two servers on one PostgreSQL', () => {
  it("refuses a third server without the servers' secrets key, and makes it no key of its own", async () => {
    const dataDir = tempDir('berth-server-');
    const own = await runBerth(['server', '--listen', '127.0.0.1:0', '--data-dir', dataDir], {
      BERTH_DATABASE_URL: postgres.url('berth'),
    });
    expect(own.code).toBe(2);
    expect(own.stderr).toContain('BERTH_SECRETS_KEY_MISMATCH');
    expect(own.stderr).toContain(
      `the secrets key is missing (${dataDir}/secrets.key, or BERTH_SECRETS_KEY), and the database holds values sealed with it`,
    );
    expect(existsSync(path.join(dataDir, 'secrets.key'))).toBe(false);
    // With a key of its own it is refused too, naming where its key came from.
    const other = await runBerth(['server', '--listen', '127.0.0.1:0', '--data-dir', dataDir], {
      BERTH_DATABASE_URL: postgres.url('berth'),
      BERTH_SECRETS_KEY: randomBytes(32).toString('base64'),
    });
    expect(other.code).toBe(2);
    expect(other.stderr).toContain(
      'the secrets key (BERTH_SECRETS_KEY) is not the key recorded for this database',
    );
    expect(other.stderr).not.toContain('admin token');
  });

  it('refuses a server whose blob directory is not the one the others share, and says which one is', async () => {
    const dataDir = tempDir('berth-server-');
    const shouldBe = readFileSync(
      path.join(shared.BERTH_BLOB_DIR as string, '.berth-blob-store'),
      'utf8',
    ).trim();
    expect(shouldBe).toMatch(/^[0-9a-f]{24}$/);
    const own = await runBerth(['server', '--listen', '127.0.0.1:0', '--data-dir', dataDir], {
      ...shared,
      BERTH_BLOB_DIR: '',
    });
    expect(own.code).toBe(2);
    expect(own.stderr).toContain('BERTH_BLOB_STORE_MISMATCH');
    expect(own.stderr).toContain(
      `the blob directory ${dataDir}/blobs is not the one this database's servers keep saved workspaces in: it has no .berth-blob-store, and the database's store is marked ${shouldBe} [BERTH_BLOB_STORE_MISMATCH]`,
    );
    expect(own.stderr).toContain(
      `set BERTH_BLOB_DIR to the directory whose .berth-blob-store holds ${shouldBe}`,
    );
    expect(own.stderr).not.toContain('listening');
    // Refused, it leaves no blob directory of its own behind.
    expect(existsSync(path.join(dataDir, 'blobs'))).toBe(false);
    // The way back the fix names: the directory marked with the store's id is taken.
    mkdirSync(path.join(dataDir, 'blobs'));
    const fixed = path.join(dataDir, 'blobs', '.berth-blob-store');
    writeFileSync(fixed, `${shouldBe}\n`);
    const server = await startServerProcess(dataDir, { ...shared, BERTH_BLOB_DIR: '' });
    await server.stop();
  });

  it('lets one of two servers that start at once on an empty database with keys of their own start, and refuses the other', async () => {
    postgres.createDatabase('berth_race');
    const both = [1, 2].map(() =>
      spawnBerth(['server', '--listen', '127.0.0.1:0', '--data-dir', tempDir('berth-server-')], {
        BERTH_DATABASE_URL: postgres.url('berth_race'),
        BERTH_SECRETS_KEY: randomBytes(32).toString('base64'),
      }),
    );
    const first = await Promise.race(
      both.map((server) => server.exited.then(({ code }) => ({ server, code }))),
    );
    expect(first.code).toBe(2);
    expect(first.server.stderr()).toContain('BERTH_SECRETS_KEY_MISMATCH');
    const running = both.find((server) => server !== first.server) as BerthProcess;
    await running.waitFor('listening on');
    running.child.kill('SIGTERM');
    expect((await running.exited).code).toBe(0);
  });

  it(`executes each of ${RUNS} queued runs exactly once, leased through both servers`, async () => {
    const admin = servers[0]?.admin as string;
    expect(admin).toMatch(/^berth_admin_/);
    const clients = servers.map((s) => apiClient(() => s.url, admin));
    const [one, two] = clients as [(typeof clients)[0], (typeof clients)[0]];
    const token = await one.createPool('pool-pg');
    const dir = tempDir('berth-stack-');
    mkdirSync(path.join(dir, '.berth'));
    writeFileSync(path.join(dir, '.berth', 'task.sh'), 'echo "ran $TF_VAR_berth_run_id"\n');
    expect(
      (
        await two.api('POST', '/stacks', {
          id: 'many',
          localDir: dir,
          pool: 'pool-pg',
          runnerImage: inject('busyboxImage'),
        })
      ).status,
    ).toBe(201);

    const ids: string[] = [];
    for (let i = 0; i < RUNS; i += 1) {
      const client = i % 2 === 0 ? one : two;
      const created = await client.api<{ id: string }>('POST', '/stacks/many/runs', {
        type: 'task',
      });
      expect(created.status).toBe(201);
      ids.push(created.body.id);
    }

    const watch = await watchContainerStarts();
    worker = spawnBerth(['worker', '--server', proxy.url, '--concurrency', '8'], {
      BERTH_POOL_TOKEN: token,
      BERTH_STATE_DIR: tempDir('berth-worker-'),
    });
    await worker.waitFor('registered in pool');
    // Progress, not a time limit: the test fails when no run has ended for STALL_MS, rather than
    // waiting for its own timeout. (Seen once: Debian 12's Docker 20.10.24 deadlocked in libnetwork
    // under this many container exits at once, moby/moby#42545, and started no container again.)
    let open = RUNS;
    let progressAt = Date.now();
    for (;;) {
      const now = await store.db
        .selectFrom('runs')
        .select((eb) => eb.fn.countAll<string>().as('n'))
        .where('state', 'not in', ['FINISHED', 'FAILED', 'STOPPED', 'CANCELED', 'DISCARDED'])
        .executeTakeFirstOrThrow();
      if (Number(now.n) === 0) break;
      if (Number(now.n) < open) [open, progressAt] = [Number(now.n), Date.now()];
      expect(worker.child.exitCode).toBeNull();
      expect(
        Date.now() - progressAt,
        `no run ended for ${STALL_MS / 1000} s with ${open} open; the worker said: ${worker.stderr().slice(-2000)}`,
      ).toBeLessThan(STALL_MS);
      await new Promise((resolve) => setTimeout(resolve, 500));
    }

    const runs = await store.db
      .selectFrom('runs')
      .select(['id', 'state', 'state_reason'])
      .execute();
    expect(runs).toHaveLength(RUNS);
    expect(runs.filter((r) => r.state !== 'FINISHED')).toEqual([]);
    const leases = await store.db
      .selectFrom('run_states')
      .select(['run_id', (eb) => eb.fn.countAll<string>().as('n')])
      .where('state', '=', 'PREPARING')
      .groupBy('run_id')
      .execute();
    expect(leases).toHaveLength(RUNS);
    expect(leases.filter((l) => Number(l.n) !== 1)).toEqual([]);
    // Every run's container started (its event may trail the run's end a little), and once.
    while (!ids.every((id) => watch.starts.has(`berth-${id}`)))
      await new Promise((resolve) => setTimeout(resolve, 100));
    await watch.stop();
    for (const id of ids) expect(watch.starts.get(`berth-${id}`), id).toBe(1);
    const logs = await store.db
      .selectFrom('log_chunks')
      .select(['run_id', 'text'])
      .orderBy('run_id')
      .orderBy('seq')
      .execute();
    const output = new Map<string, string>();
    for (const chunk of logs)
      output.set(chunk.run_id, (output.get(chunk.run_id) ?? '') + chunk.text);
    for (const id of ids) expect(jobOutput(output.get(id) ?? '')).toBe(`ran ${id}\n`);
    // Both servers served the worker.
    for (const server of servers) expect(proxy.served[server.url]).toBeGreaterThan(RUNS / 2);
  }, 1_800_000);
});
