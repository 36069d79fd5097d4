/**
 * Output throughput and memory, four ways in one run on the same job output (200 MB of text
 * lines, BENCH_MB to change):
 *
 * - berth: `berth run` with a secret to mask in every line, human view (a time stamp per line),
 *   drained by this benchmark;
 * - ceiling: what the engine itself delivers: a minimal reader of the same exec stream berth
 *   reads (an exec in a running container, multiplexed, no TTY), read the same way (the
 *   hijacked connection, small reads followed by a millisecond's pause), that only counts bytes: no demultiplexing into lines, no masking, no
 *   time stamps, no writing anywhere;
 * - relay: the ceiling's reader in a process of its own that writes what it reads, frames and
 *   all, to its stdout, drained by this benchmark as berth's is: the engine's stream plus the one
 *   hop every command-line reader pays (a pipe to its reader), and nothing else. berth's figure
 *   against this one is what its own work on the output costs;
 * - `docker run … | cat`: the Docker CLI, drained the same way.
 *
 * Rates are from the first byte of output to the end (start-up is bench/startup.ts's subject),
 * reported as MB/s and as ratios to the ceiling. On a machine shared with other work the rates
 * swing from round to round; the CPU time each reader spends per 100 MB is the steadier figure.
 * berth's peak RSS (VmHWM) must stay under 150 MB.
 * Rounds interleave the four (BENCH_ROUNDS, default 3); the median of each is reported.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { GATHER_BELOW, GATHER_MS } from '../src/executor/docker/docker-job.js';
import type { EngineClient } from '../src/executor/docker/engine-client.js';
import { testEngine } from '../test/harness/engine.js';
import { BERTH_BIN, benchImage, engineVersion, percentile, timed } from './common.js';

const megabytes = Number(process.env.BENCH_MB ?? 200);
const rounds = Number(process.env.BENCH_ROUNDS ?? 3);
if (process.argv[2] === '--relay') {
  await relayProcess(process.argv[3] as string);
  // Pipe writes are asynchronous: what is still queued is written before the process ends.
  await new Promise((resolve) => process.stdout.write('', resolve));
  process.exit(0);
}
const image = await benchImage();
const jobDir = mkdtempSync(path.join(tmpdir(), 'berth-bench-'));
const stateDir = mkdtempSync(path.join(tmpdir(), 'berth-bench-state-'));
const bytes = megabytes * 1024 * 1024;
const script = `yes 'terraform-like output line: aws_instance.web[3]: Still creating... [10s elapsed] hunter2' | head -c ${bytes}`;
const MB = 1024 * 1024;

interface Figure {
  mbPerS: number;
  /** CPU time of the reader (berth's process; the ceiling's own reading), per 100 MB. */
  cpuMsPer100MB?: number;
  peakRssMb?: number;
}

async function berth(): Promise<Figure> {
  const args = [BERTH_BIN, 'run', jobDir, '--image', image, '--pull', 'never'];
  const result = await timed(
    process.execPath,
    [...args, '--secret-env', 'PW=hunter2', '--', script],
    { ...process.env, BERTH_STATE_DIR: stateDir, NO_COLOR: '1' },
  );
  if (result.exitCode !== 0) throw new Error(`the berth run failed (exit ${result.exitCode})`);
  return {
    mbPerS: megabytes / ((result.totalMs - (result.firstByteMs ?? 0)) / 1000),
    peakRssMb: result.peakRssKb / 1024,
    cpuMsPer100MB: (result.cpuMs * 100) / megabytes,
  };
}

async function dockerCli(): Promise<Figure> {
  const command = `docker run --rm ${image} sh -c "${script}" | cat`;
  const result = await timed('/bin/sh', ['-c', command]);
  if (result.exitCode !== 0) throw new Error(`docker run failed (exit ${result.exitCode})`);
  if (result.stdoutBytes !== bytes) throw new Error(`docker run gave ${result.stdoutBytes} bytes`);
  return { mbPerS: megabytes / ((result.totalMs - (result.firstByteMs ?? 0)) / 1000) };
}

/** A container of the bench image that runs `script` as an exec: its ids, and removal. */
async function scriptExec(
  engine: EngineClient,
): Promise<{ execId: string; remove: () => Promise<void> }> {
  const created = await engine.json<{ Id: string }>('POST', '/containers/create', {
    body: { Image: image, Cmd: ['sleep', '3600'], Labels: { 'berth.bench': '1' } },
  });
  const remove = async (): Promise<void> => {
    await engine.json('DELETE', `/containers/${created.Id}`, { query: { force: 1 } });
  };
  try {
    await engine.json('POST', `/containers/${created.Id}/start`);
    const exec = await engine.json<{ Id: string }>('POST', `/containers/${created.Id}/exec`, {
      body: { Cmd: ['/bin/sh', '-c', script], AttachStdout: true, AttachStderr: true },
    });
    return { execId: exec.Id, remove };
  } catch (err) {
    await remove();
    throw err;
  }
}

/**
 * Reads an exec's output as berth does (the hijacked connection, no HTTP client in between;
 * after a small read, a millisecond for the next frames to gather: one wake-up per 4 KiB frame
 * costs the reader, and so the engine beside it, more CPU), handing each read to `take`; a false
 * from `take` means the reader is full: reading waits for `room`.
 */
