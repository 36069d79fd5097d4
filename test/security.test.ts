/**
 * Attacks by a tenant on a shared worker, each performed for real against berth (issue 11): an
 * image whose configuration turns its platform into a path, a repository whose berth files are
 * symlinks to files of the worker. Each test failed before its fix.
 */
import { execFileSync } from 'node:child_process';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdirSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import type { EngineClient } from '../src/executor/docker/engine-client.js';
import { expectNothingLeftBehind } from './harness/cleanup.js';
import { finished, jobOutput, runBerth, testStateDir, type BerthResult } from './harness/cli.js';
import { removeImage, testEngine } from './harness/engine.js';
import { jobDir } from './harness/files.js';
import { tempDir } from './harness/ownership.js';
import { loadForgedImage } from './harness/forged-image.js';
import { startReleaseMirror, type ReleaseMirror } from './harness/release-mirror.js';

/** A terraform stand-in for workflow runs: plan writes the plan file, show prints no changes. */
const WORKFLOW_STAND_IN = `#!/bin/sh
case "$1" in
  plan) for a in "$@"; do case "$a" in -out=*) echo planned > "\${a#-out=}" ;; esac; done ;;
  show) echo '{"format_version":"1.2","resource_changes":[]}' ;;
  *) echo "terraform $1 done" ;;
esac
`;

let engine: EngineClient;
let mirror: ReleaseMirror;

const scratch = tempDir;

beforeAll(async () => {
  engine = testEngine();
  mirror = await startReleaseMirror('terraform');
  await mirror.publish('1.7.1', { content: '#!/bin/sh\necho "verified stand-in terraform $*"\n' });
  await mirror.publish('1.6.2', { content: WORKFLOW_STAND_IN });
});

afterEach(async () => {
  await expectNothingLeftBehind(engine);
});

afterAll(async () => {
  await mirror.stop();
  engine.close();
});

describe("an image's platform is data, never a path", () => {
  it('refuses an image whose architecture climbs out of the tool cache, and runs nothing from there', async () => {
    // Where the attacker wants berth to look for "the verified terraform": a directory it filled.
    const poisoned = scratch('berth-poisoned-');
    writeFileSync(path.join(poisoned, 'terraform'), '#!/bin/sh\necho POISONED-BINARY-RAN\n', {
      mode: 0o755,
    });
    const forged = `berth-test/forged-arch:${path.basename(poisoned).toLowerCase()}`;
    await loadForgedImage(engine, inject('busyboxImage'), forged, (config) => {
      config.architecture = `amd64/../../../../../../../../../..${poisoned}`;
    });
    const stateDir = testStateDir();
    const pluginCache = scratch('berth-plugin-cache-');
    try {
      const dir = jobDir({
        '.berth/config.yml': 'version: 2\nstack_defaults:\n  terraform_version: "1.7.1"\n',
      });
      const withTool = await runBerth(
        ['run', dir, '--image', forged, '--pull', 'never', '--json', '--', 'terraform version'],
        {
          BERTH_STATE_DIR: stateDir,
          BERTH_PLUGIN_CACHE_DIR: pluginCache,
          BERTH_TERRAFORM_RELEASES_URL: mirror.baseUrl,
          BERTH_TERRAFORM_SIGNING_KEY_FILE: mirror.keyFile,
        },
      );
      expect(withTool.code).toBe(3);
      const error = finished(withTool).error;
      expect(error?.code).toBe('BERTH_IMAGE_PLATFORM_INVALID');
      expect(error?.message).toContain('is not one berth knows');
      expect(jobOutput(withTool)).not.toContain('POISONED-BINARY-RAN');
      expect(withTool.events.some((e) => e.type === 'tool.ready')).toBe(false);
      // Nothing of the attacker's was handed to UID 1983 or created beside it.
      expect(execFileSync('stat', ['-c', '%u', poisoned], { encoding: 'utf8' }).trim()).toBe('0');
    } finally {
      await removeImage(engine, forged);
    }
  });
});

