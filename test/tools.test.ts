/**
 * Terraform/OpenTofu in the job's container, end to end: resolved from the runtime
 * configuration, downloaded from a local signed mirror, verified, cached, mounted read-only; the
 * CLI configuration for the providers under /plugins (laid out as the seed document's Dockerfiles
 * do); Terraform 0.12's behaviour; a tampered release stopping the run before anything runs.
 */
import { readdirSync, statSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import type { EngineClient } from '../src/executor/docker/engine-client.js';
import { jobDir } from './harness/files.js';
import { expectNothingLeftBehind } from './harness/cleanup.js';
import { finished, jobOutput, runBerth, testStateDir, type BerthResult } from './harness/cli.js';
import { testEngine } from './harness/engine.js';
import { ensureBuiltImage } from './harness/images.js';
import { startReleaseMirror, type ReleaseMirror } from './harness/release-mirror.js';
import { tempDir } from './harness/ownership.js';

/** Stands in for terraform's command line: says what it was given and what config it sees. */
const STAND_IN = `#!/bin/sh
echo "stand-in terraform $VERSION_MARK args: $*"
echo "cli config: \${TF_CLI_CONFIG_FILE:-none}"
if [ -n "\${TF_CLI_CONFIG_FILE:-}" ]; then cat "$TF_CLI_CONFIG_FILE"; fi
`;

let engine: EngineClient;
let mirror: ReleaseMirror;
let image: string;
let stateDir: string;

function repo(config: string): string {
  return jobDir({ '.berth/config.yml': config, 'main.tf': 'terraform {}\n' });
}

function berth(
  dir: string,
  command: string,
  env: Record<string, string> = {},
): Promise<BerthResult> {
  return runBerth(['run', dir, '--image', image, '--pull', 'never', '--json', '--', command], {
    BERTH_STATE_DIR: stateDir,
    BERTH_TERRAFORM_RELEASES_URL: mirror.baseUrl,
    BERTH_TERRAFORM_SIGNING_KEY_FILE: mirror.keyFile,
    ...env,
  });
}

beforeAll(async () => {
  engine = testEngine();
  stateDir = testStateDir();
  mirror = await startReleaseMirror('terraform');
  await mirror.publish('0.12.31', { content: STAND_IN.replace('$VERSION_MARK', '0.12.31') });
  await mirror.publish('1.6.2', { content: STAND_IN.replace('$VERSION_MARK', '1.6.2') });
  await mirror.publish('1.7.1', { content: STAND_IN.replace('$VERSION_MARK', '1.7.1') });
  await mirror.publish('2.1.0', { content: STAND_IN, tamperZip: true });
  await mirror.publish('2.2.0', { content: STAND_IN, untrusted: true });
  // Providers copied into /plugins the way the seed's Dockerfile does, plus one for another platform.
  image = await ensureBuiltImage(
    engine,
    'plugins',
    `FROM ${inject('busyboxImage')}
RUN mkdir -p /plugins/registry.myorg.io/myorg/sops/1.0.0/linux_amd64 /plugins/registry.myorg.io/myorg/sops/1.0.0/darwin_arm64 \\
 && printf '#!/bin/sh\\n' > /plugins/registry.myorg.io/myorg/sops/1.0.0/linux_amd64/terraform-provider-sops \\
 && cp /plugins/registry.myorg.io/myorg/sops/1.0.0/linux_amd64/terraform-provider-sops /plugins/registry.myorg.io/myorg/sops/1.0.0/darwin_arm64/ \\
 && chmod 755 /plugins/registry.myorg.io/myorg/sops/1.0.0/*/terraform-provider-sops
`,
  );
});

afterEach(async () => {
  await expectNothingLeftBehind(engine);
});

afterAll(async () => {
  await mirror.stop();
  engine.close();
});

describe('tools in the container', () => {
  it('mounts the verified version read-only at /bin/terraform with /plugins configured for the providers found', async () => {
    const result = await berth(
      repo('version: 2\nstack_defaults:\n  terraform_version: "~> 1.6"\n'),
      // The mount itself must be read-only: the write also fails for ownership (root, 755).
      'terraform init; ls -l /bin/terraform | cut -c1-10; (echo x > /bin/terraform) 2>/dev/null || echo read-only; awk \'$5 == "/bin/terraform" { print "mount-options " $6 }\' /proc/self/mountinfo; echo "$TF_IN_AUTOMATION $TF_INPUT"',
    );
    expect(result.code, JSON.stringify(finished(result).error)).toBe(0);
    const out = jobOutput(result);
    expect(out).toContain(
      'stand-in terraform 1.7.1 args: init\ncli config: /berth/cli-config.tfrc\n',
    );
    expect(out).toContain('include = ["registry.myorg.io/myorg/sops"]');
    expect(out).toContain('exclude = ["registry.myorg.io/myorg/sops"]');
    expect(out).toContain('path    = "/plugins"');
    expect(out).toContain('-rwxr-xr-x');
    expect(out).toContain('read-only');
    expect(out).toMatch(/^mount-options ro(,|$)/m);
    expect(out).toContain('1 0\n');
    expect(result.events.find((e) => e.type === 'tool.ready')).toMatchObject({
      tool: 'terraform',
      version: '1.7.1',
      platform: 'linux_amd64',
    });
    expect(result.events.find((e) => e.type === 'plugins.found')).toMatchObject({
      providers: [
        {
          source: 'registry.myorg.io/myorg/sops',
          version: '1.0.0',
          file: '/plugins/registry.myorg.io/myorg/sops/1.0.0/linux_amd64/terraform-provider-sops',
        },
      ],
    });
    expect(finished(result).warnings.join('\n')).toContain(
      '/plugins/registry.myorg.io/myorg/sops/1.0.0/darwin_arm64/terraform-provider-sops: built for darwin_arm64',
    );
  });

  it('takes the tool and its version from --tool and --tool-version, under the runtime configuration', async () => {
    const run = (dir: string): Promise<BerthResult> =>
      runBerth(
        [
          'run',
          dir,
          '--image',
          image,
          '--pull',
          'never',
          '--json',
          '--tool',
          'terraform',
          '--tool-version',
          '~> 1.6.0',
        ].concat(['--', 'terraform version']),
        {
          BERTH_STATE_DIR: stateDir,
          BERTH_TERRAFORM_RELEASES_URL: mirror.baseUrl,
          BERTH_TERRAFORM_SIGNING_KEY_FILE: mirror.keyFile,
        },
      );
    const flagsOnly = await run(jobDir({ 'main.tf': 'terraform {}\n' }));
    expect(flagsOnly.code, JSON.stringify(finished(flagsOnly).error)).toBe(0);
    expect(jobOutput(flagsOnly)).toContain('stand-in terraform 1.6.2 args: version');
    expect(flagsOnly.events.find((e) => e.type === 'run.configured')).toMatchObject({
      settings: {
        terraform_workflow_tool: { value: 'TERRAFORM_FOSS', source: 'stack settings' },
        terraform_version: { value: '~> 1.6.0', source: 'stack settings' },
      },
    });
    // The runtime configuration's stack entry is more specific than the stack's own settings.
    const configured = await run(
      repo('version: 2\nstack_defaults:\n  terraform_version: "1.7.1"\n'),
    );
    expect(jobOutput(configured)).toContain('stand-in terraform 1.7.1 args: version');
  });

  it('puts the binary in BERTH_TOOL_DIR, a directory on the image PATH', async () => {
    const result = await runBerth(
      [
        'run',
        repo('version: 2\nstack_defaults:\n  terraform_version: "1.6.2"\n'),
        '--image',
        image,
        '--pull',
        'never',
      ].concat([
        '--json',
        '--',
        'command -v terraform; terraform version; ls /bin/terraform 2>&1 | grep -c "No such"',
      ]),
      {
        BERTH_STATE_DIR: stateDir,
        BERTH_TERRAFORM_RELEASES_URL: mirror.baseUrl,
        BERTH_TERRAFORM_SIGNING_KEY_FILE: mirror.keyFile,
        BERTH_TOOL_DIR: '/usr/local/bin',
      },
    );
    expect(result.code, JSON.stringify(finished(result).error)).toBe(0);
    expect(jobOutput(result)).toMatch(
      /^\/usr\/local\/bin\/terraform\nstand-in terraform 1\.6\.2 args: version\n[\s\S]*1\n$/,
    );
    expect(result.events.find((e) => e.type === 'tool.ready')).toMatchObject({
      path: '/usr/local/bin/terraform',
      delivery: 'mounted',
    });
  });

  it("merges the job's own CLI configuration with berth's instead of replacing it", async () => {
    const dir = jobDir({
      '.berth/config.yml':
        'version: 2\nstack_defaults:\n  terraform_version: "1.6.2"\n  environment: { TF_CLI_CONFIG_FILE: user.tfrc }\n',
      'user.tfrc': 'plugin_cache_dir = "/tmp/provider-cache"\n',
    });
    const result = await berth(dir, 'terraform init');
    expect(result.code, JSON.stringify(finished(result).error)).toBe(0);
    const out = jobOutput(result);
    expect(out).toContain('plugin_cache_dir = "/tmp/provider-cache"');
    expect(out).toContain('include = ["registry.myorg.io/myorg/sops"]');
  });

  it('uses the cache for the next job of the same version', async () => {
    const dir = repo('version: 2\nstack_defaults:\n  terraform_version: "1.6.2"\n');
    await berth(dir, 'true');
    const before = mirror.requests.filter((r) => r.endsWith('.zip')).length;
    const again = await berth(dir, 'terraform version');
    expect(again.code).toBe(0);
    expect(jobOutput(again)).toContain('stand-in terraform 1.6.2');
    expect(again.events.find((e) => e.type === 'tool.ready')).toMatchObject({ downloaded: false });
    expect(mirror.requests.filter((r) => r.endsWith('.zip')).length).toBe(before);
  });

  it('writes no mirror for Terraform 0.12, which takes providers from next to its binary', async () => {
    const result = await berth(
      repo('version: 2\nstack_defaults:\n  terraform_version: "0.12.31"\n'),
      'terraform plan',
    );
    expect(result.code, result.stderr).toBe(0);
    expect(jobOutput(result)).toBe('stand-in terraform 0.12.31 args: plan\ncli config: none\n');
    expect(finished(result).warnings.join('\n')).toContain(
      'terraform 0.12.31 takes providers from next to its binary',
    );
  });

  it('stops before anything runs when the release does not match its signed checksum', async () => {
    const result = await berth(
      repo('version: 2\nstack_defaults:\n  terraform_version: "2.1.0"\n'),
      'echo must-not-run',
    );
    expect(result.code).toBe(4);
    const end = finished(result);
    expect(end.error?.code).toBe('BERTH_TOOL_CHECKSUM_MISMATCH');
    expect(end.error?.message).toContain('terraform_2.1.0_linux_amd64.zip');
    expect(end.containerId).toBeNull();
    expect(jobOutput(result)).toBe('');
  });
});

describe('tool releases that cannot be used', () => {
  const pinned = (version: string): string =>
    repo(`version: 2\nstack_defaults:\n  terraform_version: "${version}"\n`);

  /** The run stopped with `code` before any container; returns the error's message. */
  function expectStoppedBeforeTheJob(result: BerthResult, code: string): string {
    const end = finished(result);
    expect(end.error?.code).toBe(code);
    expect(end.containerId).toBeNull();
    expect(jobOutput(result)).toBe('');
    return end.error?.message ?? '';
  }

  it('BERTH_TOOL_VERSION_UNKNOWN: a version the release index does not have', async () => {
    const result = await berth(pinned('3.0.0'), 'echo must-not-run');
    expect(result.code).toBe(2);
    expect(expectStoppedBeforeTheJob(result, 'BERTH_TOOL_VERSION_UNKNOWN')).toContain('3.0.0');
  });

  it('BERTH_TOOL_DOWNLOAD_FAILED: a release mirror nothing listens on', async () => {
    const result = await berth(pinned('1.6.2'), 'echo must-not-run', {
      BERTH_TERRAFORM_RELEASES_URL: 'http://127.0.0.1:9',
      BERTH_STATE_DIR: testStateDir(),
    });
    expect(result.code).toBe(4);
    expect(expectStoppedBeforeTheJob(result, 'BERTH_TOOL_DOWNLOAD_FAILED')).toContain(
      'http://127.0.0.1:9',
    );
  });

  it('BERTH_TOOL_SIGNATURE_INVALID: checksums signed by a key that is not the pinned one', async () => {
    const result = await berth(pinned('2.2.0'), 'echo must-not-run');
    expect(result.code).toBe(4);
    expect(expectStoppedBeforeTheJob(result, 'BERTH_TOOL_SIGNATURE_INVALID')).toContain('2.2.0');
  });

  it('BERTH_DISK_FULL: no room in the state directory for the downloaded release', async () => {
    if (process.getuid?.() !== 0) throw new Error('this test mounts a small tmpfs: run it as root');
    const full = tempDir('berth-full-tools-');
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'berth-test-full', full]);
    try {
      // Filled to the last block before berth starts.
      execFileSync('sh', ['-c', `dd if=/dev/zero of=${full}/filler bs=4k 2>/dev/null; true`]);
      const result = await berth(pinned('1.7.1'), 'echo must-not-run', {
        BERTH_STATE_DIR: full,
      });
      expect(result.code).toBe(4);
      expect(expectStoppedBeforeTheJob(result, 'BERTH_DISK_FULL')).toContain('no space');
    } finally {
      execFileSync('umount', [full]);
    }
  });
});

