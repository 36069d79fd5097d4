import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { currentLauncherId, isLauncherAlive, launcherIdOf } from './launcher-identity.js';

const started: number[] = [];

afterEach(() => {
  for (const pid of started.splice(0)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // Already gone.
    }
  }
});

function stateOf(pid: number): string {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[0] as string;
}

/**
 * Polls /proc until the process is in STATE: the kernel's own answer, no fixed sleep. A killed
 * process needs CPU time to exit: on a loaded machine that can take a while, so the poll waits a
 * few milliseconds between looks (up to about 20 s) rather than spinning a fixed number of turns.
 */
async function untilState(pid: number, state: string): Promise<void> {
  for (let i = 0; i < 4000 && stateOf(pid) !== state; i++) {
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  expect(stateOf(pid)).toBe(state);
}

describe('launcher identity', () => {
  it('counts this process, and a live process with its own start time, as alive', () => {
    expect(isLauncherAlive(currentLauncherId())).toBe(true);
    expect(isLauncherAlive(launcherIdOf(process.ppid))).toBe(true);
  });

  it('counts a recycled pid (another start time) as gone', () => {
    const [prefix, host, pid] = currentLauncherId().split('/');
    expect(isLauncherAlive([prefix, host, pid, '1'].join('/'))).toBe(false);
  });

  it('counts a killed launcher that is a zombie (its parent has not reaped it) as gone', async () => {
    // `sleep` becomes the parent of the background child and never waits for it: once killed,
    // the child stays a zombie, as berth does after `kill -KILL` when its shell was killed too.
    const parent = spawn('sh', ['-c', 'sleep 600 & echo $!; exec sleep 600'], {
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    started.push(parent.pid as number);
    const childPid = await new Promise<number>((resolve) =>
      parent.stdout.once('data', (chunk: Buffer) => resolve(Number(chunk.toString().trim()))),
    );
    started.push(childPid);
    const id = launcherIdOf(childPid);
    expect(isLauncherAlive(id)).toBe(true);
    process.kill(childPid, 'SIGKILL');
    await untilState(childPid, 'Z');
    // The pid and its start time are still in /proc, but the process is gone.
    expect(isLauncherAlive(id)).toBe(false);
  });
});