describe('symlinks in the job directory are never followed to files of this machine', () => {
  let secretFile: string;
  const secret = `worker-secret-${process.pid}`;

  beforeAll(() => {
    const dir = scratch('berth-host-secret-');
    secretFile = path.join(dir, 'config.json');
    writeFileSync(secretFile, `echo ${secret}\n`, { mode: 0o600 });
  });

  it('.berth/task.sh as a symlink to a root-only file: refused, nothing of it reaches the job', async () => {
    const dir = jobDir({ 'main.tf': '' });
    mkdirSync(path.join(dir, '.berth'));
    symlinkSync(secretFile, path.join(dir, '.berth', 'task.sh'));
    const result = await runBerth([
      'run',
      dir,
      '--image',
      inject('busyboxImage'),
      '--pull',
      'never',
      '--json',
    ]);
    expect(result.code).toBe(2);
    expect(result.stdout + result.stderr).not.toContain(secret);
    expect(result.stderr).toContain('BERTH_WORKSPACE_SYMLINK');
    expect(result.stderr).toContain(path.join(dir, '.berth', 'task.sh'));
  });

  it('a symlinked .berth directory is refused for the task and the runtime configuration', async () => {
    const hostDir = path.dirname(secretFile);
    writeFileSync(path.join(hostDir, 'task.sh'), `echo ${secret}\n`, { mode: 0o600 });
    writeFileSync(path.join(hostDir, 'config.yml'), `version: 2\n# ${secret}\n`, { mode: 0o600 });
    const dir = jobDir({ 'main.tf': '' });
    symlinkSync(hostDir, path.join(dir, '.berth'));
    for (const args of [[], ['--', 'echo hi']]) {
      const result = await runBerth([
        'run',
        dir,
        '--image',
        inject('busyboxImage'),
        '--pull',
        'never',
        ...args,
      ]);
      expect(result.code).toBe(2);
      expect(result.stdout + result.stderr).not.toContain(secret);
      expect(result.stderr).toMatch(/reached through .*\.berth, which is a symlink/);
    }
  });

  it.each([['.berth/config.yml'], ['.spacelift/config.yml']])(
    '%s as a symlink is refused, naming the file',
    async (relative) => {
      const dir = jobDir({ 'main.tf': '' });
      mkdirSync(path.join(dir, path.dirname(relative)));
      symlinkSync(secretFile, path.join(dir, relative));
      const result = await runBerth([
        'run',
        dir,
        '--image',
        inject('busyboxImage'),
        '--pull',
        'never',
        '--',
        'echo hi',
      ]);
      expect(result.code).toBe(2);
      expect(result.stderr).toContain(`${path.join(dir, relative)} is a symlink`);
      expect(result.stdout).not.toContain('hi');
    },
  );

  it('a symlinked .berth/workflow.yml of a CUSTOM workflow is refused', async () => {
    const dir = jobDir({
      '.berth/config.yml': 'version: 2\nstack_defaults:\n  terraform_workflow_tool: CUSTOM\n',
    });
    symlinkSync(secretFile, path.join(dir, '.berth', 'workflow.yml'));
    const result = await runBerth([
      'run',
      dir,
      '--image',
      inject('busyboxImage'),
      '--pull',
      'never',
      '--type',
      'proposed',
    ]);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('workflow.yml is a symlink');
    expect(result.stdout + result.stderr).not.toContain(secret);
  });

  it('a FIFO as .berth/task.sh is an error, not a launcher blocked forever', async () => {
    const dir = jobDir({ 'main.tf': '' });
    mkdirSync(path.join(dir, '.berth'));
    execFileSync('mkfifo', [path.join(dir, '.berth', 'task.sh')]);
    const result = await runBerth([
      'run',
      dir,
      '--image',
      inject('busyboxImage'),
      '--pull',
      'never',
    ]);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('is not a regular file');
  });

  it('still reads a job directory reached through a symlink of the user (only below it is checked)', async () => {
    const real = jobDir({ '.berth/task.sh': 'echo from-task-file\n' });
    const link = path.join(scratch('berth-link-'), 'job');
    symlinkSync(real, link);
    const result = await runBerth([
      'run',
      link,
      '--image',
      inject('busyboxImage'),
      '--pull',
      'never',
      '--json',
    ]);
    expect(result.code, result.stderr).toBe(0);
    expect(jobOutput(result)).toContain('from-task-file');
  });
});

