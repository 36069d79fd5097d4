/**
 * Log ingestion of the worker path (issue 9): BENCH_LOG_RUNS (10) runs at once on one worker
 * (concurrency as many), each job writing BENCH_LOG_MB (5) MB of text lines, with a reader per
 * run following its log through the API (`GET /runs/ID/logs?after=N`, as `berth runs logs -f`
 * does) while it is written. Reports the MB/s stored (all output, first run leased → last run
 * FINISHED, server's own times), the MB/s the followers read, and the server's peak RSS. A real
 * `berth server` (SQLite, or PostgreSQL with BENCH_DATABASE_URL) and `berth worker`.
 *
 *   npx tsx bench/log-ingestion.ts
 */
import {
  benchImage,
  peakRssMb,
  startWorkerPath,
  stateAt as at,
  timed,
  type RunView,
} from './common.js';

const runs = Number(process.env.BENCH_LOG_RUNS ?? 10);
const mb = Number(process.env.BENCH_LOG_MB ?? 5);
const image = await benchImage();
// 100-byte lines from `yes` (a shell loop would be the bottleneck on 2 cores, not berth).
const task = `yes "$(printf '%099d' 0)" | head -c ${mb * 1024 * 1024}\n`;
const workerPath = await startWorkerPath({
  image,
  task,
  concurrency: runs,
  // Every byte is stored (the default bound, 4 MiB a run, would keep head and tail only).
  env: { BERTH_LOG_LIMIT: `${mb * 2 + 1}MiB` },
  ...(process.env.BENCH_DATABASE_URL ? { databaseUrl: process.env.BENCH_DATABASE_URL } : {}),
});
const api = workerPath.api;

/** Reads a run's log as it grows until the run has ended and nothing is left; returns bytes. */
async function follow(id: string): Promise<{ bytes: number; endedAt: number }> {
  let after = 0;
  let bytes = 0;
  for (;;) {
    const page = await api<{ chunks: { seq: number; text: string }[]; next: number }>(
      'GET',
      `/runs/${id}/logs?after=${after}&limit=1000`,
    );
    for (const chunk of page.chunks) bytes += Buffer.byteLength(chunk.text);
    after = page.next;
    if (page.chunks.length === 0) {
      const run = await api<RunView>('GET', `/runs/${id}`);
      if (['FINISHED', 'FAILED', 'STOPPED', 'CANCELED'].includes(run.state)) {
        const rest = await api<{ chunks: unknown[] }>('GET', `/runs/${id}/logs?after=${after}`);
        if (rest.chunks.length === 0) return { bytes, endedAt: performance.now() };
      } else await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
}

try {
  const start = performance.now();
  const ids: string[] = [];
  for (let i = 0; i < runs; i += 1)
    ids.push((await api<RunView>('POST', '/stacks/bench/runs', { type: 'task' })).id);
  const followed = await Promise.all(ids.map(follow));
  const views = await Promise.all(ids.map((id) => api<RunView>('GET', `/runs/${id}`)));
  const bad = views.filter((v) => v.state !== 'FINISHED');
  if (bad.length > 0) throw new Error(`runs did not finish: ${bad.map((v) => v.state).join(', ')}`);
  const first = Math.min(...views.map((v) => at(v, 'PERFORMING')));
  const last = Math.max(...views.map((v) => at(v, 'FINISHED')));
  const stored = followed.reduce((sum, f) => sum + f.bytes, 0) / 1024 / 1024;
  if (stored < runs * mb * 0.99) throw new Error(`only ${stored.toFixed(1)} MB were stored`);
  const readSeconds = (Math.max(...followed.map((f) => f.endedAt)) - start) / 1000;
  console.log(
    `log ingestion: ${runs} runs at once, ${mb} MB each (${stored.toFixed(1)} MB stored)`,
  );
  console.log(
    `| stored, first container running → last run FINISHED | ${(stored / ((last - first) / 1000)).toFixed(1)} MB/s |`,
  );
  console.log(
    `| followed through the API, trigger → last byte read | ${(stored / readSeconds).toFixed(1)} MB/s |`,
  );
  // The baseline: the same jobs with `docker run --rm`, all at once, output drained.
  const rawStart = performance.now();
  const raws = await Promise.all(
    ids.map(() => timed('docker', ['run', '--rm', image, 'sh', '-c', task])),
  );
  const rawMb = raws.reduce((sum, t) => sum + t.stdoutBytes, 0) / 1024 / 1024;
  const rawRate = rawMb / ((performance.now() - rawStart) / 1000);
  console.log(
    `| raw \`docker run --rm\`, the same ${runs} at once, output drained | ${rawRate.toFixed(1)} MB/s |`,
  );
  console.log(`| server peak RSS (VmHWM) | ${peakRssMb(workerPath.serverPid).toFixed(0)} MB |`);
  console.log(`| worker peak RSS (VmHWM) | ${peakRssMb(workerPath.workerPid).toFixed(0)} MB |`);
} finally {
  await workerPath.stop();
}
