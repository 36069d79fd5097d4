import { execFileSync } from 'node:child_process';
import {
  chmodSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readlinkSync,
  readdirSync,
  rmSync,
  statSync,
  symlinkSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import {
  createHostDir,
  hostParts,
  isHostPart,
  listHostDirs,
  mountOptionsIn,
  mountOptionsOf,
  removeHostDir,
  writeHostEntries,
} from './host-workspace.js';

const made: string[] = [];
function scratch(): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'berth-host-ws-'));
  made.push(dir);
  return dir;
}
afterEach(() => {
  for (const dir of made.splice(0)) rmSync(dir, { recursive: true, force: true });
});

// The caller's own ids: giving files to UID 1983 needs root, the rest does not.
const owner = { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0 };

describe('writeHostEntries', () => {
  it('writes a job directory as the archive would carry it: modes widened for the owner, links as links, times kept', () => {
    return (async () => {
      const source = scratch();
      mkdirSync(path.join(source, 'sub'));
      writeFileSync(path.join(source, 'sub', 'a.txt'), 'a\n');
      chmodSync(path.join(source, 'sub', 'a.txt'), 0o400);
      writeFileSync(path.join(source, 'run.sh'), '#!/bin/sh\n');
      chmodSync(path.join(source, 'run.sh'), 0o755);
      symlinkSync('/etc/passwd', path.join(source, 'outside'));
      chmodSync(path.join(source, 'sub'), 0o500);
      const old = new Date('2020-01-02T03:04:05Z');
      utimesSync(path.join(source, 'run.sh'), old, old);
      utimesSync(path.join(source, 'sub'), old, old);
      const target = scratch();
      const parts = hostParts('/home/berth');
      await createHostDir(path.join(target, 'job'), parts);
      let bytes = 0;
      await writeHostEntries(
        path.join(target, 'job'),
        [
          { kind: 'directory', name: 'mnt/workspace/', mode: 0o755, owner },
          { kind: 'tree', name: 'mnt/workspace/source', sourceDir: source, owner },
          { kind: 'file', name: 'berth/phases/x.sh', mode: 0o644, owner, content: 'echo x\n' },
        ],
        (n) => (bytes += n),
      );
      const job = (p: string): string => path.join(target, 'job', p);
      expect(readdirSync(job('mnt/workspace/source')).sort()).toEqual(['outside', 'run.sh', 'sub']);
      expect(statSync(job('mnt/workspace/source/sub/a.txt')).mode & 0o7777).toBe(0o600);
      expect(statSync(job('mnt/workspace/source/run.sh')).mode & 0o7777).toBe(0o755);
      expect(statSync(job('mnt/workspace/source/sub')).mode & 0o7777).toBe(0o700);
      expect(statSync(job('mnt/workspace/source/sub')).mtime.toISOString()).toBe(old.toISOString());
      expect(statSync(job('mnt/workspace/source/run.sh')).mtime.toISOString()).toBe(
        old.toISOString(),
      );
      // The link is copied as a link, never followed.
      expect(lstatSync(job('mnt/workspace/source/outside')).isSymbolicLink()).toBe(true);
      expect(readlinkSync(job('mnt/workspace/source/outside'))).toBe('/etc/passwd');
      expect(readFileSync(job('berth/phases/x.sh'), 'utf8')).toBe('echo x\n');
      expect(statSync(job('berth/phases')).mode & 0o7777).toBe(0o755);
      expect(statSync(job('home/berth')).isDirectory()).toBe(true);
      expect(statSync(path.join(target, 'job')).mode & 0o7777).toBe(0o700);
      expect(bytes).toBe(2 + 10 + 7);
      await removeHostDir(path.join(target, 'job'));
      expect(readdirSync(target)).toEqual([]);
    })();
  });

  it('names a job directory that is not there, as a copy through the engine does', async () => {
    const source = scratch();
    const target = path.join(scratch(), 'job');
    await createHostDir(target, hostParts(null));
    const reading = writeHostEntries(target, [
      {
        kind: 'tree',
        name: 'mnt/workspace/source',
        sourceDir: path.join(source, 'missing'),
        owner,
      },
    ]);
    await expect(reading).rejects.toMatchObject({ code: 'BERTH_WORKSPACE_UNREADABLE' });
  });
});

