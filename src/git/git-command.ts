/**
 * git as an outside system, for a repository a tenant named, with the stack's credentials.
 *
 * Lifecycle: `openGitAccess` prepares the credentials (an SSH key and known_hosts in a private
 * temporary directory, files mode 0600); every `runGit` with that access uses them; `close`
 * removes the files and is safe to call twice. Credentials never go on a command line (`ps`
 * shows those) or into a URL git could print: a token travels as an HTTP header set through
 * git's `GIT_CONFIG_*` environment (readable by the same user only) and scoped to the
 * repository's host, a key as a file path. git's own output is masked before anyone sees it.
 */
import { spawn } from 'node:child_process';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { gitEnvironment, gitSafetyOptions } from '../domain/git-environment.js';
import { httpCredentialScope, type GitCredentials } from '../domain/git-source.js';
import { maskAll } from '../domain/log-masker.js';

export interface GitAccess {
  /** The environment of every git process for this repository. */
  readonly env: Record<string, string>;
  /** git's options before the command (no hooks, no fsmonitor, file:// only where allowed). */
  readonly options: string[];
  /** Values masked in anything git says. */
  readonly secrets: string[];
  readonly credentials: GitCredentials['kind'];
  close(): Promise<void>;
}

export interface GitResult {
  stdout: string;
  stderr: string;
}

/** A git command that failed: its masked standard error, for classifyGitFailure. */
export class GitCommandError extends Error {
  constructor(
    readonly args: string[],
    readonly stderr: string,
    readonly timedOut: boolean,
  ) {
    super(`git ${args[0] ?? ''} failed: ${stderr.trim().split('\n').at(-1) ?? ''}`);
    this.name = 'GitCommandError';
  }
}

