/** Shared helpers for the benchmarks: spawning with timings, statistics, the test image. */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ulidGenerator } from '../src/domain/ulid.js';
import type { Store } from '../src/store/store.js';
import { apiRequest } from '../test/harness/api-request.js';
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

/**
 * The fields of /proc/PID/stat after the command name (field 3 onwards: index 0 is the state):
 * the name (field 2) may hold spaces, so they are counted after its closing parenthesis.
 */
function statFields(pid: number | 'self'): string[] {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
}

/**
 * Sums /proc/PID/stat's clock ticks (10 ms) from field index `from` to `to` (utime 11, stime 12,
 * reaped children's cutime 13 and cstime 14), in ms; 0 when the process is gone.
 */
function statCpuMs(pid: number | 'self' | undefined, from: number, to: number): number {
  if (!pid) return 0;
  try {
    const fields = statFields(pid);
    let ticks = 0;
    for (let i = from; i <= to; i += 1) ticks += Number(fields[i]);
    return ticks * 10;
  } catch {
    return 0;
  }
}

/** utime + stime of a process, in ms. */
function readCpuMs(pid: number | undefined): number {
  return statCpuMs(pid, 11, 12);
}

/**
 * CPU time so far (user + system, with that of its reaped children) of a process, in ms; 0 when
 * it is gone. Children count: the engine re-executes itself for some calls (archive copies).
 */
export function processCpuMs(pid: number | undefined): number {
  return statCpuMs(pid, 11, 14);
}

/** CPU time (user + system) of this process's reaped children so far, in ms. */
export function childrenCpuMs(): number {
  return statCpuMs('self', 13, 14);
}

/**
 * The engine's processes on this machine for DOCKER_HOST (a Unix socket): its dockerd and that
 * dockerd's containerd, found in /proc by their command lines; empty when not found (a remote
 * engine, or not allowed to look).
 */
export function engineProcesses(): { name: string; pid: number }[] {
  const host = process.env.DOCKER_HOST ?? 'unix:///var/run/docker.sock';
  const socket = host.startsWith('unix://') ? host.slice('unix://'.length) : null;
  if (!socket) return [];
  const all: { pid: number; ppid: number; args: string }[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const args = readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0').join(' ');
      const ppid = Number(statFields(Number(entry))[1]);
      all.push({ pid: Number(entry), ppid, args });
    } catch {
      // Gone meanwhile.
    }
  }
  const daemons = all.filter((p) => /(^|\/)dockerd /.test(p.args));
  const dockerd =
    daemons.find((p) => p.args.includes(socket)) ??
    (socket === '/var/run/docker.sock' && daemons.length === 1 ? daemons[0] : undefined);
  if (!dockerd) return [];
  const containerd = all.find((p) => p.ppid === dockerd.pid && /(^|\/)containerd /.test(p.args));
  return [
    { name: 'dockerd', pid: dockerd.pid },
    ...(containerd ? [{ name: 'containerd', pid: containerd.pid }] : []),
  ];
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

/**
 * The engine the figures come from: its version matters (Docker 20.10, Debian 12's, re-executes
 * itself for every archive copy into a container; 23 and later do not, docs/performance.md).
 */
export async function engineVersion(): Promise<string> {
  const engine = testEngine();
  try {
    return (await engine.version()).text;
  } finally {
    engine.close();
  }
}

/** A real `berth server` and `berth worker` for the worker-path benchmarks, and the API. */
export interface WorkerPath {
  api: <T>(method: string, route: string, body?: unknown) => Promise<T>;
  serverPid: number | undefined;
  workerPid: number | undefined;
  /** Ends both processes (SIGTERM) and removes their directories. */
  stop(): Promise<void>;
}

