/**
 * README.md's "The platform on one machine", run as written: `berth up` (a real server and
 * worker), `berth login` given the admin token that `berth up` printed, a stack made from a git
 * repository (this checkout's examples, committed on `main` in a fresh repository, as a clone of
 * berth has them), a tracked run followed on a terminal (script(1)) that shows the plan, is
 * answered `y` and applied, and the runs listed. Terraform is the machine's real binary served
 * from the test release mirror; where there is none the test is skipped, by name (.ci/run).
 *
 * Beside the commands, only the test's own settings: BERTH_LISTEN on a free port (the README's
 * address in `berth login` is replaced by the one `berth up` printed), BERTH_DATA_DIR and
 * XDG_CONFIG_HOME in temp dirs, the runner image (busybox, as every doc test), the release mirror,
 * and CHECKPOINT_DISABLE passed to jobs through the worker's BERTH_WHITELIST_ENVS, so that
 * Terraform calls no one.
 */
import { execFileSync, spawn } from 'node:child_process';
import { cpSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import type { EngineClient } from '../src/executor/docker/engine-client.js';
import { expectNothingLeftBehind } from './harness/cleanup.js';
import { BERTH_BIN, runBerth, spawnBerth, testStateDir, type BerthProcess } from './harness/cli.js';
import { testEngine } from './harness/engine.js';
import { ensureBuiltImage } from './harness/images.js';
import { tempDir } from './harness/ownership.js';
import { startReleaseMirror, type ReleaseMirror } from './harness/release-mirror.js';
import { installedTerraform } from './harness/terraform.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const HEADING = '## The platform on one machine';
const README_ADDRESS = 'http://127.0.0.1:8080';
let runnerImage = '';

/** The commands of the first fenced block under HEADING, comments cut. */
function platformBlock(): string[] {
  const readme = readFileSync(path.join(ROOT, 'README.md'), 'utf8');
  const section = readme.slice(readme.indexOf(HEADING));
  const block = /```\n([\s\S]*?)```/.exec(section)?.[1] ?? '';
  return block
    .split('\n')
    .map((line) => line.replace(/\s+#\s.*$/, '').trim())
    .filter((line) => line.length > 0);
}

/** A command line's words: double quotes grouped, `$PWD` the directory it runs in. */
function words(line: string, pwd: string): string[] {
  return [...line.matchAll(/"([^"]*)"|(\S+)/g)].map((m) =>
    (m[1] ?? (m[2] as string)).replaceAll('$PWD', pwd),
  );
}

const terraform = installedTerraform();
let engine: EngineClient;
let mirror: ReleaseMirror | undefined;
let up: BerthProcess | undefined;

beforeAll(async () => {
  engine = testEngine();
  if (!terraform) return;
  mirror = await startReleaseMirror('terraform');
  await mirror.publish(terraform.version, { content: readFileSync(terraform.path) });
  // The default runner image, built here (no registry origin), as an air-gapped machine has it:
  // the shared busybox image may have a registry origin by now (other tests push it), and a
  // default image whose registry cannot be reached is refused, never built over.
  runnerImage = await ensureBuiltImage(
    engine,
    'platform-runner',
    `FROM ${inject('busyboxImage')}\nLABEL built.for=readme-platform\n`,
  );
});

afterEach(async () => {
  if (up && up.child.exitCode === null) {
    up.child.kill('SIGTERM');
    await up.exited;
  }
  await expectNothingLeftBehind(engine);
});

afterAll(async () => {
  await mirror?.stop();
  engine.close();
});

describe('the README platform on one machine', () => {
  it('runs as written: berth up, login, a stack from git, a tracked run confirmed on a terminal and applied, the runs listed', async (ctx) => {
    if (!terraform || !mirror) {
      ctx.skip('terraform is not installed here (no package provides it); .ci/run lists this skip');
      return;
    }
    const lines = platformBlock();
    expect(lines.map((line) => words(line, '').slice(1, 3).join(' '))).toEqual([
      'up',
      'login --server',
      'stack create',
      'stack trigger',
      'runs list',
    ]);
    const [upLine, loginLine, createLine, triggerLine, listLine] = lines as [
      string,
      string,
      string,
      string,
      string,
    ];

    // The berth checkout the README speaks of: its examples, committed on main.
    const checkout = tempDir('berth-checkout-');
    cpSync(path.join(ROOT, 'examples'), path.join(checkout, 'examples'), { recursive: true });
    const git = (...args: string[]): string =>
      execFileSync('git', args, {
        cwd: checkout,
        encoding: 'utf8',
        env: {
          ...process.env,
          GIT_AUTHOR_NAME: 'berth test',
          GIT_AUTHOR_EMAIL: 'test@berth.invalid',
          GIT_COMMITTER_NAME: 'berth test',
          GIT_COMMITTER_EMAIL: 'test@berth.invalid',
        },
      });
    git('init', '-q', '-b', 'main');
    git('add', '.');
    git('commit', '-qm', 'examples');

    const env = {
      BERTH_DATA_DIR: tempDir('berth-data-'),
      XDG_CONFIG_HOME: tempDir('berth-config-'),
      BERTH_SERVER: undefined,
      BERTH_TOKEN: undefined,
    };
    up = spawnBerth(words(upLine, checkout).slice(1), {
      ...env,
      BERTH_LISTEN: '127.0.0.1:0',
      BERTH_STATE_DIR: testStateDir(),
      BERTH_DEFAULT_RUNNER_IMAGE: runnerImage,
      BERTH_TERRAFORM_RELEASES_URL: mirror.baseUrl,
      BERTH_TERRAFORM_SIGNING_KEY_FILE: mirror.keyFile,
      BERTH_WHITELIST_ENVS: 'CHECKPOINT_DISABLE',
      CHECKPOINT_DISABLE: '1',
    });
    await up.waitFor('registered in pool local');
    const url = /up: server (http:\/\/\S+),/.exec(up.stderr())?.[1] as string;
    const admin = /admin token \(shown once, keep it\): (\S+)/.exec(up.stderr())?.[1] as string;
    expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(admin).toMatch(/^berth_admin_/);

    const login = await runBerth(
      words(loginLine.replace(README_ADDRESS, url), checkout).slice(1),
      env,
      { cwd: checkout, input: `${admin}\n` },
    );
    expect(login.code, login.stderr).toBe(0);
    expect(login.stderr).toContain(`logged in to ${url}`);

    const create = await runBerth(words(createLine, checkout).slice(1), env, { cwd: checkout });
    expect(create.code, create.stderr).toBe(0);
    expect(create.stdout).toContain('demo');

    // script(1) gives the command a terminal, as a person following the run has.
    const command = [process.execPath, BERTH_BIN, ...words(triggerLine, checkout).slice(1)].join(
      ' ',
    );
    const following = spawn('script', ['-qec', command, '/dev/null'], {
      cwd: checkout,
      env: { ...process.env, NO_COLOR: '1', ...env, BERTH_SERVER: '', BERTH_TOKEN: '' },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let said = '';
    following.stdout.on('data', (chunk: Buffer) => (said += chunk.toString()));
    // 'close', not 'exit': the output is read to its end first.
    const exited = new Promise<number | null>((resolve) => following.on('close', resolve));
    try {
      while (!said.includes('Apply this plan? [y/N]')) {
        if (following.exitCode !== null) throw new Error(`the trigger ended early: ${said}`);
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      const plain = (): string => said.replace(/\u001b\[[0-9;]*m/g, '');
      expect(plain()).toContain('Terraform has been successfully initialized!');
      expect(plain()).toContain('(1 to add, 0 to change, 0 to destroy)');
      following.stdin.write('y\n');
      expect(await exited, plain()).toBe(0);
      expect(plain()).toMatch(/Apply complete! Resources: 1 added, 0 changed, 0 destroyed/);
      expect(plain()).toContain('greeting = "hello from a berth worker"');
      expect(plain()).toMatch(/run \S+ FINISHED/);
    } finally {
      if (following.exitCode === null) following.kill('SIGKILL');
    }

    const list = await runBerth(words(listLine, checkout).slice(1), env, { cwd: checkout });
    expect(list.code, list.stderr).toBe(0);
    expect(list.stdout).toMatch(/FINISHED/);
    expect(list.stdout).toMatch(/tracked/i);

    up.child.kill('SIGTERM');
    expect((await up.exited).code, up.stderr()).toBe(0);
  });
});
