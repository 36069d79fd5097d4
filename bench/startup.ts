/**
 * Start-up overhead: `docker run --rm IMAGE echo ready` against `berth run --image IMAGE --pull
 * never -- echo ready` on a cached busybox image, and against the same image served by a local
 * registry with berth's per-job registry check (`--pull if-not-present`: one manifest request,
 * image cached). Interleaved, 20 repetitions each (BENCH_REPS to change), after one warm-up of
 * each. Reports medians, p95 and berth/raw ratios for total wall time and time to the first byte
 * of job output. Needs a Docker engine (DOCKER_HOST), the docker CLI and docker-registry.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pushImage, tagImage, testEngine } from '../test/harness/engine.js';
import { startRegistry } from '../test/harness/registry.js';
import { BERTH_BIN, benchImage, percentile, timed, type Timing } from './common.js';

const reps = Number(process.env.BENCH_REPS ?? 20);
const image = await benchImage();
const jobDir = mkdtempSync(path.join(tmpdir(), 'berth-bench-'));
const stateDir = mkdtempSync(path.join(tmpdir(), 'berth-bench-state-'));
const env = { ...process.env, BERTH_STATE_DIR: stateDir, NO_COLOR: '1' };
const registry = await startRegistry();
const engine = testEngine();
const served = `${registry.address}/bench/busybox:v1`;
await tagImage(engine, image, `${registry.address}/bench/busybox`, 'v1');
await pushImage(engine, served);
engine.close();

const commands: Record<string, [string, string[]]> = {
  raw: ['docker', ['run', '--rm', image, 'echo', 'ready']],
  berth: [
    process.execPath,
    [BERTH_BIN, 'run', jobDir, '--image', image, '--pull', 'never', '--', 'echo ready'],
  ],
  checked: [
    process.execPath,
    [BERTH_BIN, 'run', jobDir, '--image', served, '--pull', 'if-not-present', '--', 'echo ready'],
  ],
};
const results: Record<string, Timing[]> = { raw: [], berth: [], checked: [] };
try {
  for (const [command, args] of Object.values(commands)) await timed(command, args, env);
  for (let i = 0; i < reps; i += 1) {
    for (const [name, [command, args]] of Object.entries(commands)) {
      const timing = await timed(command, args, env);
      if (timing.exitCode !== 0) throw new Error(`${name} failed (exit ${timing.exitCode})`);
      results[name]?.push(timing);
    }
  }
} finally {
  await registry.stop();
  for (const dir of [jobDir, stateDir]) rmSync(dir, { recursive: true, force: true });
}

const stats = (values: number[]): [number, number] => [
  percentile(values, 50),
  percentile(values, 95),
];
console.log(`start-up, ${reps} interleaved repetitions each, image ${image}`);
console.log(
  '| metric (ms) | raw median | raw p95 | berth median | berth p95 | ratio (median) | berth + registry check median | p95 | ratio (median) |',
);
console.log('| --- | --- | --- | --- | --- | --- | --- | --- | --- |');
for (const [metric, pick] of [
  ['total wall time', (t: Timing) => t.totalMs],
  ['first byte of job output', (t: Timing) => t.firstByteMs ?? Number.NaN],
] as const) {
  const [rawMedian, rawP95] = stats((results.raw ?? []).map(pick));
  const [berthMedian, berthP95] = stats((results.berth ?? []).map(pick));
  const [checkedMedian, checkedP95] = stats((results.checked ?? []).map(pick));
  console.log(
    `| ${metric} | ${rawMedian.toFixed(0)} | ${rawP95.toFixed(0)} | ${berthMedian.toFixed(0)} | ${berthP95.toFixed(0)} | ${(berthMedian / rawMedian).toFixed(2)} | ${checkedMedian.toFixed(0)} | ${checkedP95.toFixed(0)} | ${(checkedMedian / rawMedian).toFixed(2)} |`,
  );
}
