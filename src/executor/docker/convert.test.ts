import { describe, expect, it } from 'vitest';
import type { JobContainerSpec } from '../executor.js';
import {
  KEEPER_SCRIPT,
  SOLE_MAIN_PATH,
  soleMainScript,
  findPasswdEntry,
  imagePlatform,
  imageSearchPath,
  jobHome,
  pickRepoDigest,
  repositoryOf,
  toCreateContainerBody,
  toInterruptExecBody,
  toPhaseExecBody,
} from './convert.js';

const spec: JobContainerSpec = {
  runId: 'r1',
  launcherId: 'local/host/1/2',
  expiresAt: new Date('2026-01-01T00:00:00Z'),
  image: 'sha256:abc',
  imageReference: 'busybox',
  sourceDir: '/tmp/x',
  env: { A: '1', SECRET: 'v=1' },
  network: 'bridge',
  pidsLimit: 1024,
};

describe('toCreateContainerBody', () => {
  it('hardens by default and ignores the image entrypoint', () => {
    const body = toCreateContainerBody(spec);
    expect(body).toMatchObject({
      Image: 'sha256:abc',
      // The keeper runs as nobody: the job's UID can be swept clean between phases.
      User: '65534:65534',
      Entrypoint: ['/bin/sh', '-c', KEEPER_SCRIPT],
      Cmd: null,
      WorkingDir: '/',
      Env: ['A=1', 'SECRET=v=1'],
      OpenStdin: true,
      HostConfig: {
        Init: true,
        CapDrop: ['ALL'],
        SecurityOpt: ['no-new-privileges'],
        PidsLimit: 1024,
        NetworkMode: 'bridge',
        LogConfig: { Type: 'none', Config: {} },
      },
      Labels: {
        'dev.berth.managed': 'true',
        'dev.berth.run-id': 'r1',
        'dev.berth.launcher-id': 'local/host/1/2',
        'dev.berth.expires-at': '2026-01-01T00:00:00.000Z',
      },
    });
    const host = body.HostConfig as Record<string, unknown>;
    expect(host).not.toHaveProperty('Memory');
    expect(host).not.toHaveProperty('Runtime');
    expect(host).not.toHaveProperty('Privileged');
  });

  it('adds limits and runtime only when asked', () => {
    const host = toCreateContainerBody({
      ...spec,
      memoryBytes: 1024,
      nanoCpus: 5e8,
      runtime: 'runsc',
    }).HostConfig;
    expect(host).toMatchObject({ Memory: 1024, NanoCpus: 5e8, Runtime: 'runsc' });
  });

  it.each([
    [[], undefined],
    [
      [{ source: '/cache/terraform', target: '/bin/terraform', readOnly: true }],
      [{ Type: 'bind', Source: '/cache/terraform', Target: '/bin/terraform', ReadOnly: true }],
    ],
    [
      [
        { source: '/cache/tofu', target: '/bin/tofu', readOnly: true },
        { source: '/cache/plugins', target: '/plugins', readOnly: false },
      ],
      [
        { Type: 'bind', Source: '/cache/tofu', Target: '/bin/tofu', ReadOnly: true },
        { Type: 'bind', Source: '/cache/plugins', Target: '/plugins', ReadOnly: false },
      ],
    ],
  ])('binds mounts %j as %j, read-only exactly when asked', (mounts, expected) => {
    const host = toCreateContainerBody({ ...spec, mounts }).HostConfig as Record<string, unknown>;
    expect(host.Mounts).toEqual(expected);
  });

  it('makes a sole phase the container process, with its env and working directory', () => {
    const body = toCreateContainerBody(spec, {
      phase: { name: 'task', script: 'true', env: { A: '2', P: 'x' }, workingDir: '/tmp' },
      scriptPath: '/berth/phases/abc.sh',
    });
    expect(body).toMatchObject({
      Entrypoint: ['/bin/sh', '-c', `. ${SOLE_MAIN_PATH}`, 'berth-phase', '/berth/phases/abc.sh'],
      Cmd: null,
      WorkingDir: '/tmp',
      Env: ['A=2', 'SECRET=v=1', 'P=x'],
      OpenStdin: false,
      User: '1983:1983',
    });
  });

  it('sets HOME for a sole phase in a quoted shell word before the phase wrapper', () => {
    expect(soleMainScript('/home/berth')).toBe(
      'HOME=/home/berth; export HOME\n. /berth/phase.sh\n',
    );
    expect(soleMainScript("/home/it's me")).toBe(
      `HOME='/home/it'\\''s me'; export HOME\n. /berth/phase.sh\n`,
    );
  });

  it('never puts environment values into labels', () => {
    const body = toCreateContainerBody(spec);
    expect(JSON.stringify(body.Labels)).not.toContain('v=1');
  });
});

describe('exec bodies', () => {
  it('runs each phase as 1983 through the wrapper', () => {
    expect(toPhaseExecBody('/berth/phases/1-task.sh', { HOME: '/home/berth' })).toMatchObject({
      User: '1983:1983',
      Env: ['HOME=/home/berth'],
      Cmd: ['/bin/sh', '-c', '. /berth/phase.sh', 'berth-phase', '/berth/phases/1-task.sh'],
      Tty: false,
    });
  });

  it('interrupts with SIGINT to every job process', () => {
    expect(toInterruptExecBody()).toMatchObject({
      User: '1983:1983',
      Cmd: ['/bin/sh', '-c', 'kill -INT -1 2>/dev/null; exit 0'],
    });
  });
});

