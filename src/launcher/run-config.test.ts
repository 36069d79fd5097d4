import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { BerthError } from '../domain/errors.js';
import { gitCommit, mayBeInRepository, withToolFlags } from './run-config.js';

function failure(run: () => unknown): BerthError {
  try {
    run();
  } catch (err) {
    expect(err).toBeInstanceOf(BerthError);
    return err as BerthError;
  }
  throw new Error('expected an error');
}

describe('--tool and --tool-version', () => {
  it.each([
    [
      'terraform',
      '1.6.2',
      { terraform_workflow_tool: 'TERRAFORM_FOSS', terraform_version: '1.6.2' },
    ],
    ['opentofu', '~> 1.8', { terraform_workflow_tool: 'OPEN_TOFU', opentofu_version: '~> 1.8' }],
    ['tofu', undefined, { terraform_workflow_tool: 'OPEN_TOFU' }],
    [
      'OPEN_TOFU',
      '>= 1.6, < 2.0',
      { terraform_workflow_tool: 'OPEN_TOFU', opentofu_version: '>= 1.6, < 2.0' },
    ],
    ['custom', undefined, { terraform_workflow_tool: 'CUSTOM' }],
  ])('--tool %s --tool-version %s', (tool, version, settings) => {
    expect(withToolFlags({ runner_image: 'x' }, tool, version)).toEqual({
      runner_image: 'x',
      ...settings,
    });
  });

  it('takes the tool from the stack settings file when --tool is not given', () => {
    expect(
      withToolFlags({ terraform_workflow_tool: 'TERRAFORM_FOSS' }, undefined, '1.5.7'),
    ).toEqual({
      terraform_workflow_tool: 'TERRAFORM_FOSS',
      terraform_version: '1.5.7',
    });
  });

  it('refuses an unknown tool, a bad version, a version without a tool and one for CUSTOM', () => {
    expect(failure(() => withToolFlags({}, 'pulumi', undefined)).message).toContain(
      '--tool "pulumi"',
    );
    expect(failure(() => withToolFlags({}, 'terraform', 'latest!')).message).toContain(
      '--tool-version:',
    );
    expect(failure(() => withToolFlags({}, undefined, '1.6.2')).hint).toContain('--tool terraform');
    expect(failure(() => withToolFlags({}, 'custom', '1.0.0')).message).toContain('CUSTOM');
  });
});

describe('the commit of a job directory', () => {
  const scratch = mkdtempSync(path.join(tmpdir(), 'berth-git-commit-'));
  afterAll(() => rmSync(scratch, { recursive: true, force: true }));
  const git = (dir: string, ...args: string[]): string =>
    execFileSync(
      'git',
      ['-C', dir, '-c', 'user.name=t', '-c', 'user.email=t@example.com', ...args],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    )
      .toString()
      .trim();
  /** What git itself says: is `dir` in a repository? */
  const gitFindsOne = (dir: string): boolean => {
    try {
      git(dir, 'rev-parse', '--git-dir');
      return true;
    } catch {
      return false;
    }
  };

  it('asks git nothing where git could find no repository, and answers empty there', async () => {
    const plain = path.join(scratch, 'plain', 'deep');
    mkdirSync(plain, { recursive: true });
    // Never "no" where git finds one (a scratch directory inside a checkout).
    expect(await mayBeInRepository(plain, {})).toBe(gitFindsOne(plain));
    expect(await mayBeInRepository(plain, { GIT_DIR: '/elsewhere/.git' })).toBe(true);
    if (!gitFindsOne(plain)) expect(await gitCommit(plain)).toEqual({ sha: '', branch: '' });
  });

  it('finds the commit and branch of a checkout from any directory in it, and a bare repository', async () => {
    const repo = path.join(scratch, 'repo');
    mkdirSync(path.join(repo, 'envs', 'dev'), { recursive: true });
    git(repo, 'init', '--quiet', '--initial-branch=trunk');
    git(repo, 'commit', '--quiet', '--allow-empty', '-m', 'first');
    const sha = git(repo, 'rev-parse', 'HEAD');
    const inside = path.join(repo, 'envs', 'dev');
    expect(await mayBeInRepository(inside, {})).toBe(true);
    expect(await gitCommit(inside)).toEqual({ sha, branch: 'trunk' });
    const bare = path.join(scratch, 'bare.git');
    git(scratch, 'init', '--quiet', '--bare', bare);
    expect(await mayBeInRepository(bare, {})).toBe(true);
  });
});
