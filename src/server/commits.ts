/**
 * The commit a run is bound to when it is triggered: the head of the stack's branch at that
 * moment (`git ls-remote`), or of a local directory's checkout. Git runs without a terminal
 * prompt, hooks or configuration from the directory, under a deadline.
 */
import { execFile } from 'node:child_process';

function git(args: string[]): Promise<string | null> {
  return new Promise((resolve) => {
    execFile(
      'git',
      ['-c', 'core.fsmonitor=false', '-c', 'core.hooksPath=/dev/null', ...args],
      { timeout: 20_000, env: { ...process.env, GIT_TERMINAL_PROMPT: '0' } },
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
  if (stack.localDir) {
    const sha = await git(['-C', stack.localDir, 'rev-parse', '--verify', '-q', 'HEAD']);
    return sha && /^[0-9a-f]{40}/.test(sha) ? sha : null;
  }
  return null;
}