describe('passwd and home', () => {
  const passwd =
    'root:x:0:0:root:/root:/bin/sh\n# comment\nspacelift:x:1983:1983::/home/spacelift:/bin/sh\n';
  it('finds the entry of UID 1983', () => {
    expect(findPasswdEntry(passwd, 1983)).toEqual({
      name: 'spacelift',
      uid: 1983,
      gid: 1983,
      home: '/home/spacelift',
    });
    expect(findPasswdEntry(passwd, 1000)).toBeNull();
    expect(findPasswdEntry('broken line\n', 1983)).toBeNull();
  });
  it.each([
    [null, '/home/berth'],
    [homeAt('/home/x/'), '/home/x'],
    [homeAt('/'), '/home/berth'],
    [homeAt(''), '/home/berth'],
    [homeAt('/mnt/workspace/source'), '/home/berth'],
    [homeAt('/mnt/workspace'), '/home/berth'],
    [homeAt('/mnt/workspaces'), '/mnt/workspaces'],
    // A home holding the workspace or berth's scripts would be mounted over them.
    [homeAt('/mnt'), '/home/berth'],
    [homeAt('/berth'), '/home/berth'],
    [homeAt('/berth/phases'), '/home/berth'],
    // Made by berth (on the host, for a mounted workspace): written plainly or not at all.
    [homeAt('/../../usr/local/sbin'), '/home/berth'],
    [homeAt('/home/./x'), '/home/berth'],
    [homeAt('/home//x'), '/home/berth'],
    [homeAt('home/x'), '/home/berth'],
    [homeAt('/dev/null'), '/home/berth'],
    [homeAt('/proc'), '/home/berth'],
    [homeAt('/devel'), '/devel'],
  ])('home for %j is %s', (entry, home) => {
    expect(jobHome(entry)).toBe(home);
  });
});

/** A passwd entry of UID 1983 with `home`. */
function homeAt(home: string): { name: string; uid: number; gid: number; home: string } {
  return { name: 'x', uid: 1983, gid: 1983, home };
}

describe('digests', () => {
  it.each([
    ['busybox', 'docker.io/library/busybox'],
    ['busybox:1.36', 'docker.io/library/busybox'],
    ['org/app:v1', 'docker.io/org/app'],
    [`localhost:5000/a/b:tag@sha256:${'0'.repeat(64)}`, 'localhost:5000/a/b'],
    ['ghcr.io/o/r', 'ghcr.io/o/r'],
    ['127.0.0.1:5000/x', '127.0.0.1:5000/x'],
  ])('repository of %s is %s', (ref, repo) => {
    expect(repositoryOf(ref)).toBe(repo);
  });

  it('picks the digest of the repository that was asked for', () => {
    const d1 = `other.io/x@sha256:${'1'.repeat(64)}`;
    const d2 = `busybox@sha256:${'2'.repeat(64)}`;
    const digests = [d1, d2];
    expect(pickRepoDigest(digests, 'busybox:latest')).toBe(d2);
    expect(pickRepoDigest([], 'busybox')).toBeNull();
    // Only another repository's digest: none of this run's.
    expect(
      pickRepoDigest(
        [`123456789012.dkr.ecr.us-east-1.amazonaws.com/team/app@sha256:${'3'.repeat(64)}`],
        'busybox:1',
      ),
    ).toBeNull();
    expect(pickRepoDigest(null, 'busybox')).toBeNull();
  });
});

describe('imagePlatform', () => {
  it.each([
    ['linux', 'amd64', undefined, 'linux_amd64'],
    ['linux', 'arm64', 'v8', 'linux_arm64'],
    ['linux', 'x86_64', undefined, 'linux_amd64'],
    ['linux', 'aarch64', undefined, 'linux_arm64'],
    ['linux', 'arm', 'v7', 'linux_arm'],
    ['Linux', 'AMD64', undefined, 'linux_amd64'],
    [undefined, 'amd64', undefined, null],
    ['linux', undefined, undefined, null],
  ])('%s/%s/%s → %s', (os, arch, variant, platform) => {
    expect(imagePlatform(os, arch, variant)).toEqual({ platform });
  });

  it.each([
    ['linux', '../../../../tmp/evil'],
    ['linux', 'amd64/../../x'],
    ['../linux', 'amd64'],
    ['linux', 'amd64\nx'],
    ['linux', ''.padEnd(300, 'a')],
    ['plan10', 'amd64'],
  ])('refuses %s/%s, naming the value', (os, arch) => {
    const result = imagePlatform(os, arch);
    expect(result).toHaveProperty('error');
    expect((result as { error: string }).error).toMatch(/is not one berth knows/);
  });

  it('refuses a variant that does not belong to the architecture', () => {
    expect(imagePlatform('linux', 'arm', '../v7')).toHaveProperty('error');
    expect(imagePlatform('linux', 'riscv64', 'v1')).toHaveProperty('error');
  });
});

describe('imageSearchPath', () => {
  it('reads PATH from the image environment', () => {
    expect(imageSearchPath(['A=1', 'PATH=/usr/local/bin:/usr/bin::/bin'])).toEqual([
      '/usr/local/bin',
      '/usr/bin',
      '/bin',
    ]);
    expect(imageSearchPath(['A=1'])).toBeNull();
    expect(imageSearchPath(null)).toBeNull();
  });
});
