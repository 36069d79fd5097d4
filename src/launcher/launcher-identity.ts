/**
 * Who launched a container, in a form another berth process on the same machine can check: the
 * host name, the process id and the process's start time (so a recycled pid is not mistaken for
 * the launcher). Containers of launchers on other machines are left to their expiry.
 */
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';

const PREFIX = 'local';

/** A process's state letter and start time, from /proc/PID/stat; null when there is none. */
function processStat(pid: number): { state: string; startTicks: string | null } | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields count from after the parenthesised command name, which may hold spaces: field 3 is
    // the state, field 22 the start time.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return { state: fields[0] ?? '', startTicks: fields[19] ?? null };
  } catch {
    return null;
  }
}

/** The launcher id of a process on this machine (berth's own: `currentLauncherId`). */
export function launcherIdOf(pid: number): string {
  return [PREFIX, hostname(), pid, processStat(pid)?.startTicks ?? 'unknown'].join('/');
}

export function currentLauncherId(): string {
  return launcherIdOf(process.pid);
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
  const current = processStat(pid);
  // A zombie (Z) or dying (X) process has ended; it only waits for its parent to reap it, which
  // may take long (its parent was killed too, or is a container's PID 1 without an init).
  if (current === null || current.state === 'Z' || current.state === 'X') return false;
  return ticks === 'unknown' || current.startTicks === ticks;
}

/** Whether `launcherId` names a process of this machine (one that isLauncherAlive can judge). */
export function isLauncherOfThisHost(launcherId: string): boolean {
  const [prefix, host] = launcherId.split('/');
  return prefix === PREFIX && host === hostname();
}