export function startBerth(
  args: string[],
  env: NodeJS.ProcessEnv,
  ready: RegExp,
  nodeArgs: string[] = [],
): Promise<{ child: ChildProcess; said: () => string }> {
  const child = spawn(process.execPath, [...nodeArgs, BERTH_BIN, ...args], {
    env: { ...process.env, NO_COLOR: '1', ...env },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let said = '';
  return new Promise((resolve, reject) => {
    child.stderr?.on('data', (chunk: Buffer) => {
      said += chunk.toString();
      if (ready.test(said)) resolve({ child, said: () => said });
    });
    child.on('exit', (code) => reject(new Error(`berth ${args[0]} exited (${code}): ${said}`)));
  });
}

/**
 * A server (SQLite in a scratch directory, or `databaseUrl`), a private pool `bench` that runs
 * the engine's own images (pull policy never), a stack `bench` whose task is `task`, on `image`,
 * and one worker of the pool with `concurrency`.
 */
export async function startWorkerPath(options: {
  image: string;
  task: string;
  concurrency: number;
  databaseUrl?: string;
  /** More of the server's and the worker's environment (e.g. BERTH_LOG_LIMIT, read by both). */
  env?: NodeJS.ProcessEnv;
}): Promise<WorkerPath> {
  const scratch = mkdtempSync(path.join(tmpdir(), 'berth-bench-worker-'));
  const server = await startBerth(
    ['server', '--listen', '127.0.0.1:0', '--data-dir', path.join(scratch, 'server')],
    {
      ...options.env,
      ...(options.databaseUrl
        ? {
            BERTH_DATABASE_URL: options.databaseUrl,
            // One key for every benchmark run on a database given again (BENCH_DATABASE_URL): a
            // new data directory's own key would be refused (BERTH_SECRETS_KEY_MISMATCH).
            BERTH_SECRETS_KEY: Buffer.alloc(32, 1).toString('base64'),
          }
        : {}),
    },
    /listening on http/,
    // e.g. "--cpu-prof --cpu-prof-dir=DIR": where the server's (BENCH_WORKER_NODE_ARGS: the
    // worker's) time goes.
    process.env.BENCH_SERVER_NODE_ARGS?.split(' ').filter(Boolean) ?? [],
  );
  const url = /listening on (http:\/\/\S+)/.exec(server.said())?.[1] as string;
  const admin = /admin token \(shown once, keep it\): (\S+)/.exec(server.said())?.[1] as string;
  const api = adminApi(url, admin);
  const source = path.join(scratch, 'stack');
  mkdirSync(path.join(source, '.berth'), { recursive: true });
  writeFileSync(path.join(source, '.berth', 'task.sh'), options.task);
  const { token } = await api<{ token: string }>('POST', '/pools', {
    id: 'bench',
    kind: 'private',
    pullPolicy: 'never',
  });
  await api('POST', '/stacks', {
    id: 'bench',
    localDir: source,
    pool: 'bench',
    runnerImage: options.image,
  });
  const worker = await startBerth(
    ['worker', '--server', url, '--concurrency', String(options.concurrency)],
    { ...options.env, BERTH_POOL_TOKEN: token, BERTH_STATE_DIR: path.join(scratch, 'worker') },
    /registered in pool/,
    process.env.BENCH_WORKER_NODE_ARGS?.split(' ').filter(Boolean) ?? [],
  );
  return {
    api,
    serverPid: server.child.pid,
    workerPid: worker.child.pid,
    stop: async () => {
      for (const child of [worker.child, server.child]) {
        const exited = new Promise((resolve) => child.on('exit', resolve));
        child.kill('SIGTERM');
        await exited;
      }
      rmSync(scratch, { recursive: true, force: true });
    },
  };
}

/** Calls the API of the server at `url` with the admin token; JSON in and out. */
export function adminApi(url: string, admin: string) {
  return async <T>(method: string, route: string, body?: unknown): Promise<T> => {
    const res = await apiRequest(url, admin, method, route, body);
    if (!res.ok) throw new Error(`${method} ${route}: ${res.status} ${await res.text()}`);
    return (await res.json()) as T;
  };
}

const newRunId = ulidGenerator(Date.now, (n) => randomBytes(n));

/** Queues `count` task runs of stack `bench` in pool `bench` straight in the store. */
export async function queueRuns(store: Store, count: number): Promise<void> {
  const at = new Date();
  for (let i = 0; i < count; i += 1) {
    await store.createRun(
      {
        id: newRunId(),
        stackId: 'bench',
        poolId: 'bench',
        kind: 'TASK',
        commitSha: null,
        triggeredBy: 'bench',
        autoDeploy: false,
      },
      at,
    );
  }
}

/** A run as the API shows it, with its state history. */
export interface RunView {
  id: string;
  state: string;
  createdAt: string;
  states: { state: string; at: string }[];
}

/** When the run entered `state`, by the server's clock (ms). */
export function stateAt(run: RunView, state: string): number {
  return Date.parse(run.states.find((s) => s.state === state)?.at ?? 'x');
}

/** Peak RSS of a process in MB (VmHWM). */
export function peakRssMb(pid: number | undefined): number {
  return readPeakRss(pid) / 1024;
}
