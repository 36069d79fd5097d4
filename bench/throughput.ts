/**
 * Output throughput and memory: a job writes 200 MB (BENCH_MB to change) of text; berth streams
 * it to stdout (human view, with a secret to mask) while the benchmark drains it. Reports MB/s
 * and berth's peak RSS (VmHWM), which must stay under 150 MB.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { BERTH_BIN, benchImage, timed } from './common.js';

const megabytes = Number(process.env.BENCH_MB ?? 200);
const image = await benchImage();
const jobDir = mkdtempSync(path.join(tmpdir(), 'berth-bench-'));
const stateDir = mkdtempSync(path.join(tmpdir(), 'berth-bench-state-'));
const bytes = megabytes * 1024 * 1024;
const script = `yes 'terraform-like output line: aws_instance.web[3]: Still creating... [10s elapsed] hunter2' | head -c ${bytes}`;
const result = await timed(
  process.execPath,
  [
    BERTH_BIN,
    'run',
    jobDir,
    '--image',
    image,
    '--pull',
    'never',
    '--secret-env',
    'PW=hunter2',
    '--',
    script,
  ],
  { ...process.env, BERTH_STATE_DIR: stateDir, NO_COLOR: '1' },
);
if (result.exitCode !== 0) throw new Error(`the run failed (exit ${result.exitCode})`);
const seconds = result.totalMs / 1000;
console.log(
  `throughput: ${megabytes} MB of job output in ${seconds.toFixed(1)} s = ${(megabytes / seconds).toFixed(1)} MB/s`,
);
console.log(
  `berth stdout: ${(result.stdoutBytes / 1024 / 1024).toFixed(1)} MB (with time stamps and masking)`,
);
console.log(
  `berth peak RSS: ${(result.peakRssKb / 1024).toFixed(1)} MB (limit 150 MB) ${result.peakRssKb / 1024 < 150 ? 'OK' : 'OVER'}`,
);