describe('provider plugin cache', () => {
  const CACHE_STAND_IN = `#!/bin/sh
echo "cache=$TF_PLUGIN_CACHE_DIR"
ls "$TF_PLUGIN_CACHE_DIR" | sort | tr '\\n' ' '; echo
touch "$TF_PLUGIN_CACHE_DIR/provider-from-$1-$TF_VAR_berth_run_id"
`;
  let tofu: ReleaseMirror;

  beforeAll(async () => {
    // OpenTofu's own release layout (api.json, v<version>/, .gpgsig), as berth reads by default.
    tofu = await startReleaseMirror('tofu', 'linux_amd64', 'opentofu');
    await tofu.publish('1.10.0', { content: CACHE_STAND_IN });
    await tofu.publish('1.9.1', { content: CACHE_STAND_IN });
  });

  afterAll(() => tofu.stop());

  const run = (version: string, cacheDir: string): Promise<BerthResult> =>
    runBerth(
      [
        'run',
        repo(
          `version: 2\nstack_defaults:\n  terraform_workflow_tool: OPEN_TOFU\n  opentofu_version: "${version}"\n`,
        ),
        '--image',
        image,
        '--pull',
        'never',
        '--json',
        '--',
        'tofu init',
      ],
      {
        BERTH_STATE_DIR: stateDir,
        BERTH_PLUGIN_CACHE_DIR: cacheDir,
        BERTH_OPENTOFU_RELEASES_URL: tofu.baseUrl,
        BERTH_OPENTOFU_SIGNING_KEY_FILE: tofu.keyFile,
      },
    );

  it('is shared between jobs for OpenTofu 1.10 and later, owned by the job user', async () => {
    const cacheDir = tempDir('berth-plugin-cache-');
    const first = await run('1.10.0', cacheDir);
    expect(first.code, JSON.stringify(finished(first).error)).toBe(0);
    expect(tofu.requests).toEqual(
      expect.arrayContaining(['/api.json', '/v1.10.0/tofu_1.10.0_SHA256SUMS.gpgsig']),
    );
    expect(jobOutput(first)).toMatch(/^cache=\/mnt\/plugin-cache\n\n$/);
    const second = await run('1.10.0', cacheDir);
    expect(jobOutput(second)).toBe(
      `cache=/mnt/plugin-cache\nprovider-from-init-${finished(first).runId} \n`,
    );
    const shared = path.join(cacheDir, 'tofu', 'linux_amd64');
    expect(readdirSync(shared)).toHaveLength(2);
    expect(statSync(shared).uid).toBe(1983);
  });

  it('is never shared writable with a tool that is not safe with it: the job gets its own', async () => {
    const cacheDir = tempDir('berth-plugin-cache-');
    const result = await run('1.9.1', cacheDir);
    expect(result.code, JSON.stringify(finished(result).error)).toBe(0);
    expect(jobOutput(result)).toBe('cache=/mnt/workspace/.berth/plugin-cache\n\n');
    expect(finished(result).warnings.join('\n')).toContain(
      'tofu 1.9.1 is not safe with a plugin cache shared between concurrent jobs',
    );
    expect(readdirSync(cacheDir)).toEqual([]);
  });
});
