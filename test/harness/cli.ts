/**
 * Runs the real `berth` command (bin/berth.js on the built dist/) as a child process. Every child
 * is tracked; `expectNoChildren` fails a test that leaves one running.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { expect } from 'vitest';
import type { RunEvent } from '../../src/domain/run-events.js';
import { recordLauncherPid, tempDir } from './ownership.js';

export const BERTH_BIN = fileURLToPath(new URL('../../bin/berth.js', import.meta.url));
/** The installed command (package.json's bin): a shell script that starts BERTH_BIN. */
export const BERTH_COMMAND = fileURLToPath(new URL('../../bin/berth', import.meta.url));

const children = new Set<ChildProcess>();

export interface BerthProcess {
  child: ChildProcess;
  stdout(): string;
  stderr(): string;
  /** Resolves once stdout+stderr contain `text`. */
  waitFor(text: string | RegExp, timeoutMs?: number): Promise<void>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

export interface BerthResult {
  code: number | null;
  stdout: string;
  stderr: string;
  /** Parsed `--json` events (empty without --json). */
  events: RunEvent[];
}

/** A state directory private to one test, so stored logs never mix. */
export function testStateDir(): string {
  return tempDir('berth-state-');
}

/**
 * The machine's proxy settings (a CI machine may reach its package mirrors through one) must not
 * send berth's requests to the tests' loopback registries and mirrors elsewhere; a test that
 * wants a proxy sets one.
 */
function withoutProxy(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const copy = { ...env };
  for (const name of ['HTTPS_PROXY', 'https_proxy', 'HTTP_PROXY', 'http_proxy']) delete copy[name];
  return copy;
}

export function spawnBerth(
  args: string[],
  env: Record<string, string | undefined> = {},
  identity: {
    uid?: number;
    gid?: number;
    cwd?: string;
    input?: string;
    /** Leave stdin open for the test to write to (child.stdin). */
    interactive?: boolean;
    /** Start it as users do: the installed command, bin/berth (which runs `node -- bin/berth.js`). */
    command?: boolean;
    /** A command that runs berth (its arguments follow), e.g. `unshare -m …`. */
    through?: string[];
  } = {},
): BerthProcess {
  const { input, interactive, command, through, ...spawnOptions } = identity;
  // After "--", Node.js takes none of berth's arguments for its own (see bin/berth).
  const [berthFile, berthArgv] = command
    ? [BERTH_COMMAND, args]
    : [process.execPath, ['--', BERTH_BIN, ...args]];
  const [file, argv] = through?.length
    ? [through[0] as string, [...through.slice(1), berthFile, ...berthArgv]]
    : [berthFile, berthArgv];
  const child = spawn(file, argv, {
    ...spawnOptions,
    env: { ...withoutProxy(process.env), NO_COLOR: '1', ...env },
    stdio: [input === undefined && !interactive ? 'ignore' : 'pipe', 'pipe', 'pipe'],
  });
  if (input !== undefined) child.stdin?.end(input);
  children.add(child);
  // Its containers carry this launcher id: the leak checks look for those only.
  if (child.pid !== undefined) recordLauncherPid(child.pid);
  let out = '';
  let err = '';
  const waiters: { test: (s: string) => boolean; resolve: () => void }[] = [];
  const check = (): void => {
    for (const waiter of [...waiters]) {
      if (waiter.test(out + err)) {
        waiters.splice(waiters.indexOf(waiter), 1);
        waiter.resolve();
      }
    }
  };
  // Decoded as a stream: a character may be cut between two of berth's writes (it passes the
  // job's bytes on as they came).
  child.stdout?.setEncoding('utf8');
  child.stderr?.setEncoding('utf8');
  child.stdout?.on('data', (chunk: string) => {
    out += chunk;
    check();
  });
  child.stderr?.on('data', (chunk: string) => {
    err += chunk;
    check();
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.on('close', (code, signal) => {
      children.delete(child);
      resolve({ code, signal });
    });
  });
  return {
    child,
    stdout: () => out,
    stderr: () => err,
    exited,
    waitFor(text, timeoutMs = 60_000) {
      const test = (s: string): boolean =>
        typeof text === 'string' ? s.includes(text) : text.test(s);
      if (test(out + err)) return Promise.resolve();
      return new Promise((resolve, reject) => {
        const timer = setTimeout(
          () =>
            reject(
              new Error(
                `berth did not print ${String(text)} within ${timeoutMs}ms; output so far:\n${out}\n${err}`,
              ),
            ),
          timeoutMs,
        );
        waiters.push({
          test,
          resolve: () => {
            clearTimeout(timer);
            resolve();
          },
        });
        void exited.then(() => {
          if (!test(out + err)) {
            clearTimeout(timer);
            reject(
              new Error(`berth exited before printing ${String(text)}; output:\n${out}\n${err}`),
            );
          }
        });
      });
    },
  };
}

export async function runBerth(
  args: string[],
  env: Record<string, string | undefined> = {},
  options: { cwd?: string; input?: string; command?: boolean } = {},
): Promise<BerthResult> {
  return resultOf(spawnBerth(args, env, options), args.includes('--json'));
}

/** Waits for a berth process to end; `json`: its stdout is --json events. */
export async function resultOf(proc: BerthProcess, json: boolean): Promise<BerthResult> {
  const { code } = await proc.exited;
  const stdout = proc.stdout();
  const events = json
    ? stdout
        .split('\n')
        .filter((line) => line.startsWith('{'))
        .map((line) => JSON.parse(line) as RunEvent)
    : [];
  return { code, stdout, stderr: proc.stderr(), events };
}

export function finished(result: BerthResult): Extract<RunEvent, { type: 'run.finished' }> {
  const last = result.events.at(-1);
  if (last?.type !== 'run.finished') {
    throw new Error(
      `the last --json event is not run.finished:\n${result.stdout}\n${result.stderr}`,
    );
  }
  return last;
}

export function jobOutput(result: BerthResult, stream?: 'stdout' | 'stderr'): string {
  return result.events
    .filter(
      (e): e is Extract<RunEvent, { type: 'log' }> =>
        e.type === 'log' && (!stream || e.stream === stream),
    )
    .map((e) => e.text)
    .join('');
}

/** Fails when a test left a berth process running (and kills it so the suite can go on). */
export function expectNoChildren(): void {
  const running = [...children].filter((c) => c.exitCode === null && c.signalCode === null);
  for (const child of running) child.kill('SIGKILL');
  expect(running.map((c) => c.pid)).toEqual([]);
}