describe('removeHostDir and the names written', () => {
  it('removes a tree nested deeper than a path can be long (a job can make one)', async () => {
    const dir = path.join(scratch(), 'job');
    mkdirSync(dir);
    // 1,200 levels of 4 characters: over PATH_MAX (4,096), made 400 levels at a time.
    execFileSync('bash', [
      '-c',
      'cd "$1" && p=$(printf "aaa/%.0s" $(seq 1 400)) && for i in 1 2 3; do mkdir -p "$p" && cd -P "$p" || exit 1; done',
      'bash',
      dir,
    ]);
    expect(() => rmSync(dir, { recursive: true, force: true })).toThrow(/ENAMETOOLONG/);
    await removeHostDir(dir);
    expect(existsSync(dir)).toBe(false);
  });

  it('never writes a name that leads out of the job directory', async () => {
    const base = scratch();
    const dir = path.join(base, 'job');
    await createHostDir(dir, hostParts(null));
    await expect(
      writeHostEntries(dir, [
        { kind: 'file', name: '../outside', mode: 0o644, owner, content: 'x' },
      ]),
    ).rejects.toThrow('../outside is not a path inside');
    expect(readdirSync(base)).toEqual(['job']);
  });

  it('does not make a job directory again once it was removed (a control file written late)', async () => {
    const dir = path.join(scratch(), 'job');
    await createHostDir(dir, hostParts(null));
    await removeHostDir(dir);
    await expect(
      writeHostEntries(dir, [
        { kind: 'file', name: 'berth/cli-config.tfrc', mode: 0o644, owner, content: 'x' },
      ]),
    ).rejects.toMatchObject({ code: 'BERTH_WORKSPACE_NOT_WRITABLE' });
    expect(existsSync(dir)).toBe(false);
  });
});

describe('the parts of a job host directory', () => {
  it('mounts the workspace and the control directory, and HOME only when given', () => {
    expect(hostParts(null).map((p) => [p.target, p.readOnly])).toEqual([
      ['/mnt/workspace', false],
      ['/berth', true],
    ]);
    const parts = hostParts('/home/berth');
    expect(parts.map((p) => p.inside)).toEqual(['mnt/workspace', 'berth', 'home/berth']);
    expect(isHostPart(parts, 'mnt/workspace/')).toBe(true);
    expect(isHostPart(parts, 'mnt/workspace/source/a')).toBe(true);
    expect(isHostPart(parts, 'mnt/')).toBe(false);
    expect(isHostPart(parts, 'berthday/x')).toBe(false);
    expect(isHostPart(parts, 'usr/local/bin/terraform')).toBe(false);
  });

  it("lists only berth's job directories, with their age", async () => {
    const root = scratch();
    mkdirSync(path.join(root, 'berth-01ABC-1a2b3c4d'));
    mkdirSync(path.join(root, 'other'));
    writeFileSync(path.join(root, 'berth-file'), '');
    const listed = await listHostDirs(root);
    expect(listed.map((d) => d.name)).toEqual(['berth-01ABC-1a2b3c4d']);
    expect(Date.now() - (listed[0]?.mtimeMs ?? 0)).toBeLessThan(60_000);
    expect(await listHostDirs(path.join(root, 'none'))).toEqual([]);
  });
});

describe('mountOptionsIn', () => {
  const mountinfo = [
    '22 27 0:21 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw',
    '27 1 254:0 / / rw,relatime - ext4 /dev/vda rw',
    '60 27 0:50 / /var/lib/my\\040state rw,noexec - tmpfs tmpfs rw',
    '61 27 0:51 / /srv rw,noexec - tmpfs tmpfs rw',
    '62 61 0:52 / /srv rw,relatime - ext4 /dev/vdb rw',
    '',
  ].join('\n');

  it('takes the longest mount point that holds the path, the one on top of stacked mounts', () => {
    expect(mountOptionsIn(mountinfo, '/root/.local/state/berth')).toEqual(['rw', 'relatime']);
    expect(mountOptionsIn(mountinfo, '/proc/1/cwd')).toContain('noexec');
    expect(mountOptionsIn(mountinfo, '/procedures')).toEqual(['rw', 'relatime']);
    expect(mountOptionsIn(mountinfo, '/var/lib/my state/workspaces')).toContain('noexec');
    expect(mountOptionsIn(mountinfo, '/srv/berth')).toEqual(['rw', 'relatime']);
    expect(mountOptionsIn('', '/x')).toBeNull();
  });

  it("reads this machine's own mounts for a path that is not made yet", async () => {
    expect(await mountOptionsOf('/surely/not/there/yet')).toEqual(await mountOptionsOf('/'));
    expect(await mountOptionsOf('/')).toContain('rw');
  });
});
