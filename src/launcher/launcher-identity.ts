/**
 * Who launched a container, in a form another berth process on the same machine can check: the
 * host name, the process id and the process's start time (so a recycled pid is not mistaken for
 * the launcher). Containers of launchers on other machines are left to their expiry.
 */
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';

const PREFIX = 'local';

function processStartTicks(pid: number): string | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Field 22 (starttime) counts from after the parenthesised command name, which may hold spaces.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return fields[19] ?? null;
  } catch {
    return null;
  }
}

export function currentLauncherId(): string {
  return launcherIdOf(process.pid);
}

/**
 * The launcher id of a process on this machine (read while it runs): what its containers carry.
 * The test harness uses it to tell the berth processes it started from everyone else's.
 */
export function launcherIdOf(pid: number): string {
  return [PREFIX, hostname(), pid, processStartTicks(pid) ?? 'unknown'].join('/');
}

/**
 * False only when the launcher certainly is gone: same host, and no process with that pid and
 * start time. Anything berth cannot judge (another host, another format) counts as alive.
 */
export function isLauncherAlive(launcherId: string): boolean {
  const [prefix, host, pidText, ticks] = launcherId.split('/');
  if (prefix !== PREFIX || host !== hostname() || pidText === undefined) return true;
  const pid = Number(pidText);
  if (!Number.isInteger(pid) || pid <= 0) return true;
  const current = processStartTicks(pid);
  if (current === null) return false;
  return ticks === 'unknown' || current === ticks;
}
