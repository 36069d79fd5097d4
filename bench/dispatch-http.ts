/**
 * Dispatch latency through HTTP (issue 9), the second table beside bench/dispatch.ts: a real
 * `berth server` process, and W workers long-polling it over HTTP with the worker's own protocol
 * client (src/worker/protocol.ts), spread over BENCH_POLLER_PROCESSES (4) child processes as
 * `berth worker --concurrency` would hold several polls. The workers only lease (no container):
 * what is measured is the dispatch, not the job.
 *
 *   1. drain: N runs queued in the pool, the W workers lease until the queue is empty; the time
 *      of one lease call as a worker sees it (request sent → assignment read), p50 and p99.
 *   2. wake:  the W workers wait on their long polls (the N runs stay in the table, leased), and
 *      BENCH_TRIGGERS (200) runs are triggered through the API one at a time, every
 *      BENCH_TRIGGER_GAP_MS (25); queued → leased as the server records it (its state history,
 *      1 ms resolution), and trigger answered → assignment read by the worker process.
 *
 *   npx tsx bench/dispatch-http.ts   (BENCH_QUEUED=1000,10000 BENCH_WORKERS=20,100
 *                                     BENCH_STORES=sqlite,postgres; needs `npm run build`)
 */
import { fork, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { openStore } from '../src/store/open-store.js';
import { HttpWorkerProtocol } from '../src/worker/protocol.js';
import { startPostgres } from '../test/harness/postgres.js';
import { adminApi, percentile, queueRuns, startBerth, stateAt, type RunView } from './common.js';

/** Wall-clock milliseconds with sub-millisecond resolution, comparable across processes. */
const wallMs = (): number => performance.timeOrigin + performance.now();

/** What a poller process reports: each lease it got. */
interface Lease {
  runId: string;
  /** Request sent → assignment read, ms. */
  callMs: number;
  /** When the assignment was read (wallMs). */
  readAt: number;
}

type ToPoller = { type: 'go' } | { type: 'count' } | { type: 'take' } | { type: 'stop' };
type FromPoller =
  { type: 'ready' } | { type: 'count'; count: number } | { type: 'leases'; leases: Lease[] };

/** A child process holding `workers` long polls of its own, each a registered worker. */
async function poller(): Promise<void> {
  const protocol = new HttpWorkerProtocol(
    process.env.BENCH_URL as string,
    process.env.BENCH_TOKEN as string,
  );
  const workers = Number(process.env.BENCH_POLLS);
  const leases: Lease[] = [];
  const stop = new AbortController();
  let go: () => void = () => undefined;
  const started = new Promise<void>((resolve) => (go = resolve));
  const send = (message: FromPoller): boolean =>
    (process.send as (m: FromPoller) => boolean)(message);
  process.on('message', (message: ToPoller) => {
    if (message.type === 'go') go();
    if (message.type === 'count') send({ type: 'count', count: leases.length });
    if (message.type === 'take') send({ type: 'leases', leases: leases.splice(0) });
    if (message.type === 'stop') stop.abort();
  });
  const ids = await Promise.all(
    Array.from({ length: workers }, async () => {
      const registered = await protocol.register({
        host: 'bench',
        berthVersion: 'bench',
        engineVersion: 'none',
        concurrency: 1,
      });
      return registered.workerId;
    }),
  );
  send({ type: 'ready' });
  // All processes start together, once every worker of every process is registered.
  await started;
  await Promise.all(
    ids.map(async (id) => {
      while (!stop.signal.aborted) {
        const start = performance.now();
        const assignment = await protocol.lease(id, 30_000, stop.signal).catch((err: unknown) => {
          if (stop.signal.aborted) return null;
          throw err;
        });
        if (assignment)
          leases.push({
            runId: assignment.run.id,
            callMs: performance.now() - start,
            readAt: wallMs(),
          });
      }
    }),
  );
  process.disconnect();
  // Kept-alive connections to the server would hold the process open.
  process.exit(0);
}

if (process.argv[2] === 'poller') {
  await poller();
} else {
  await main();
}

async function main(): Promise<void> {
  const queuedSizes = (process.env.BENCH_QUEUED ?? '1000,10000').split(',').map(Number);
  const workerCounts = (process.env.BENCH_WORKERS ?? '20,100').split(',').map(Number);
  const stores = (process.env.BENCH_STORES ?? 'sqlite,postgres').split(',');
  const processes = Number(process.env.BENCH_POLLER_PROCESSES ?? 4);
  const triggers = Number(process.env.BENCH_TRIGGERS ?? 200);
  const gapMs = Number(process.env.BENCH_TRIGGER_GAP_MS ?? 25);

  console.log(
    '| store | queued | workers | drain: lease call p50 | p99 | leases/s | wake: queued → leased (server) p50 | p99 | trigger answered → worker has it p50 | p99 |',
  );
  console.log('| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |');

  /** One configuration against a fresh server and database. */
  async function measure(label: string, queued: number, workers: number, databaseUrl?: string) {
    const scratch = mkdtempSync(path.join(tmpdir(), 'berth-bench-dispatch-'));
    const dataDir = path.join(scratch, 'server');
    const server = await startBerth(
      ['server', '--listen', '127.0.0.1:0', '--data-dir', dataDir],
      // Leases outlive the benchmark: nothing goes back to the queue while it measures.
      {
        BERTH_WORKER_LEASE_TIMEOUT: '1h',
        ...(databaseUrl ? { BERTH_DATABASE_URL: databaseUrl } : {}),
      },
      /listening on http/,
      // e.g. "--cpu-prof --cpu-prof-dir=DIR": where the server's time goes.
      process.env.BENCH_SERVER_NODE_ARGS?.split(' ').filter(Boolean) ?? [],
    );
    const pollers: ChildProcess[] = [];
    try {
      const url = /listening on (http:\/\/\S+)/.exec(server.said())?.[1] as string;
      const admin = /admin token \(shown once, keep it\): (\S+)/.exec(server.said())?.[1] as string;
      const api = adminApi(url, admin);
      const source = path.join(scratch, 'stack');
      mkdirSync(source);
      const { token } = await api<{ token: string }>('POST', '/pools', {
        id: 'bench',
        kind: 'private',
      });
      await api('POST', '/stacks', { id: 'bench', localDir: source, pool: 'bench' });
      // The backlog goes straight into the database (10,000 triggers through the API would
      // measure the trigger), before any worker asks.
      const store = await openStore({ dataDir, ...(databaseUrl ? { databaseUrl } : {}) });
      try {
        await queueRuns(store, queued);
      } finally {
        await store.close();
      }

      const ask = <T extends FromPoller['type']>(child: ChildProcess, message: ToPoller, type: T) =>
        new Promise<Extract<FromPoller, { type: T }>>((resolve) => {
          const listener = (answer: FromPoller): void => {
            if (answer.type !== type) return;
            child.off('message', listener);
            resolve(answer as Extract<FromPoller, { type: T }>);
          };
          child.on('message', listener);
          child.send(message);
        });
      const take = async (): Promise<Lease[]> =>
        (await Promise.all(pollers.map((p) => ask(p, { type: 'take' }, 'leases')))).flatMap(
          (a) => a.leases,
        );
      const count = async (): Promise<number> =>
        (await Promise.all(pollers.map((p) => ask(p, { type: 'count' }, 'count')))).reduce(
          (s, a) => s + a.count,
          0,
        );

      // 1. drain: the workers start together once all are registered.
      const failed = new AbortController();
      const waitFor = async (leases: number): Promise<void> => {
        while ((await count()) < leases) {
          failed.signal.throwIfAborted();
          await new Promise((resolve) => setTimeout(resolve, 50));
        }
      };
      const ready: Promise<unknown>[] = [];
      for (let i = 0; i < processes; i += 1) {
        const polls = Math.floor(workers / processes) + (i < workers % processes ? 1 : 0);
        const child = fork(fileURLToPath(import.meta.url), ['poller'], {
          env: { ...process.env, BENCH_URL: url, BENCH_TOKEN: token, BENCH_POLLS: String(polls) },
        });
        pollers.push(child);
        child.on('exit', (code) => {
          if (code !== 0) failed.abort(new Error(`a poller process exited with ${code}`));
        });
        ready.push(
          new Promise((resolve) =>
            child.on('message', (m: FromPoller) => m.type === 'ready' && resolve(m)),
          ),
        );
      }
      await Promise.all(ready);
      const drainStart = performance.now();
      for (const child of pollers) child.send({ type: 'go' });
      await waitFor(queued);
      const drainSeconds = (performance.now() - drainStart) / 1000;
      const drained = (await take()).map((l) => l.callMs);

      // 2. wake: every worker waits; runs come one at a time.
      const answered = new Map<string, number>();
      for (let i = 0; i < triggers; i += 1) {
        const run = await api<RunView>('POST', '/stacks/bench/runs', { type: 'task' });
        answered.set(run.id, wallMs());
        await new Promise((resolve) => setTimeout(resolve, gapMs));
      }
      await waitFor(triggers);
      const woken = await take();
      const serverMs: number[] = [];
      const endToEnd: number[] = [];
      for (const lease of woken) {
        const run = await api<RunView>('GET', `/runs/${lease.runId}`);
        serverMs.push(stateAt(run, 'PREPARING') - stateAt(run, 'QUEUED'));
        endToEnd.push(lease.readAt - (answered.get(lease.runId) as number));
      }
      const ms = (values: number[], p: number): string => percentile(values, p).toFixed(1);
      console.log(
        `| ${label} | ${queued} | ${workers} | ${ms(drained, 50)} | ${ms(drained, 99)} | ${(queued / drainSeconds).toFixed(0)} | ${ms(serverMs, 50)} | ${ms(serverMs, 99)} | ${ms(endToEnd, 50)} | ${ms(endToEnd, 99)} |`,
      );
    } finally {
      for (const child of pollers) {
        const exited = new Promise((resolve) => child.on('exit', resolve));
        child.send({ type: 'stop' });
        await exited;
      }
      const exited = new Promise((resolve) => server.child.on('exit', resolve));
      server.child.kill('SIGTERM');
      await exited;
      rmSync(scratch, { recursive: true, force: true });
    }
  }

  for (const store of stores) {
    const postgres = store === 'postgres' ? startPostgres() : null;
    let databases = 0;
    try {
      for (const queued of queuedSizes) {
        for (const workers of workerCounts) {
          let databaseUrl: string | undefined;
          if (postgres) {
            const name = `bench_http_${(databases += 1)}`;
            postgres.createDatabase(name);
            databaseUrl = postgres.url(name);
          }
          await measure(postgres ? 'PostgreSQL' : 'SQLite', queued, workers, databaseUrl);
        }
      }
    } finally {
      postgres?.stop();
    }
  }
}
