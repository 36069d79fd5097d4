/**
 * The worker's repository cache: one bare repository per repository URL in the worker's state
 * directory (`repositories/<sha256 of the URL>.git`), so a run fetches only what is new since the
 * last run of that repository, and the run's commit is checked out from it into a fresh directory
 * (no `.git` there: the job gets the files, not the cache).
 *
 * Lifecycle and guarantees:
 * - every checkout fetches from the repository with the run's own credentials first, so a cached
 *   repository is never handed to a run that could not read it itself;
 * - one checkout of a repository at a time, across runs and processes: a lock file beside the
 *   cache names its owner; a lock whose owner is provably gone (launcher-identity) is taken over;
 * - a cache git finds corrupt is removed and cloned again once, with a warning for the run's log;
 * - a new cache appears whole (made in a temporary directory, then renamed).
 */
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readdir, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { BerthError } from '../domain/errors.js';
import { displayRepository, gitFailure, type GitCredentials } from '../domain/git-source.js';
import { claimOwnerFile } from '../launcher/owner-file.js';
import {
  GitCommandError,
  openGitAccess,
  runGit,
  stopReason,
  type GitAccess,
} from '../git/git-command.js';

/**
 * Words of git's that mean the repository's own files are damaged, not that the network failed.
 * A lock file of git's in the cache is damage too: no other git works in it while berth holds the
 * cache's lock, so one is left by a git that was killed.
 */
const CORRUPT =
  /\.lock': File exists|corrupt|bad object|not a git repository|missing (blob|tree|commit) |unable to read|does not match index|invalid object|bad config|loose object|unable to parse|did not send all necessary objects|failed to read object|packfile|object file .* is empty|bad tree object|fatal: bad /i;

export interface CheckoutRequest {
  repository: string;
  branch: string;
  /** The run's commit; null: the branch's head now. */
  commit: string | null;
  credentials: GitCredentials;
  /** file:// repositories: only a private pool's admin-made stacks. */
  allowFileTransport: boolean;
  /** An empty directory the source goes into. */
  into: string;
  /** Stops the checkout (git is killed, a wait for the lock ends) with the signal's reason. */
  signal?: AbortSignal;
}

export interface CheckoutResult {
  commit: string;
  /** For the run's log: e.g. a corrupt cache that was cloned again. */
  warnings: string[];
}

export interface RepositoryCacheOptions {
  /** The cache's directory (`<state dir>/repositories`). */
  dir: string;
  /**
   * Where runs' checkouts go (`<state dir>/checkouts`), one directory each, removed after the
   * run; what a worker that died left there is removed when it starts again (clearCheckouts).
   */
  checkoutsDir: string;
  /** Who holds a lock: this process's launcher id. */
  owner: string;
  /** False only when the owner of a lock certainly is gone (isLauncherAlive). */
  isOwnerAlive: (owner: string) => boolean;
  /** berth's own environment (PATH, proxies). */
  env: NodeJS.ProcessEnv;
  timeoutMs?: number;
  /** How long to wait for another process's lock before giving up. */
  lockWaitMs?: number;
}

export class RepositoryCache {
  /** Checkouts of one repository in this process, chained: the lock file guards other processes. */
  private readonly queues = new Map<string, Promise<unknown>>();

  constructor(private readonly options: RepositoryCacheOptions) {}

  /** A new empty directory for one run's checkout (under checkoutsDir). */
  async newCheckoutDir(): Promise<string> {
    await mkdir(this.options.checkoutsDir, { recursive: true, mode: 0o700 });
    return mkdtemp(path.join(this.options.checkoutsDir, 'run-'));
  }

  /** Removes every checkout left by an earlier process of this worker (it died mid-run). */
  async clearCheckouts(): Promise<number> {
    const left = await readdir(this.options.checkoutsDir).catch(() => []);
    for (const name of left)
      await rm(path.join(this.options.checkoutsDir, name), { recursive: true, force: true });
    return left.length;
  }

  /** Where the cache of a repository URL lives (the URL's SHA-256: no path from a tenant's text). */
  pathOf(repository: string): string {
    const key = createHash('sha256').update(repository).digest('hex').slice(0, 40);
    return path.join(this.options.dir, `${key}.git`);
  }

