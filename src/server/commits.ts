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
 * What the server could learn of the stack's branch at trigger: its head; that the repository
 * answered and has no such branch; or nothing (a local directory, a file:// repository, which
 * the worker reads on its machine, a git host out of the server's reach, credentials it refused).
 */
export type BranchHead = { sha: string } | { missing: string } | { unknown: true };

/**
 * The branch head. When it cannot be had now the run is bound to no commit and the worker takes
 * the branch head when it checks out, reporting any credential or access problem with its code in
 * the run's reason; a branch the repository says it does not have is the trigger's to refuse.
 */
export async function resolveCommit(
  stack: CommitSource,
  variables: readonly StackVariable[] = [],
): Promise<BranchHead> {
  // A local directory is read by the worker as it is when the run starts, on the worker's own
  // disk: no commit binds it, and the server's copy (if any) says nothing about it.
  if (!stack.repository) return { unknown: true };
  let credentials;
  try {
    credentials = gitCredentialsFrom(stack.repository, variables).credentials;
  } catch {
    return { unknown: true };
  }
  const branch = stack.branch ?? 'main';
  const access = await openGitAccess(stack.repository, credentials, { env: process.env });
  try {
    const { stdout } = await runGit(
      access,
      ['ls-remote', '--', stack.repository, `refs/heads/${branch}`],
      { timeoutMs: 20_000 },
    );
    // The pattern matches the end of a ref name (refs/heads/x/refs/heads/main too): the line of
    // the branch itself. An empty answer: the repository was read, and has no such branch; other
    // refs but not the branch's own line say nothing sure (the worker checks out the branch).
    const lines = stdout.split('\n').map((line) => line.trim().split(/\s+/));
    const ref = `refs/heads/${branch}`;
    const sha = lines.find(([, name]) => name === ref)?.[0];
    if (sha === undefined)
      return lines.some(([first]) => first) ? { unknown: true } : { missing: branch };
    return /^[0-9a-f]{40}([0-9a-f]{24})?$/.test(sha) ? { sha } : { unknown: true };
  } catch {
    return { unknown: true };
  } finally {
    await access.close();
  }
}
