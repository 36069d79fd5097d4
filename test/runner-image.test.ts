/**
 * The standard runner image, end to end: a Debian bookworm base made with debootstrap (the same
 * base as debian:bookworm-slim, since no registry is reachable), berth building runner/Dockerfile
 * because the default image is neither present nor pullable, and the README's first command
 * (`berth run examples/hello`) running on it.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { EngineClient } from '../src/executor/docker/engine-client.js';
import { expectNothingLeftBehind } from './harness/cleanup.js';
import { runBerth, testStateDir } from './harness/cli.js';
import { imageExists, removeImage, tagImage, testEngine } from './harness/engine.js';
import { ensureBuiltImage, importRootfs } from './harness/images.js';
import { jobDir } from './harness/files.js';
import { startReleaseMirror } from './harness/release-mirror.js';
import { tempDir } from './harness/ownership.js';

const BASE = 'debian:bookworm-slim';
const REPO_ROOT = fileURLToPath(new URL('..', import.meta.url));
// A loopback port nothing listens on: the pull fails at once and never leaves the machine.
const UNPULLABLE = '127.0.0.1:9/berth-e2e/runner';
const CACHE_TAG = 'berth-test/runner-cache';

let engine: EngineClient;
let stateDir: string;

async function ensureDebianBase(): Promise<void> {
  if (await imageExists(engine, BASE)) return;
  if (!existsSync('/usr/sbin/debootstrap')) {
    throw new Error(
      `${BASE} is not in the engine and debootstrap is missing: apt-get install -y debootstrap (or run sudo bash .ci/run)`,
    );
  }
  const dir = tempDir('berth-debootstrap-');
  try {
    execFileSync(
      'debootstrap',
      ['--variant=minbase', 'bookworm', dir, 'http://deb.debian.org/debian'],
      { stdio: 'ignore', timeout: 600_000 },
    );
    // Like the official slim image: no package lists or caches in the base layer.
    execFileSync('sh', ['-c', `rm -rf ${dir}/var/lib/apt/lists/* ${dir}/var/cache/apt/*.bin`]);
    await importRootfs(engine, dir, 'debian', 'bookworm-slim', 'CMD ["bash"]');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

beforeAll(async () => {
  engine = testEngine();
  stateDir = testStateDir();
  await ensureDebianBase();
}, 900_000);

afterEach(async () => {
  await expectNothingLeftBehind(engine);
});

afterAll(async () => {
  for (const tag of ['latest', 'future']) {
    // Keep the layers under a cache tag, so the next run's build is a cache hit.
    if (await imageExists(engine, `${UNPULLABLE}:${tag}`)) {
      await tagImage(engine, `${UNPULLABLE}:${tag}`, CACHE_TAG, tag);
      await removeImage(engine, `${UNPULLABLE}:${tag}`);
    }
  }
  engine.close();
});

describe('the standard runner image', () => {
  it('is built from runner/Dockerfile when the default image is missing, and runs examples/hello', async () => {
    await removeImage(engine, `${UNPULLABLE}:latest`);
    const env = { BERTH_STATE_DIR: stateDir, BERTH_DEFAULT_RUNNER_IMAGE: `${UNPULLABLE}:latest` };
    const result = await runBerthIn(REPO_ROOT, ['run', 'examples/hello'], env);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stderr).toContain(`${UNPULLABLE}:latest is neither present nor pullable`);
    expect(result.stderr).toContain("building it from berth's bundled runner/Dockerfile");
    expect(result.stderr).toMatch(/build: Step \d+\/\d+ : FROM debian:bookworm-slim/);
    expect(result.stderr).not.toContain('no passwd entry');
    expect(result.stdout).toContain(
      'Hello from berth: running as 1983:1983 in /mnt/workspace/source',
    );
    expect(result.stdout).toContain('main.tf');
    for (const tool of ['bash', 'curl', 'git', 'jq', 'ssh', 'unzip']) {
      expect(result.stdout).toMatch(new RegExp(`${tool}\\s+/usr/bin/${tool}`));
    }

    // Built once: the next run finds it present.
    const again = await runBerthIn(REPO_ROOT, ['run', 'examples/hello', '--json'], env);
    expect(again.code).toBe(0);
    expect(again.events.find((e) => e.type === 'image.resolved')).toMatchObject({
      source: 'present',
    });
  }, 900_000);

  it('has the promised contents: /plugins empty, user 1983, no terraform or tofu', async () => {
    const env = { BERTH_STATE_DIR: stateDir, BERTH_DEFAULT_RUNNER_IMAGE: `${UNPULLABLE}:latest` };
    const result = await runBerthIn(
      REPO_ROOT,
      [
        'run',
        'examples/hello',
        '--json',
        '--',
        'ls -A /plugins | wc -l; getent passwd 1983; command -v terraform tofu || echo no-iac-tools; test -w "$HOME" && echo home-ok; ps -o pid= -p 1 >/dev/null && echo ps-ok; date +%Z',
      ],
      env,
    );
    expect(result.code).toBe(0);
    const out = result.events.flatMap((e) => (e.type === 'log' ? [e.text] : [])).join('');
    expect(out).toBe(
      '0\nberth:x:1983:1983::/home/berth:/bin/bash\nno-iac-tools\nhome-ok\nps-ok\nUTC\n',
    );
  }, 900_000);

  it('berth runner-image build --tag future builds the future tag', async () => {
    const result = await runBerthIn(REPO_ROOT, ['runner-image', 'build', '--tag', 'future'], {
      BERTH_DEFAULT_RUNNER_IMAGE: `${UNPULLABLE}:latest`,
    });
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toMatch(
      new RegExp(`^${UNPULLABLE.replace(/\./g, '\\.')}:future sha256:[0-9a-f]{64}\\n$`),
    );
    expect(await imageExists(engine, `${UNPULLABLE}:future`)).toBe(true);
    const bad = await runBerthIn(REPO_ROOT, ['runner-image', 'build', '--tag', 'v2'], {});
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('--tag "v2": use one of latest, future');
  }, 900_000);
});

describe('custom providers on an image built FROM the standard runner image', () => {
  it('finds a provider copied into /plugins the way the seed document does it', async () => {
    const mirror = await startReleaseMirror('terraform');
    try {
      await mirror.publish('1.6.2', {
        content: '#!/bin/sh\necho "stand-in $1"; cat "$TF_CLI_CONFIG_FILE"\n',
      });
      // The seed: COPY --from=builder /terraform-provider-sops /plugins/registry.myorg.io/myorg/sops/1.0.0/linux_amd64/terraform-provider-sops
      const image = await ensureBuiltImage(
        engine,
        'runner-with-plugins',
        `FROM ${UNPULLABLE}:latest\nUSER root\nCOPY terraform-provider-sops /plugins/registry.myorg.io/myorg/sops/1.0.0/linux_amd64/terraform-provider-sops\nRUN chmod 755 /plugins/registry.myorg.io/myorg/sops/1.0.0/linux_amd64/terraform-provider-sops\nUSER 1983\n`,
        { 'terraform-provider-sops': '#!/bin/sh\necho sops provider\n' },
      );
      const dir = jobDir({
        '.berth/config.yml': 'version: 2\nstack_defaults:\n  terraform_version: "1.6.2"\n',
        'main.tf': '',
      });
      const result = await runBerth(
        ['run', dir, '--image', image, '--pull', 'never', '--json', '--', 'terraform init'],
        {
          BERTH_STATE_DIR: stateDir,
          BERTH_TERRAFORM_RELEASES_URL: mirror.baseUrl,
          BERTH_TERRAFORM_SIGNING_KEY_FILE: mirror.keyFile,
        },
      );
      expect(
        result.code,
        JSON.stringify(
          result.events.filter((e) => e.type === 'warning' || e.type === 'run.finished'),
        ),
      ).toBe(0);
      const out = result.events.flatMap((e) => (e.type === 'log' ? [e.text] : [])).join('');
      expect(out).toContain('stand-in init');
      expect(out).toContain('include = ["registry.myorg.io/myorg/sops"]');
      expect(result.events.find((e) => e.type === 'plugins.found')).toMatchObject({
        providers: [{ source: 'registry.myorg.io/myorg/sops', version: '1.0.0' }],
      });
      await removeImage(engine, image);
    } finally {
      await mirror.stop();
    }
  }, 300_000);
});

function runBerthIn(
  cwd: string,
  args: string[],
  env: Record<string, string>,
): ReturnType<typeof runBerth> {
  return runBerth(args, env, { cwd });
}
