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
  /** CPU time (user + system) of the command's own process, from /proc (20 ms resolution). */
  cpuMs: number;
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
    let cpuMs = 0;
    // VmHWM is a high-water mark and CPU time only grows: the last reading before the process
    // ends is the figure, so polling (not reading /proc on every chunk) loses nothing.
    const poll = setInterval(() => {
      peakRssKb = Math.max(peakRssKb, readPeakRss(child.pid));
      cpuMs = Math.max(cpuMs, readCpuMs(child.pid));
    }, 20);
    child.stdout.on('data', (chunk: Buffer) => {
      if (firstByteMs === null) firstByteMs = performance.now() - started;
      stdoutBytes += chunk.length;
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
        cpuMs,
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

/** utime + stime of a process (fields 14 and 15 of /proc/PID/stat, in clock ticks of 10 ms). */
function readCpuMs(pid: number | undefined): number {
  if (!pid) return 0;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may hold spaces: count fields after its closing parenthesis.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) * 10;
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
