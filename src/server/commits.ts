/**
 * The commit a run is bound to when it is triggered: the head of the stack's branch at that
 * moment (`git ls-remote`); none for a local directory (the worker reads it as it is). Git runs
 * with no prompt, configuration, keys or agent of the server's user, under a deadline.
 */
import { execFile } from 'node:child_process';
import { gitEnvironment, gitSafetyOptions } from '../domain/git-environment.js';

function git(args: string[]): Promise<string | null> {
  return new Promise((resolve) => {
    execFile(
      'git',
      [...gitSafetyOptions(), ...args],
      { timeout: 20_000, env: gitEnvironment(process.env) },
      (err, stdout) => resolve(err ? null : stdout.trim()),
    );
  });
}

export async function resolveCommit(stack: {
  repository: string | null;
  branch: string | null;
  localDir: string | null;
}): Promise<string | null> {
  if (stack.repository) {
    const out = await git([
      'ls-remote',
      '--',
      stack.repository,
      `refs/heads/${stack.branch ?? 'main'}`,
    ]);
    const sha = out?.split(/\s+/)[0] ?? '';
    return /^[0-9a-f]{40}([0-9a-f]{24})?$/.test(sha) ? sha : null;
  }
  // A local directory is read by the worker as it is when the run starts, on the worker's own
  // disk: no commit binds it, and the server's copy (if any) says nothing about it.
  return null;
}
