/**
 * Every `berth` command shown in README.md and docs/usage.md runs here, as written, so the docs
 * cannot drift from the code. The runner image is the tests' own (busybox with a stand-in
 * `terraform`), given the documented way: BERTH_DEFAULT_RUNNER_IMAGE.
 */
import { execFile } from 'node:child_process';
import { chmodSync, cpSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import type { EngineClient } from '../src/executor/docker/engine-client.js';
import { expectNothingLeftBehind } from './harness/cleanup.js';
import { BERTH_BIN, testStateDir } from './harness/cli.js';
import { testEngine } from './harness/engine.js';
import { jobDir } from './harness/files.js';
import { ensureBuiltImage } from './harness/images.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const DOCS = ['README.md', 'docs/usage.md'];

/** Prose names a command (`berth run`) without showing a use of it. */
const COMMAND_NAMES = new Set([
  'berth run',
  'berth image check',
  'berth runner-image build',
  'berth doctor',
]);

/** Sections whose commands another test runs as one session (a server they all talk to). */
const RUN_ELSEWHERE = new Set([
  '## The platform on one machine', // test/readme-platform.test.ts
]);

/**
 * The commands the docs show: lines of fenced blocks and inline code that start with `berth `
 * or `npx berth `, trailing `# comments` cut. A synopsis (`berth run [DIR] [options] …`) is
 * not a command: it has `[…]` or `…`; neither is a heading or a command's bare name. Sections
 * in RUN_ELSEWHERE are left to their own test.
 */
function documentedCommands(markdown: string): string[] {
  const found: string[] = [];
  let fenced = false;
  let elsewhere = false;
  for (const line of markdown.split('\n')) {
    if (!fenced && line.startsWith('#')) elsewhere = RUN_ELSEWHERE.has(line.trim());
    if (elsewhere) continue;
    if (line.startsWith('```')) {
      fenced = !fenced;
      continue;
    }
    const candidates = fenced
      ? [line]
      : line.startsWith('#')
        ? []
        : [...line.matchAll(/`([^`]+)`/g)].map((m) => m[1] as string);
    for (const text of candidates) {
      const command = text.replace(/\s+#\s.*$/, '').trim();
      if (!/^(npx )?berth /.test(command)) continue;
      if (/\[|…/.test(command) || COMMAND_NAMES.has(command)) continue;
      found.push(command);
    }
  }
  return found;
}

/** What each documented command must do; a command missing here (or a stale entry) fails. */
const EXPECTED: Record<string, { code: number; stdout: RegExp[] }> = {
  'npx berth run examples/hello': {
    code: 0,
    stdout: [/Hello from berth: running as 1983:1983 in \/mnt\/workspace\/source/, /main\.tf/],
  },
  'berth run infra/ --secret-env TOKEN -- ./deploy.sh': {
    code: 0,
    stdout: [/deploying with token \*\*\*\*\*/],
  },
  'berth run . --json -- terraform plan': {
    code: 0,
    stdout: [/^\{"type":"run\.started"/, /terraform stand-in: plan/, /"type":"run\.finished"/],
  },
  "berth run -- 'terraform init && terraform plan'": {
    code: 0,
    stdout: [/terraform stand-in: init\n(.* )?terraform stand-in: plan/],
  },
  "berth run -- printf '%s\\n' 'a b'": { code: 0, stdout: [/ a b\n/] },
  'berth run -- seq 1 100000 | head -2': { code: 0, stdout: [/^\S+ 1\n\S+ 2\n$/] },
};

const TOKEN = 'doc-example-token-value';
let engine: EngineClient;
let runnerImage: string;
let workdir: string;
let binDir: string;
let stateDir: string;

beforeAll(async () => {
  engine = testEngine();
  runnerImage = await ensureBuiltImage(
    engine,
    'doc-runner',
    `FROM ${inject('busyboxImage')}\nCOPY terraform /usr/local/bin/terraform\nRUN chmod 755 /usr/local/bin/terraform\n`,
    { terraform: '#!/bin/sh\necho "terraform stand-in: $*"\n' },
  );
  // The directory the examples run in: what their DIRs name.
  workdir = jobDir({
    'main.tf': 'terraform {}\n',
    'infra/deploy.sh': '#!/bin/sh\necho "deploying with token $TOKEN"\n',
  });
  chmodSync(path.join(workdir, 'infra/deploy.sh'), 0o755);
  cpSync(path.join(ROOT, 'examples'), path.join(workdir, 'examples'), { recursive: true });
  // `berth` on PATH is this checkout's bin/berth.js; `npx berth` is the same program.
  binDir = path.join(jobDir({}), 'bin');
  mkdirSync(binDir);
  writeFileSync(
    path.join(binDir, 'berth'),
    `#!/bin/sh\nexec "${process.execPath}" -- "${BERTH_BIN}" "$@"\n`,
  );
  chmodSync(path.join(binDir, 'berth'), 0o755);
  stateDir = testStateDir();
});

afterEach(async () => {
  await expectNothingLeftBehind(engine);
});

afterAll(() => engine.close());

function runShell(command: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      'sh',
      ['-c', command.replace(/^npx berth /, 'berth ')],
      {
        cwd: workdir,
        env: {
          PATH: `${binDir}:${process.env.PATH ?? ''}`,
          DOCKER_HOST: process.env.DOCKER_HOST,
          TMPDIR: process.env.TMPDIR,
          NO_COLOR: '1',
          BERTH_STATE_DIR: stateDir,
          BERTH_DEFAULT_RUNNER_IMAGE: runnerImage,
          TOKEN,
        },
        maxBuffer: 16 * 1024 * 1024,
      },
      (err, stdout, stderr) => {
        const code = err ? ((err as { code?: number }).code ?? -1) : 0;
        resolve({ code: typeof code === 'number' ? code : -1, stdout, stderr });
      },
    );
  });
}

const commands = DOCS.flatMap((file) =>
  documentedCommands(readFileSync(path.join(ROOT, file), 'utf8')).map((command) => ({
    file,
    command,
  })),
);

describe('the commands in README.md and docs/usage.md', () => {
  it('are all known to this test, and every known one is still in the docs', () => {
    expect([...new Set(commands.map((c) => c.command))].sort()).toEqual(
      Object.keys(EXPECTED).sort(),
    );
  });

  it.each(commands)('$file: $command', async ({ command }) => {
    const expected = EXPECTED[command];
    expect(expected).toBeDefined();
    const result = await runShell(command);
    const context = `${result.stdout}\n${result.stderr}`;
    expect(result.code, context).toBe(expected?.code);
    for (const pattern of expected?.stdout ?? []) expect(result.stdout, context).toMatch(pattern);
    expect(result.stdout + result.stderr).not.toContain(TOKEN);
    expect(result.stderr).not.toMatch(/^\s+at /m);
  });
});
