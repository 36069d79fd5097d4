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
 *   concurrency 8, against as many `docker run --rm` with 8 at a time; jobs per minute;
 *   BENCH_ROUNDS rounds of each, interleaved.
 *
 *   npx tsx bench/worker-path.ts   (BENCH_REPS=20 BENCH_RUNS=200 BENCH_PARALLEL=8 BENCH_ROUNDS=1)
 *
 * Each throughput round of the worker path is timed by the server's record (first run created →
 * last FINISHED); the CPU each process used is shown per job (/proc, with reaped children: the
 * engine re-executes itself for archive copies).
 */
import {
  benchImage,
  childrenCpuMs,
  engineVersion,
  engineProcesses,
  processCpuMs,
  percentile,
  startWorkerPath,
  stateAt as at,
  timed,
  type RunView,
} from './common.js';

const reps = Number(process.env.BENCH_REPS ?? 20);
const runs = Number(process.env.BENCH_RUNS ?? 200);
const parallel = Number(process.env.BENCH_PARALLEL ?? 8);
const rounds = Number(process.env.BENCH_ROUNDS ?? 1);
const image = await benchImage();
const env = { ...process.env, NO_COLOR: '1' };
const workerPath = await startWorkerPath({ image, task: 'echo ran\n', concurrency: parallel });
const api = workerPath.api;
const engine = engineProcesses();
const FINAL = ['FINISHED', 'FAILED', 'STOPPED', 'CANCELED'];

async function finished(id: string): Promise<RunView> {
  for (;;) {
    const run = await api<RunView>('GET', `/runs/${id}`);
    if (FINAL.includes(run.state)) {
      if (run.state !== 'FINISHED') throw new Error(`run ${id} ended ${run.state}`);
      return run;
    }
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

/**
 * Waits until every run of `ids` is over: the last one queued is watched (one small call every
 * 500 ms, so the benchmark takes little from the machine it measures), then the stack's run list
 * confirms the rest.
 */
async function allOver(ids: string[]): Promise<void> {
  const wanted = new Set(ids);
  const pause = (): Promise<unknown> => new Promise((resolve) => setTimeout(resolve, 500));
  while (!FINAL.includes((await api<RunView>('GET', `/runs/${ids.at(-1)}`)).state)) await pause();
  for (;;) {
    const { runs: list } = await api<{ runs: RunView[] }>('GET', '/runs?stack=bench&limit=500');
    const over = list.filter((r) => wanted.has(r.id) && FINAL.includes(r.state));
    if (over.length === wanted.size) return;
    await pause();
  }
}

/**
 * Queues `runs` runs at once and waits for the worker to drain them: first created → last
 * FINISHED, and the CPU used until then (reading each run's record afterwards is not counted).
 */
async function drainByWorker(): Promise<{ ms: number; cpu: Record<string, number> }> {
  const before = cpuSnapshot();
  const ids: string[] = [];
  for (let i = 0; i < runs; i += 1) ids.push((await trigger()).id);
  await allOver(ids);
  const cpu = cpuSince(before);
  const views: RunView[] = [];
  for (const id of ids) views.push(await finished(id));
  const first = Math.min(...views.map((r) => Date.parse(r.createdAt)));
  return { ms: Math.max(...views.map((r) => at(r, 'FINISHED'))) - first, cpu };
}

/** `runs` raw `docker run --rm`, `parallel` at a time: how long they took, the CPU used. */
async function drainRaw(): Promise<{ ms: number; cpu: Record<string, number> }> {
  const before = cpuSnapshot();
  const started = performance.now();
  let next = 0;
  await Promise.all(
    Array.from({ length: parallel }, async () => {
      while (next < runs) {
        next += 1;
        await raw();
      }
    }),
  );
  const ms = performance.now() - started;
  return { ms, cpu: cpuSince(before) };
}

/** CPU used so far by the server, the worker, the engine and this benchmark's children. */
function cpuSnapshot(): Record<string, number> {
  const snapshot: Record<string, number> = {
    'berth server': processCpuMs(workerPath.serverPid),
    'berth worker': processCpuMs(workerPath.workerPid),
  };
  for (const { name, pid } of engine) snapshot[name] = processCpuMs(pid);
  snapshot['docker CLI'] = childrenCpuMs();
  return snapshot;
}

function cpuSince(before: Record<string, number>): Record<string, number> {
  const now = cpuSnapshot();
  return Object.fromEntries(Object.entries(now).map(([k, v]) => [k, v - (before[k] ?? 0)]));
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
  console.log(
    `per-job overhead, ${reps} interleaved repetitions each, image ${image}, ${await engineVersion()}`,
  );
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
  // BENCH_ROUNDS rounds of each, in the order worker, raw, raw, worker, … (a load that drifts
  // during the benchmark weighs on both alike); the figures are the sums over the rounds.
  const totals = { worker: { jobs: 0, ms: 0 }, raw: { jobs: 0, ms: 0 } };
  const cpu = { worker: {} as Record<string, number>, raw: {} as Record<string, number> };
  const order = Array.from({ length: rounds }, (_, i) =>
    i % 2 === 0 ? (['worker', 'raw'] as const) : (['raw', 'worker'] as const),
  ).flat();
  for (const kind of order) {
    const { ms, cpu: used } = kind === 'worker' ? await drainByWorker() : await drainRaw();
    totals[kind].jobs += runs;
    totals[kind].ms += ms;
    for (const [name, spent] of Object.entries(used))
      cpu[kind][name] = (cpu[kind][name] ?? 0) + spent;
  }
  const perMinute = (t: { jobs: number; ms: number }): number => t.jobs / (t.ms / 60_000);
  console.log(`throughput, ${runs} runs, ${parallel} at a time, ${rounds} round(s) each`);
  console.log(`| worker path | ${perMinute(totals.worker).toFixed(0)} jobs/min |`);
  console.log(`| raw \`docker run --rm\` | ${perMinute(totals.raw).toFixed(0)} jobs/min |`);
  console.log(
    `ratio worker path / raw: ${(perMinute(totals.worker) / perMinute(totals.raw)).toFixed(2)}`,
  );
  console.log('CPU per job (ms; the docker CLI processes are children of this benchmark)');
  console.log('| process | worker path | raw |');
  console.log('| --- | --- | --- |');
  for (const name of Object.keys(cpu.worker))
    console.log(
      `| ${name} | ${((cpu.worker[name] ?? 0) / totals.worker.jobs).toFixed(1)} | ${((cpu.raw[name] ?? 0) / totals.raw.jobs).toFixed(1)} |`,
    );
} finally {
  await workerPath.stop();
}