async function readExec(
  engine: EngineClient,
  execId: string,
  take: (chunk: Buffer) => boolean,
  room: () => Promise<void>,
): Promise<void> {
  const res = await engine.hijack('POST', `/exec/${execId}/start`, {
    body: { Detach: false, Tty: false },
  });
  await new Promise<void>((resolve, reject) => {
    res.on('data', (chunk: Buffer) => {
      if (!take(chunk)) {
        res.pause();
        void room().then(() => res.resume());
      } else if (chunk.length < GATHER_BELOW) {
        res.pause();
        setTimeout(() => res.resume(), GATHER_MS);
      }
    });
    res.on('end', resolve);
    res.on('error', reject);
  });
}

/** The ceiling: the engine's exec stream, only counted. */
async function ceiling(engine: EngineClient): Promise<Figure> {
  const { execId, remove } = await scriptExec(engine);
  try {
    let received = 0;
    let first = 0;
    const cpu = process.cpuUsage();
    await readExec(
      engine,
      execId,
      (chunk) => {
        if (received === 0) first = performance.now();
        received += chunk.length;
        return true;
      },
      () => Promise.resolve(),
    );
    const seconds = (performance.now() - first) / 1000;
    const used = process.cpuUsage(cpu);
    // Received bytes include the 8-byte frame headers; the rate counts the job's output only.
    if (received < bytes) throw new Error(`the exec stream gave ${received} bytes`);
    return {
      mbPerS: megabytes / seconds,
      cpuMsPer100MB: ((used.user + used.system) / 1000) * (100 / megabytes),
    };
  } finally {
    await remove();
  }
}

/** The relay: this file run again with `--relay EXEC_ID`, its stdout drained as berth's is. */
async function relay(engine: EngineClient): Promise<Figure> {
  const { execId, remove } = await scriptExec(engine);
  try {
    const self = fileURLToPath(import.meta.url);
    const result = await timed(process.execPath, [...process.execArgv, self, '--relay', execId]);
    if (result.exitCode !== 0) throw new Error(`the relay failed (exit ${result.exitCode})`);
    if (result.stdoutBytes < bytes) throw new Error(`the relay gave ${result.stdoutBytes} bytes`);
    return {
      mbPerS: megabytes / ((result.totalMs - (result.firstByteMs ?? 0)) / 1000),
      cpuMsPer100MB: (result.cpuMs * 100) / megabytes,
    };
  } finally {
    await remove();
  }
}

/** The relay's own process: the exec's stream to stdout, waiting for room as berth does. */
async function relayProcess(execId: string): Promise<void> {
  const engine = testEngine();
  try {
    await readExec(
      engine,
      execId,
      (chunk) => process.stdout.write(chunk),
      () => new Promise((resolve) => process.stdout.once('drain', resolve)),
    );
  } finally {
    engine.close();
  }
}

const engine = testEngine();
const results: Record<'berth' | 'ceiling' | 'relay' | 'docker', Figure[]> = {
  berth: [],
  ceiling: [],
  relay: [],
  docker: [],
};
try {
  for (let round = 0; round < rounds; round += 1) {
    results.ceiling.push(await ceiling(engine));
    results.relay.push(await relay(engine));
    results.berth.push(await berth());
    results.docker.push(await dockerCli());
  }
} finally {
  engine.close();
  // The job directory and berth's state (its stored logs: 4 MiB a run) go with the benchmark.
  for (const dir of [jobDir, stateDir]) rmSync(dir, { recursive: true, force: true });
}
const median = (figures: Figure[]): number =>
  percentile(
    figures.map((f) => f.mbPerS),
    50,
  );
const top = median(results.ceiling);
const row = (name: string, figures: Figure[]): string =>
  `${name.padEnd(24)} ${median(figures).toFixed(1).padStart(7)} MB/s  ${(median(figures) / top).toFixed(2)} of the ceiling  (rounds: ${figures.map((f) => f.mbPerS.toFixed(1)).join(', ')})`;
console.log(
  `output throughput, ${megabytes} MB of job output, median of ${rounds} rounds, ${await engineVersion()}:`,
);
console.log(row('ceiling (engine stream)', results.ceiling));
console.log(row('relay (stream to a pipe)', results.relay));
console.log(row('berth', results.berth));
console.log(row('docker run | cat', results.docker));
const cpu = (figures: Figure[]): string =>
  percentile(
    figures.map((f) => f.cpuMsPer100MB ?? Number.NaN),
    50,
  ).toFixed(0);
console.log(
  `berth / relay: ${(median(results.berth) / median(results.relay)).toFixed(2)} (what berth's own work on the output costs beyond the pipe hop)`,
);
console.log(
  `CPU time per 100 MB (median): berth ${cpu(results.berth)} ms (its whole process: engine calls, demultiplexing, decoding, masking, time stamps, stored log, writing stdout), the relay ${cpu(results.relay)} ms (its whole process: start-up, reading, writing stdout), the ceiling's reader ${cpu(results.ceiling)} ms`,
);
const peak = Math.max(...results.berth.map((f) => f.peakRssMb ?? 0));
console.log(
  `berth peak RSS: ${peak.toFixed(1)} MB (limit 150 MB) ${peak < 150 ? 'OK' : 'OVER'}; ${(bytes / MB).toFixed(0)} MB per run`,
);
