/**
 * Dispatch latency of the run queue (issue 9): with N runs queued in one pool and W workers
 * leasing at once, how long one lease takes (the store's leaseRun: the row lock and update on
 * PostgreSQL, the single writer on SQLite), p50 and p99, until the queue is empty. Runs against a
 * SQLite file and a private PostgreSQL cluster (Debian's server binaries), as the store suite does.
 *
 *   npx tsx bench/dispatch.ts            (BENCH_QUEUED=1000,10000 BENCH_WORKERS=20,100
 *                                         BENCH_STORES=sqlite,postgres BENCH_POOL_SIZE=20)
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { openStore } from '../src/store/open-store.js';
import type { Store } from '../src/store/store.js';
import { startPostgres } from '../test/harness/postgres.js';
import { queueRuns } from './common.js';

const queuedSizes = (process.env.BENCH_QUEUED ?? '1000,10000').split(',').map(Number);
const workerCounts = (process.env.BENCH_WORKERS ?? '20,100').split(',').map(Number);
const stores = (process.env.BENCH_STORES ?? 'sqlite,postgres').split(',');
const poolSize = Number(process.env.BENCH_POOL_SIZE ?? 20);

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;
}

async function drain(store: Store, workers: number): Promise<number[]> {
  const latencies: number[] = [];
  await Promise.all(
    Array.from({ length: workers }, async (_, w) => {
      for (;;) {
        const start = performance.now();
        const run = await store.leaseRun('bench', `worker-${w}`, new Date(), 60_000);
        if (!run) return;
        latencies.push(performance.now() - start);
      }
    }),
  );
  return latencies.sort((a, b) => a - b);
}

async function measure(name: string, open: () => Promise<Store>): Promise<void> {
  for (const queued of queuedSizes) {
    for (const workers of workerCounts) {
      const store = await open();
      try {
        await store.migrate();
        const at = new Date();
        await store.createPool(
          {
            id: 'bench',
            name: 'bench',
            kind: 'private',
            allowList: [],
            defaultImage: null,
            pullPolicy: null,
          },
          randomBytes(16).toString('hex'),
          at,
        );
        await store.createStack(
          {
            id: 'bench',
            name: 'bench',
            repository: 'https://example.invalid/r.git',
            branch: 'main',
            localDir: null,
            projectRoot: '',
            tool: null,
            toolVersion: null,
            runnerImage: null,
            labels: [],
            autoDeploy: false,
            poolId: 'bench',
          },
          at,
        );
        await queueRuns(store, queued);
        const started = performance.now();
        const latencies = await drain(store, workers);
        const seconds = (performance.now() - started) / 1000;
        console.log(
          `${name.padEnd(18)} queued ${String(queued).padStart(6)}  workers ${String(workers).padStart(3)}  leases ${latencies.length}  p50 ${percentile(latencies, 50).toFixed(2)} ms  p99 ${percentile(latencies, 99).toFixed(2)} ms  (${(latencies.length / seconds).toFixed(0)} leases/s)`,
        );
      } finally {
        await store.close();
      }
    }
  }
}

const dirs: string[] = [];
if (stores.includes('sqlite')) {
  await measure('sqlite', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'berth-bench-sqlite-'));
    dirs.push(dir);
    return openStore({ dataDir: dir });
  });
}
if (stores.includes('postgres')) {
  const postgres = startPostgres();
  let databases = 0;
  try {
    await measure(`postgres (pool ${poolSize})`, () => {
      const name = `bench_${(databases += 1)}`;
      postgres.createDatabase(name);
      return openStore({ databaseUrl: postgres.url(name), dataDir: '/nonexistent', poolSize });
    });
  } finally {
    postgres.stop();
  }
}
for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
