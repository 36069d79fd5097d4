/**
 * The worker path against raw `docker run --rm` (issue 9), with a real `berth server` (SQLite)
 * and a real `berth worker` process on the same engine and the cached busybox test image:
 *
 * - per-job overhead: a trivial task (`echo ran`) triggered through the API until FINISHED,
 *   interleaved with `docker run --rm IMAGE sh -c 'echo ran'`, BENCH_REPS (20) each after a
 *   warm-up. The run's time is the server's own record (created → FINISHED), split into its
 *   steps (queued → leased, leased → container running, running → FINISHED), so the polling
 *   for the end does not count;
 * - throughput: BENCH_RUNS (200) trivial runs queued at once and drained by one worker with
 *   concurrency 8, against as many `docker run --rm` with 8 at a time; jobs per minute.
 *
 *   npx tsx bench/worker-path.ts          (BENCH_REPS=20 BENCH_RUNS=200 BENCH_PARALLEL=8)
 */
import {
  benchImage,
  percentile,
  startWorkerPath,
  stateAt as at,
  timed,
  type RunView,
} from './common.js';

const reps = Number(process.env.BENCH_REPS ?? 20);
const runs = Number(process.env.BENCH_RUNS ?? 200);
const parallel = Number(process.env.BENCH_PARALLEL ?? 8);
const image = await benchImage();
const env = { ...process.env, NO_COLOR: '1' };
const workerPath = await startWorkerPath({ image, task: 'echo ran\n', concurrency: parallel });
const api = workerPath.api;

async function finished(id: string): Promise<RunView> {
  for (;;) {
    const run = await api<RunView>('GET', `/runs/${id}`);
    if (['FINISHED', 'FAILED', 'STOPPED', 'CANCELED'].includes(run.state)) {
      if (run.state !== 'FINISHED') throw new Error(`run ${id} ended ${run.state}`);
      return run;
    }
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

const trigger = (): Promise<RunView> =>
  api<RunView>('POST', '/stacks/bench/runs', { type: 'task' });
const raw = (): Promise<number> =>
  timed('docker', ['run', '--rm', image, 'sh', '-c', 'echo ran'], env).then((t) => {
    if (t.exitCode !== 0) throw new Error(`docker run failed (exit ${t.exitCode})`);
    return t.totalMs;
  });

try {
  // Per-job overhead, one at a time, interleaved.
  await finished((await trigger()).id);
  await raw();
  const rawMs: number[] = [];
  const steps = {
    total: [] as number[],
    queued: [] as number[],
    preparing: [] as number[],
    performing: [] as number[],
  };
  for (let i = 0; i < reps; i += 1) {
    rawMs.push(await raw());
    const run = await finished((await trigger()).id);
    const created = Date.parse(run.createdAt);
    steps.total.push(at(run, 'FINISHED') - created);
    steps.queued.push(at(run, 'PREPARING') - created);
    steps.preparing.push(at(run, 'PERFORMING') - at(run, 'PREPARING'));
    steps.performing.push(at(run, 'FINISHED') - at(run, 'PERFORMING'));
  }
  const median = (values: number[]): number => percentile(values, 50);
  console.log(`per-job overhead, ${reps} interleaved repetitions each, image ${image}`);
  console.log('| figure (ms) | median | p95 |');
  console.log('| --- | --- | --- |');
  console.log(
    `| raw \`docker run --rm\` | ${median(rawMs).toFixed(0)} | ${percentile(rawMs, 95).toFixed(0)} |`,
  );
  for (const [name, values] of Object.entries(steps))
    console.log(
      `| worker path: ${name} | ${median(values).toFixed(0)} | ${percentile(values, 95).toFixed(0)} |`,
    );
  console.log(
    `ratio worker path / raw (medians): ${(median(steps.total) / median(rawMs)).toFixed(2)}`,
  );

  // Throughput: all queued at once, drained by the worker; against raw with the same parallelism.
  const ids: string[] = [];
  for (let i = 0; i < runs; i += 1) ids.push((await trigger()).id);
  const views: RunView[] = [];
  for (const id of ids) views.push(await finished(id));
  const first = Math.min(...views.map((r) => Date.parse(r.createdAt)));
  const last = Math.max(...views.map((r) => at(r, 'FINISHED')));
  const workerPerMinute = runs / ((last - first) / 60_000);
  const rawStart = performance.now();
  let next = 0;
  await Promise.all(
    Array.from({ length: parallel }, async () => {
      while (next < runs) {
        next += 1;
        await raw();
      }
    }),
  );
  const rawPerMinute = runs / ((performance.now() - rawStart) / 60_000);
  console.log(`throughput, ${runs} runs, ${parallel} at a time`);
  console.log(`| worker path | ${workerPerMinute.toFixed(0)} jobs/min |`);
  console.log(`| raw \`docker run --rm\` | ${rawPerMinute.toFixed(0)} jobs/min |`);
  console.log(`ratio worker path / raw: ${(workerPerMinute / rawPerMinute).toFixed(2)}`);
} finally {
  await workerPath.stop();
}