describe('phases of one job are kept apart', () => {
  function workflowEnv(stateDir: string): Record<string, string> {
    return {
      BERTH_STATE_DIR: stateDir,
      BERTH_TERRAFORM_RELEASES_URL: mirror.baseUrl,
      BERTH_TERRAFORM_SIGNING_KEY_FILE: mirror.keyFile,
    };
  }

  it('no process of a phase outlives it: a daemon started in init never sees the wo_ values of apply', async () => {
    const config = `version: 2
stack_defaults:
  terraform_version: "1.6.2"
  before_init:
    - BERTH_PHASE_ONLY=
    - |
      (setsid sh -c 'echo $$ > /mnt/workspace/daemon.pid; while :; do grep -l wo_TOKEN /proc/[0-9]*/environ 2>/dev/null | while read -r f; do tr "\\0" "\\n" < "$f" | grep wo_TOKEN >> /mnt/workspace/leak; done; sleep 0.05; done' </dev/null >/dev/null 2>&1 &)
    - 'for i in $(seq 1 50); do [ -s /mnt/workspace/daemon.pid ] && break; sleep 0.1; done; echo "daemon $(cat /mnt/workspace/daemon.pid)"'
  after_apply:
    - 'if kill -0 "$(cat /mnt/workspace/daemon.pid)" 2>/dev/null; then echo "daemon alive"; else echo "daemon gone"; fi'
    - 'echo "leaked: $(cat /mnt/workspace/leak 2>/dev/null)"'
    - 'grep -c "ro_\\|wo_" /mnt/workspace/.berth/env.sh || true'
`;
    const stateDir = testStateDir();
    const result = await runBerth(
      [
        'run',
        jobDir({ '.berth/config.yml': config, 'main.tf': '' }),
        '--image',
        inject('busyboxImage'),
        '--pull',
        'never',
        '--type',
        'tracked',
        '--auto-deploy',
        '--env',
        'wo_TOKEN=apply-only-value',
        '--env',
        'ro_TOKEN=plan-only-value',
        '--json',
      ],
      workflowEnv(stateDir),
    );
    expect(result.code, JSON.stringify(finished(result).error)).toBe(0);
    const out = jobOutput(result);
    expect(out).toMatch(/daemon \d+/);
    expect(out).toContain('daemon gone');
    expect(out).toContain('leaked: \n');
    expect(out).not.toContain('apply-only-value');
    // No ro_/wo_ value was saved in the environment carried from phase to phase.
    expect(out).toMatch(/\n0\n/);
  });

  it('a tracked run whose workspace grows past the saved-workspace limit keeps nothing and applies nothing', async () => {
    const config = `version: 2
stack_defaults:
  terraform_version: "1.6.2"
  after_plan:
    - dd if=/dev/zero of=/mnt/workspace/sparse bs=1 count=0 seek=3G 2>/dev/null
  before_apply:
    - echo APPLY-RAN
`;
    const stateDir = testStateDir();
    const result = await runBerth(
      [
        'run',
        jobDir({ '.berth/config.yml': config, 'main.tf': '' }),
        '--image',
        inject('busyboxImage'),
        '--pull',
        'never',
        '--type',
        'tracked',
        '--saved-workspace-limit',
        '8MiB',
        '--json',
      ],
      workflowEnv(stateDir),
      { input: 'yes\n' },
    );
    expect(result.code).toBe(2);
    const error = finished(result).error;
    expect(error?.code).toBe('BERTH_SAVED_WORKSPACE_TOO_LARGE');
    expect(error?.message).toContain('more than 8.0 MiB (the saved-workspace limit)');
    expect(jobOutput(result)).not.toContain('APPLY-RAN');
    expect(finished(result).state).toBe('FAILED');
    // Nothing of the workspace was kept on this machine.
    const runDir = path.join(stateDir, 'runs', finished(result).runId);
    expect(readdirSync(runDir)).toEqual(['output.log']);
  });
});