  async checkout(request: CheckoutRequest): Promise<CheckoutResult> {
    const cache = this.pathOf(request.repository);
    const previous = this.queues.get(cache) ?? Promise.resolve();
    let started = false;
    const mine = previous
      .catch(() => undefined)
      .then(() => {
        started = true;
        return this.checkoutLocked(cache, request);
      });
    this.queues.set(cache, mine);
    // Left in the queue until it has run, even when its caller stopped waiting for it: the next
    // checkout of the repository comes after it.
    mine
      .finally(() => {
        if (this.queues.get(cache) === mine) this.queues.delete(cache);
      })
      .catch(() => undefined);
    const signal = request.signal;
    if (!signal) return mine;
    // A checkout stopped while it waits for another run's ends that wait now; one under way
    // ends once git is gone and the lock given back (checkoutLocked).
    return new Promise((resolve, reject) => {
      const stop = (): void => {
        if (!started) reject(stopReason(signal));
      };
      if (signal.aborted) return stop();
      signal.addEventListener('abort', stop, { once: true });
      mine.finally(() => signal.removeEventListener('abort', stop)).then(resolve, reject);
    });
  }

  private async checkoutLocked(cache: string, request: CheckoutRequest): Promise<CheckoutResult> {
    request.signal?.throwIfAborted();
    await mkdir(this.options.dir, { recursive: true, mode: 0o700 });
    const release = await this.lock(cache, request.signal);
    try {
      const access = await openGitAccess(request.repository, request.credentials, {
        allowFileTransport: request.allowFileTransport,
        env: this.options.env,
      });
      try {
        return { commit: await this.fetchAndCheckout(cache, request, access), warnings: [] };
      } catch (err) {
        if (!(err instanceof CorruptCache) || request.signal?.aborted) throw err;
        // Damaged files of our own: clone again from scratch, once.
        await rm(cache, { recursive: true, force: true });
        await emptyDirectory(request.into);
        const commit = await this.fetchAndCheckout(cache, request, access);
        return {
          commit,
          warnings: [
            `the worker's cache of ${displayRepository(request.repository)} was damaged (git: ${err.detail}); it was removed and the repository cloned again`,
          ],
        };
      } finally {
        await access.close();
      }
    } finally {
      // Given back however the checkout ended (a failure to set up the credentials included).
      release();
    }
  }

  private async fetchAndCheckout(
    cache: string,
    request: CheckoutRequest,
    access: GitAccess,
  ): Promise<string> {
    const timeoutMs = this.options.timeoutMs ?? 10 * 60_000;
    const signal = request.signal;
    const git = async (args: string[], extraEnv?: Record<string, string>): Promise<string> =>
      (
        await runGit(access, ['--git-dir', cache, ...args], { timeoutMs, extraEnv, signal })
      ).stdout.trim();
    // Our own repository's state first: a damaged cache is not the remote's fault.
    if (await exists(cache)) {
      try {
        await git(['rev-parse', '--is-bare-repository']);
      } catch (err) {
        throw corruptOr(err, request, 'the cache');
      }
    } else {
      await this.createCache(cache, access, signal);
    }
    // Each branch under a name of its own in the cache: `release` and `release/1.0` (two stacks
    // of one repository) cannot both be refs/heads/ names, one being the other's directory.
    const branchRef = `refs/berth/branches/${Buffer.from(request.branch).toString('hex')}`;
    const fetch = async (refspec: string, what: string): Promise<void> => {
      try {
        await git([
          'fetch',
          '--quiet',
          '--no-tags',
          '--no-write-fetch-head',
          '--',
          request.repository,
          refspec,
        ]);
      } catch (err) {
        throw corruptOr(err, request, what);
      }
    };
    // Always a fetch, even when the commit is here: it proves the run's credentials reach the
    // repository, and it brings only the objects the cache lacks.
    let branchMissing: unknown = null;
    try {
      await fetch(`+refs/heads/${request.branch}:${branchRef}`, `branch ${request.branch}`);
    } catch (err) {
      if (!(
        err instanceof BerthError &&
        err.code === 'BERTH_GIT_COMMIT_NOT_FOUND' &&
        request.commit
      ))
        throw err;
      branchMissing = err;
    }
    const target = request.commit ?? branchRef;
    if (
      request.commit &&
      (branchMissing || !(await this.hasCommit(cache, access, request.commit, signal)))
    ) {
      // Not on the branch (any more): ask for the commit itself (hosts allow reachable commits).
      await fetch(`${request.commit}:refs/berth/${request.commit}`, `commit ${request.commit}`);
    }
    let commit: string;
    try {
      commit = await git(['rev-parse', '--verify', '--quiet', `${target}^{commit}`]);
    } catch (err) {
      if (err instanceof GitCommandError && err.stderr.trim() === '')
        throw new BerthError(
          'BERTH_GIT_COMMIT_NOT_FOUND',
          `${request.commit ? `commit ${request.commit}` : `branch ${request.branch}`} is not in ${displayRepository(request.repository)}`,
        );
      throw corruptOr(err, request, 'the commit');
    }
    // A private index file: the cache's own stays untouched, so readers never disturb each other.
    const index = path.join(path.dirname(request.into), `.${path.basename(request.into)}.index`);
    await mkdir(request.into, { recursive: true });
    try {
      await git(
        [
          '-c',
          'core.bare=false',
          '--work-tree',
          request.into,
          'read-tree',
          '--reset',
          '-u',
          commit,
        ],
        {
          GIT_INDEX_FILE: index,
        },
      );
    } catch (err) {
      throw corruptOr(err, request, 'the checkout');
    } finally {
      await rm(index, { force: true });
    }
    return commit;
  }

