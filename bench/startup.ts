/**
 * Start-up overhead: `docker run --rm IMAGE echo ready` against `berth run --image IMAGE -- echo
 * ready` on a cached busybox image, interleaved, 20 repetitions each (BENCH_REPS to change).
 * Reports medians, p95 and berth/raw ratios for total wall time and time to the first byte of job
 * output. Needs a Docker engine (DOCKER_HOST) and the docker CLI.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { BERTH_BIN, benchImage, percentile, timed, type Timing } from './common.js';

const reps = Number(process.env.BENCH_REPS ?? 20);
const image = await benchImage();
const jobDir = mkdtempSync(path.join(tmpdir(), 'berth-bench-'));
const stateDir = mkdtempSync(path.join(tmpdir(), 'berth-bench-state-'));
const env = { ...process.env, BERTH_STATE_DIR: stateDir, NO_COLOR: '1' };

const raw: Timing[] = [];
const berth: Timing[] = [];
// One warm-up of each, not counted (page cache, image metadata, berth's per-image cache).
await timed('docker', ['run', '--rm', image, 'echo', 'ready'], env);
await timed(
  process.execPath,
  [BERTH_BIN, 'run', jobDir, '--image', image, '--', 'echo ready'],
  env,
);
for (let i = 0; i < reps; i += 1) {
  raw.push(await timed('docker', ['run', '--rm', image, 'echo', 'ready'], env));
  berth.push(
    await timed(
      process.execPath,
      [BERTH_BIN, 'run', jobDir, '--image', image, '--', 'echo ready'],
      env,
    ),
  );
}
for (const t of [...raw, ...berth]) {
  if (t.exitCode !== 0) throw new Error(`a run failed (exit ${t.exitCode})`);
}

const row = (name: string, pick: (t: Timing) => number): string => {
  const r = raw.map(pick);
  const b = berth.map(pick);
  const ratio = (x: number, y: number): string => (x / y).toFixed(2);
  return `| ${name} | ${percentile(r, 50).toFixed(0)} | ${percentile(b, 50).toFixed(0)} | ${ratio(percentile(b, 50), percentile(r, 50))} | ${percentile(r, 95).toFixed(0)} | ${percentile(b, 95).toFixed(0)} | ${ratio(percentile(b, 95), percentile(r, 95))} |`;
};
console.log(`start-up, ${reps} interleaved repetitions each, image ${image}`);
console.log('| metric (ms) | raw median | berth median | ratio | raw p95 | berth p95 | ratio |');
console.log('| --- | --- | --- | --- | --- | --- | --- |');
console.log(row('total wall time', (t) => t.totalMs));
console.log(row('first byte of job output', (t) => t.firstByteMs ?? Number.NaN));
