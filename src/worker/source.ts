/**
 * A run's source on the worker: the stack's local directory as it is, or its repository at the
 * run's commit, checked out from the worker's repository cache with the stack's git credentials.
 * The credentials (BERTH_GIT_* variables) are berth's, for the checkout: they are taken out of
 * the variables the job gets.
 */
import { rm, stat } from 'node:fs/promises';
import { hostname } from 'node:os';
import path from 'node:path';
import { BerthError } from '../domain/errors.js';
import { gitCredentialsFrom, type StackVariable } from '../domain/git-source.js';
import type { AssignmentBody } from './protocol.js';
import type { RepositoryCache } from './repository-cache.js';

export interface RunSource {
  dir: string;
  /** The stack's variables for the job: without berth's git credentials. */
  environment: StackVariable[];
  /** The commit checked out and the stack's branch; none for a local directory (git is asked). */
  commit?: { sha: string; branch: string };
  /** Lines for the run's log (a damaged cache cloned again). */
  warnings: string[];
  /** Removes the checkout (never the stack's local directory); safe to call twice. */
  cleanup: () => Promise<void>;
}

/** Gets a run's source; `signal` stops a checkout under way (with the signal's reason). */
export async function prepareSource(
  assignment: AssignmentBody,
  cache: RepositoryCache,
  signal?: AbortSignal,
): Promise<RunSource> {
  const stack = assignment.stack;
  const { credentials, jobVariables } = gitCredentialsFrom(
    stack.repository,
    assignment.environment,
  );
  if (stack.localDir) {
    await requireDirectory(stack.id, stack.localDir);
    return {
      dir: stack.localDir,
      environment: jobVariables,
      warnings: [],
      cleanup: () => Promise.resolve(),
    };
  }
  if (!stack.repository)
    throw new BerthError('BERTH_USAGE', `stack ${stack.id} has no source`, {
      hint: `Give the stack a source: \`berth stack update ${stack.id} --repo URL\` (a repository) or \`--dir DIR\` (a directory on the workers' machines).`,
    });
  const parent = await cache.newCheckoutDir();
  const dir = path.join(parent, 'source');
  const cleanup = (): Promise<void> => rm(parent, { recursive: true, force: true });
  try {
    const { commit, warnings } = await cache.checkout({
      repository: stack.repository,
      branch: stack.branch ?? 'main',
      commit: assignment.run.commit,
      credentials,
      // file:// only on a private pool (the server lets only the admin name one there).
      allowFileTransport: assignment.pool.kind === 'private',
      into: dir,
      signal,
    });
    return {
      dir,
      commit: { sha: commit, branch: stack.branch ?? 'main' },
      environment: jobVariables,
      warnings,
      cleanup,
    };
  } catch (err) {
    await cleanup();
    throw err;
  }
}

/**
 * A stack's local directory is read on the worker's machine: one that is not there (a path on
 * another machine, a typo) fails the run saying so, not later with "no .berth/task.sh".
 */
async function requireDirectory(stackId: string, dir: string): Promise<void> {
  const problem = await stat(dir).then(
    (info) => (info.isDirectory() ? null : 'is not a directory'),
    (err: NodeJS.ErrnoException) =>
      err.code === 'ENOENT' ? 'does not exist' : `cannot be read (${err.code ?? err.message})`,
  );
  if (problem === null) return;
  throw new BerthError(
    'BERTH_WORKSPACE_UNREADABLE',
    `stack ${stackId}'s source directory ${dir} ${problem} on worker host ${hostname()}`,
    {
      hint: "A stack's --dir names a directory on the machines of its pool's workers (with berth up, this machine): create it there, or point the stack at the right one (`berth stack update STACK --dir DIR`) or at a repository (`--repo URL`).",
    },
  );
}
