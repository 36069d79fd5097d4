/**
 * `berth server` as a real process for end-to-end tests: started on a free loopback port, its
 * URL and the admin token it printed once read from its output, stopped with SIGTERM.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { BERTH_BIN } from './cli.js';

export interface ServerProcess {
  child: ChildProcess;
  url: string;
  /** The admin token printed on first start (empty on a later start of the same data). */
  admin: string;
}

/** Starts `berth server ARGS` (add --listen to choose the address) and waits until it listens. */
export async function startBerthServer(
  args: string[],
  env: Record<string, string> = {},
): Promise<ServerProcess> {
  const listen = args.includes('--listen') ? [] : ['--listen', '127.0.0.1:0'];
  const child = spawn(process.execPath, [BERTH_BIN, 'server', ...listen, ...args], {
    env: { ...process.env, NO_COLOR: '1', ...env },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let said = '';
  await new Promise<void>((resolve, reject) => {
    child.stderr?.on('data', (chunk: Buffer) => {
      said += chunk.toString();
      if (/listening on https?:/.test(said)) resolve();
    });
    child.on('exit', (code) => reject(new Error(`berth server exited (${code}): ${said}`)));
  });
  return {
    child,
    url: /listening on (https?:\/\/\S+)/.exec(said)?.[1] as string,
    admin: /admin token \(shown once, keep it\): (\S+)/.exec(said)?.[1] ?? '',
  };
}

/** SIGTERM, and the exit code once it has exited (at once when it had already). */
export async function stopProcess(child: ChildProcess | undefined): Promise<number | null> {
  if (!child) return null;
  if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
  const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
  child.kill('SIGTERM');
  return exited;
}

/** Drains (SIGTERM) and waits for each of `workers`, emptying the list. */
export async function stopWorkers(workers: { child: ChildProcess; exited: Promise<unknown> }[]) {
  for (const worker of workers.splice(0)) {
    worker.child.kill('SIGTERM');
    await worker.exited;
  }
}
