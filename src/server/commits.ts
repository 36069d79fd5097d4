/**
 * The commit a run is bound to when it is triggered: the head of the stack's branch at that
 * moment (`git ls-remote`); none for a local directory (the worker reads it as it is). git runs
 * with no prompt, configuration, keys or agent of the server's user, under a deadline, with the
 * stack's own git credentials (the BERTH_GIT_* variables) for a private repository.
 */
import { gitCredentialsFrom, type StackVariable } from '../domain/git-source.js';
import { openGitAccess, runGit } from '../git/git-command.js';

export interface CommitSource {
  repository: string | null;
  branch: string | null;
  localDir: string | null;
}

/**
 * The branch head, or null when it cannot be had now: the run is then bound to no commit and the
 * worker takes the branch head when it checks out, reporting any credential or access problem
 * with its code in the run's reason.
 */
export async function resolveCommit(
  stack: CommitSource,
  variables: readonly StackVariable[] = [],
): Promise<string | null> {
  // A local directory is read by the worker as it is when the run starts, on the worker's own
  // disk: no commit binds it, and the server's copy (if any) says nothing about it.
  if (!stack.repository) return null;
  let credentials;
  try {
    credentials = gitCredentialsFrom(stack.repository, variables).credentials;
  } catch {
    return null;
  }
  const access = await openGitAccess(stack.repository, credentials, { env: process.env });
  try {
    const { stdout } = await runGit(
      access,
      ['ls-remote', '--', stack.repository, `refs/heads/${stack.branch ?? 'main'}`],
      { timeoutMs: 20_000 },
    );
    const sha = stdout.trim().split(/\s+/)[0] ?? '';
    return /^[0-9a-f]{40}([0-9a-f]{24})?$/.test(sha) ? sha : null;
  } catch {
    return null;
  } finally {
    await access.close();
  }
}