/** Single-quotes a word for the shell git runs GIT_SSH_COMMAND with. */
function shellWord(word: string): string {
  return `'${word.replace(/'/g, `'\\''`)}'`;
}

export async function openGitAccess(
  repository: string,
  credentials: GitCredentials,
  options: { allowFileTransport?: boolean; env: NodeJS.ProcessEnv },
): Promise<GitAccess> {
  const env = gitEnvironment(options.env);
  const gitOptions = gitSafetyOptions(options.allowFileTransport ?? false);
  const base = { options: gitOptions, credentials: credentials.kind };
  if (credentials.kind === 'none') {
    return { ...base, env, secrets: [], close: () => Promise.resolve() };
  }
  if (credentials.kind === 'token') {
    const basic = Buffer.from(`${credentials.username}:${credentials.token}`).toString('base64');
    return {
      ...base,
      env: {
        ...env,
        GIT_CONFIG_COUNT: '1',
        GIT_CONFIG_KEY_0: `http.${httpCredentialScope(repository)}.extraHeader`,
        GIT_CONFIG_VALUE_0: `Authorization: Basic ${basic}`,
      },
      secrets: [credentials.token, basic],
      close: () => Promise.resolve(),
    };
  }
  // The key and the pinned host keys live in a directory only this user can enter.
  const dir = await mkdtemp(path.join(tmpdir(), 'berth-git-ssh-'));
  await chmod(dir, 0o700);
  const keyFile = path.join(dir, 'key');
  const knownHostsFile = path.join(dir, 'known_hosts');
  let closed = false;
  const close = async (): Promise<void> => {
    if (closed) return;
    closed = true;
    await rm(dir, { recursive: true, force: true });
  };
  try {
    await writeFile(keyFile, credentials.privateKey, { mode: 0o600, flag: 'wx' });
    await writeFile(knownHostsFile, credentials.knownHosts ? `${credentials.knownHosts}\n` : '', {
      mode: 0o600,
      flag: 'wx',
    });
  } catch (err) {
    await close();
    throw err;
  }
  // No configuration file, agent or other key of the machine's user; only the pinned host keys,
  // checked strictly (an unknown or changed key fails the checkout).
  const ssh = [
    'ssh',
    '-F /dev/null',
    '-o BatchMode=yes',
    '-o IdentitiesOnly=yes',
    '-o IdentityAgent=none',
    `-o IdentityFile=${shellWord(keyFile)}`,
    `-o UserKnownHostsFile=${shellWord(knownHostsFile)}`,
    '-o GlobalKnownHostsFile=/dev/null',
    '-o StrictHostKeyChecking=yes',
    '-o UpdateHostKeys=no',
  ].join(' ');
  return {
    ...base,
    env: { ...env, GIT_SSH_COMMAND: ssh, GIT_SSH_VARIANT: 'ssh' },
    secrets: [credentials.privateKey.trim()],
    close,
  };
}

/** Why `signal` aborted, as an Error (what AbortSignal.abort was given, when it is one). */
export function stopReason(signal: AbortSignal | undefined): Error {
  const reason: unknown = signal?.reason;
  return reason instanceof Error ? reason : new Error(`stopped: ${String(reason)}`);
}

/** How long git and its helpers get to end on SIGTERM (a timeout, a stop) before SIGKILL. */
const GIT_KILL_GRACE_MS = 2000;

/** git's output kept for one command (a `ls-remote` of a large repository is the largest). */
const MAX_OUTPUT_BYTES = 64 * 1024 * 1024;

/**
 * Runs one git command with the access's environment; rejects with a GitCommandError carrying
 * git's masked standard error. `extraEnv` is for git's own variables (GIT_INDEX_FILE). Once
 * `signal` aborts, git is killed and the call rejects with the signal's reason.
 *
 * git runs in a process group of its own, and a timeout or a stop ends the whole group (SIGTERM,
 * then SIGKILL): git's helpers (git-remote-https, ssh, index-pack) would otherwise stay, waiting
 * on a stalled server, after git itself was killed. Its own group also keeps a terminal's Ctrl-C
 * (the worker's drain) from ending a checkout under way.
 */
export function runGit(
  access: GitAccess,
  args: string[],
  options: { timeoutMs: number; extraEnv?: Record<string, string>; signal?: AbortSignal } = {
    timeoutMs: 10 * 60_000,
  },
): Promise<GitResult> {
  return new Promise((resolve, reject) => {
    if (options.signal?.aborted) {
      reject(stopReason(options.signal));
      return;
    }
    const child = spawn('git', [...access.options, ...args], {
      env: { ...access.env, ...options.extraEnv },
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const stdout: Buffer[] = [];
    const stderr: Buffer[] = [];
    let size = 0;
    let ended: 'timeout' | 'stopped' | 'overflow' | null = null;
    const signalGroup = (signal: NodeJS.Signals): void => {
      try {
        process.kill(-(child.pid as number), signal);
      } catch {
        // Already gone.
      }
    };
    let killTimer: NodeJS.Timeout | undefined;
    // SIGTERM first: git then removes its lock and temporary files (a ref's `.lock` left behind
    // would fail every later fetch into the cache); SIGKILL for what has not ended after that.
    const end = (why: NonNullable<typeof ended>): void => {
      if (ended !== null) return;
      ended = why;
      signalGroup('SIGTERM');
      killTimer = setTimeout(() => signalGroup('SIGKILL'), GIT_KILL_GRACE_MS);
    };
    const keep =
      (into: Buffer[]) =>
      (chunk: Buffer): void => {
        size += chunk.length;
        if (size > MAX_OUTPUT_BYTES) end('overflow');
        else into.push(chunk);
      };
    child.stdout.on('data', keep(stdout));
    child.stderr.on('data', keep(stderr));
    const timer = setTimeout(() => end('timeout'), options.timeoutMs);
    const onAbort = (): void => end('stopped');
    let settled = false;
    const settle = (): boolean => {
      if (settled) return false;
      settled = true;
      clearTimeout(timer);
      clearTimeout(killTimer);
      options.signal?.removeEventListener('abort', onAbort);
      return true;
    };
    child.on('error', () => {
      // git could not be started (not installed): no output to classify.
      if (settle()) reject(new GitCommandError(args, '', false));
    });
    child.on('close', (code) => {
      if (!settle()) return;
      const masked = maskAll(Buffer.concat(stderr).toString('utf8'), access.secrets);
      if (ended === 'stopped') reject(stopReason(options.signal));
      else if (ended === 'timeout')
        reject(
          new GitCommandError(args, `${masked}\ngit timed out after ${options.timeoutMs} ms`, true),
        );
      else if (ended === 'overflow')
        reject(
          new GitCommandError(
            args,
            `${masked}\ngit wrote more than ${MAX_OUTPUT_BYTES} bytes`,
            false,
          ),
        );
      else if (code !== 0) reject(new GitCommandError(args, masked, false));
      else resolve({ stdout: Buffer.concat(stdout).toString('utf8'), stderr: masked });
    });
    if (child.pid !== undefined) options.signal?.addEventListener('abort', onAbort, { once: true });
  });
}
