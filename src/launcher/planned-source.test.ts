/**
 * The configuration a directory stack's apply takes from its saved workspace: the planned
 * configuration and workflow files and the directories, nothing else, nothing outside the
 * target, and no apply from a configuration file that is not one the plan could have read.
 */
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import tar from 'tar-stream';
import { afterEach, describe, expect, it } from 'vitest';
import { BerthError } from '../domain/errors.js';
import { extractPlannedSource } from './planned-source.js';
import { writeSealed } from './sealed-archive.js';

type Entry = { name: string; type?: 'file' | 'directory' | 'symlink'; content?: string };

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

async function savedWorkspace(
  entries: Entry[],
): Promise<{ archive: Awaited<ReturnType<typeof writeSealed>>; into: string }> {
  const dir = mkdtempSync(path.join(tmpdir(), 'berth-planned-'));
  dirs.push(dir);
  const archive = await writeSealed(path.join(dir, 'workspace.tar.sealed'), async (sink) => {
    const pack = tar.pack();
    for (const { name, type = 'file', content = '' } of entries) {
      if (type === 'symlink') pack.entry({ name, type, linkname: '/etc/passwd' });
      else if (type === 'directory') pack.entry({ name, type });
      else pack.entry({ name, type }, content);
    }
    pack.finalize();
    await pipeline(pack, sink);
  });
  return { archive, into: path.join(dir, 'planned-source') };
}

describe('the configuration an apply takes from the saved workspace', () => {
  it('writes the configuration and workflow files and the directories of the source, nothing else', async () => {
    const { archive, into } = await savedWorkspace([
      { name: 'workspace/', type: 'directory' },
      { name: 'workspace/source/', type: 'directory' },
      { name: 'workspace/source/.berth/', type: 'directory' },
      { name: 'workspace/source/.berth/config.yml', content: 'version: 2\n' },
      { name: 'workspace/source/.berth/workflow.yml', content: 'apply: echo planned\n' },
      { name: 'workspace/source/.berth/task.sh', content: 'not wanted\n' },
      { name: 'workspace/source/envs/dev/', type: 'directory' },
      { name: 'workspace/source/envs/dev/main.tf', content: 'resource "x" "y" {}\n' },
      { name: 'workspace/.berth/config.yml', content: 'outside the source\n' },
      { name: 'workspace/source/../../escape.yml', content: 'no\n' },
    ]);
    await extractPlannedSource(archive, into);
    expect(readFileSync(path.join(into, '.berth', 'workflow.yml'), 'utf8')).toBe(
      'apply: echo planned\n',
    );
    expect(readFileSync(path.join(into, '.berth', 'config.yml'), 'utf8')).toBe('version: 2\n');
    expect(readdirSync(path.join(into, '.berth')).sort()).toEqual(['config.yml', 'workflow.yml']);
    expect(statSync(path.join(into, 'envs', 'dev')).isDirectory()).toBe(true);
    expect(readdirSync(path.join(into, 'envs', 'dev'))).toEqual([]);
    expect(existsSync(path.join(into, '..', 'escape.yml'))).toBe(false);
    expect(statSync(path.join(into, '.berth', 'config.yml')).mode & 0o777).toBe(0o600);
  });

  it('refuses a configuration file that is a link: the plan read none such', async () => {
    const { archive, into } = await savedWorkspace([
      { name: 'workspace/source/.berth/', type: 'directory' },
      { name: 'workspace/source/.berth/workflow.yml', type: 'symlink' },
    ]);
    const failed = await extractPlannedSource(archive, into).then(
      () => null,
      (err: unknown) => err,
    );
    expect(failed).toBeInstanceOf(BerthError);
    expect((failed as BerthError).code).toBe('BERTH_SAVED_WORKSPACE_INVALID');
    expect((failed as BerthError).message).toContain(
      "the saved workspace's .berth/workflow.yml is not a regular file",
    );
    expect(existsSync(into)).toBe(false);
  });
});