describe('defaults for shared workers', () => {
  it('a public pool job gets memory and CPU limits unless the operator sets others', async () => {
    const registryImage = inject('registryImage');
    const read =
      'echo "mem $(cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max)"; echo "cpu $(cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us 2>/dev/null || cat /sys/fs/cgroup/cpu.max)"';
    const run = (env: Record<string, string>, pool: string): Promise<BerthResult> =>
      runBerth(
        [
          'run',
          jobDir(),
          '--pool',
          pool,
          '--allowed-registries',
          inject('registryAddress'),
          '--image',
          registryImage,
          '--json',
          '--',
          read,
        ],
        env,
      );
    const defaults = await run({}, 'public');
    expect(defaults.code, defaults.stderr).toBe(0);
    expect(jobOutput(defaults)).toMatch(/^mem 2147483648\ncpu (100000|100000 100000)\n$/);
    const operator = await run(
      { BERTH_PUBLIC_MEMORY_LIMIT: '256m', BERTH_PUBLIC_CPU_LIMIT: '0.5' },
      'public',
    );
    expect(operator.code, operator.stderr).toBe(0);
    expect(jobOutput(operator)).toMatch(/^mem 268435456\ncpu (50000|50000 100000)\n$/);
    // A private pool is one tenant's machine: no limit unless asked for.
    const privatePool = await run({}, 'private');
    expect(privatePool.code, privatePool.stderr).toBe(0);
    expect(jobOutput(privatePool)).not.toContain('mem 2147483648');
    expect(jobOutput(privatePool)).toMatch(/cpu (-1|max 100000)\n$/);
  });

  it('berth doctor warns loudly when job containers reach the metadata address, with the fix', async () => {
    const bridge = await engine.json<{ IPAM: { Config: { Gateway?: string; Subnet?: string }[] } }>(
      'GET',
      '/networks/bridge',
    );
    // This machine's own address on the engine's bridge: the gateway, or the subnet's first host.
    const config = bridge.IPAM.Config[0] ?? {};
    const gateway =
      config.Gateway ??
      (config.Subnet ?? '').replace(
        /^(\d+\.\d+\.\d+\.)(\d+)\/\d+$/,
        (_m, net: string, last: string) => `${net}${Number(last) + 1}`,
      );
    expect(gateway).toMatch(/^\d+\.\d+\.\d+\.\d+$/);
    // By id: the checks run in an image this engine has.
    const image = (
      await engine.json<{ Id: string }>('GET', `/images/${inject('busyboxImage')}/json`)
    ).Id;
    // A stand-in for the metadata service on this machine's own bridge address (never the real one).
    const server = http.createServer((_req, res) => res.end('ami-id\n'));
    await new Promise<void>((resolve) => server.listen(0, gateway, resolve));
    const port = (server.address() as AddressInfo).port;
    try {
      const reachable = await runBerth(['doctor', '--pool', 'public', '--image', image, '--json'], {
        BERTH_METADATA_ADDRESS: `${gateway}:${port}`,
      });
      expect(reachable.code).toBe(1);
      const report = JSON.parse(reachable.stdout) as {
        checks: { name: string; status: string; detail: string; fix?: string }[];
      };
      const version = await engine.json<{ Version: string; ApiVersion: string }>('GET', '/version');
      expect(report.checks.find((c) => c.name === 'engine')?.detail).toContain(
        `Docker ${version.Version} (API ${version.ApiVersion}) at `,
      );
      // Root on a local engine: workspaces are mounted (BERTH_WORKSPACE, docs/usage.md).
      expect(report.checks.find((c) => c.name === 'workspace')).toMatchObject({
        status: 'ok',
        detail: expect.stringMatching(
          /^mounted into job containers from \/\S+\/workspaces$/,
        ) as string,
      });
      const metadata = report.checks.find((c) => c.name === 'metadata');
      expect(metadata?.status).toBe('warning');
      expect(metadata?.detail).toContain(
        `CAN REACH THE INSTANCE METADATA ADDRESS ${gateway}:${port}`,
      );
      expect(metadata?.fix).toContain('DOCKER-USER');
      const human = await runBerth(['doctor', '--image', image], {
        BERTH_METADATA_ADDRESS: `${gateway}:${port}`,
      });
      expect(human.stdout).toMatch(/metadata\s+WARNING/);
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
    // Nothing listens there now: the same check passes.
    const closed = await runBerth(['doctor', '--image', image, '--json'], {
      BERTH_METADATA_ADDRESS: `${gateway}:${port}`,
    });
    const report = JSON.parse(closed.stdout) as { checks: { name: string; status: string }[] };
    expect(report.checks.find((c) => c.name === 'metadata')?.status).toBe('ok');
    expect(closed.code).toBe(0);
    // Asked to copy, or to mount where it cannot: said, and a refusal is a warning with its fix.
    const copying = await runBerth(['doctor', '--image', image, '--json'], {
      BERTH_WORKSPACE: 'copy',
      BERTH_METADATA_ADDRESS: `${gateway}:${port}`,
    });
    expect(
      (JSON.parse(copying.stdout) as { checks: { name: string; detail: string }[] }).checks.find(
        (c) => c.name === 'workspace',
      )?.detail,
    ).toBe('copied into job containers through the engine: BERTH_WORKSPACE=copy');
    const bogus = await runBerth(['doctor', '--image', image, '--json'], {
      BERTH_WORKSPACE: 'bind',
      BERTH_METADATA_ADDRESS: `${gateway}:${port}`,
    });
    expect(bogus.code).toBe(1);
    expect(
      (
        JSON.parse(bogus.stdout) as { checks: { name: string; status: string; fix?: string }[] }
      ).checks.find((c) => c.name === 'workspace'),
    ).toMatchObject({
      status: 'warning',
      detail: 'BERTH_WORKSPACE="bind" is not a way to deliver the workspace',
      fix: 'Use one of auto, mount, copy, or unset it (auto).',
    });
  });
});

describe('a sandbox runtime', () => {
  it('runs jobs under gVisor when asked (--runtime runsc), sole phase and phases with secrets alike', async () => {
    const host = readFileSync('/proc/version', 'utf8');
    for (const extra of [[], ['--secret-env', 'TOKEN=sandboxed-secret-1']]) {
      const result = await runBerth([
        'run',
        jobDir(),
        '--image',
        inject('busyboxImage'),
        '--pull',
        'never',
        '--runtime',
        'runsc',
        '--json',
        ...extra,
        '--',
        'cat /proc/version; id -u; echo "token=${TOKEN:-none}"',
      ]);
      expect(result.code, JSON.stringify(finished(result).error)).toBe(0);
      const out = jobOutput(result);
      // gVisor's own kernel answers, not the host's.
      expect(out).toContain('Linux version 4.4.0');
      expect(out).not.toContain(host.trim());
      expect(out).toContain('\n1983\n');
      expect(out).toMatch(/token=(none|\*\*\*\*\*)\n/);
    }
  });
});