  private async hasCommit(
    cache: string,
    access: GitAccess,
    commit: string,
    signal: AbortSignal | undefined,
  ): Promise<boolean> {
    try {
      await runGit(access, ['--git-dir', cache, 'cat-file', '-e', `${commit}^{commit}`], {
        timeoutMs: 60_000,
        signal,
      });
      return true;
    } catch (err) {
      if (signal?.aborted) throw err;
      return false;
    }
  }

  /** A new bare repository, made beside the cache and renamed: never seen half made. */
  private async createCache(
    cache: string,
    access: GitAccess,
    signal: AbortSignal | undefined,
  ): Promise<void> {
    const temp = await mkdtemp(`${cache}.new-`);
    try {
      await runGit(access, ['init', '--quiet', '--bare', temp], { timeoutMs: 60_000, signal });
      // gc in the foreground (under our lock), never a background process racing the next run.
      await runGit(access, ['--git-dir', temp, 'config', 'gc.autoDetach', 'false'], {
        timeoutMs: 60_000,
        signal,
      });
      await rename(temp, cache);
    } catch (err) {
      await rm(temp, { recursive: true, force: true });
      throw err;
    }
  }

  /** Takes the cache's lock file (waiting for a live owner's); resolves to its release. */
  private async lock(cache: string, signal: AbortSignal | undefined): Promise<() => void> {
    const file = `${cache}.lock`;
    const until = Date.now() + (this.options.lockWaitMs ?? 15 * 60_000);
    for (;;) {
      const claim = claimOwnerFile(
        file,
        this.options.owner,
        (owner) => !this.options.isOwnerAlive(owner),
      );
      if (claim.held) return claim.release;
      if (Date.now() > until)
        throw new BerthError(
          'BERTH_GIT_FAILED',
          `the repository cache ${cache} stayed locked by ${claim.owner}`,
          { hint: `If no berth worker uses this state directory any more, remove ${file}.` },
        );
      await new Promise((resolve) => setTimeout(resolve, 100));
      signal?.throwIfAborted();
    }
  }
}

/** The cache was damaged (thrown inside, handled by cloning again). */
class CorruptCache extends Error {
  constructor(readonly detail: string) {
    super(detail);
  }
}

/** A git failure as berth's error, or CorruptCache when git says the cache's files are damaged. */
function corruptOr(err: unknown, request: CheckoutRequest, what: string): Error {
  if (!(err instanceof GitCommandError)) return err as Error;
  const failure = gitFailure(err.stderr, {
    repository: request.repository,
    credentials: request.credentials.kind,
    what,
  });
  if (failure.code === 'BERTH_GIT_FAILED' && !err.timedOut && CORRUPT.test(err.stderr)) {
    // The line that says what is damaged (git may add advice after it).
    const lines = err.stderr.trim().split('\n');
    return new CorruptCache(lines.find((line) => CORRUPT.test(line)) ?? lines.at(-1) ?? '');
  }
  return failure;
}

async function exists(file: string): Promise<boolean> {
  return stat(file).then(
    () => true,
    () => false,
  );
}

async function emptyDirectory(dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir);
}
