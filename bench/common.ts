/** Shared helpers for the benchmarks: spawning with timings, statistics, the test image. */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { testEngine } from '../test/harness/engine.js';
import { ensureBusyboxImage } from '../test/harness/images.js';

export const BERTH_BIN = fileURLToPath(new URL('../bin/berth.js', import.meta.url));

export interface Timing {
  totalMs: number;
  firstByteMs: number | null;
  stdoutBytes: number;
  exitCode: number | null;
  peakRssKb: number;
}

/** Runs a command, timing the whole run and the first byte on stdout; polls peak RSS. */
export function timed(
  command: string,
  args: string[],
  env: NodeJS.ProcessEnv = process.env,
): Promise<Timing> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const child = spawn(command, args, { env, stdio: ['ignore', 'pipe', 'ignore'] });
    let firstByteMs: number | null = null;
    let stdoutBytes = 0;
    let peakRssKb = 0;
    const poll = setInterval(() => {
      peakRssKb = Math.max(peakRssKb, readPeakRss(child.pid));
    }, 20);
    child.stdout.on('data', (chunk: Buffer) => {
      if (firstByteMs === null) firstByteMs = performance.now() - started;
      stdoutBytes += chunk.length;
      peakRssKb = Math.max(peakRssKb, readPeakRss(child.pid));
    });
    child.on('error', reject);
    child.on('close', (exitCode) => {
      clearInterval(poll);
      resolve({
        totalMs: performance.now() - started,
        firstByteMs,
        stdoutBytes,
        exitCode,
        peakRssKb,
      });
    });
  });
}

function readPeakRss(pid: number | undefined): number {
  if (!pid) return 0;
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const match = /VmHWM:\s+(\d+) kB/.exec(status);
    return match ? Number(match[1]) : 0;
  } catch {
    return 0;
  }
}

export function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  const index = Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1);
  return sorted[Math.max(0, index)] as number;
}

export async function benchImage(): Promise<string> {
  const engine = testEngine();
  try {
    return await ensureBusyboxImage(engine);
  } finally {
    engine.close();
  }
}
