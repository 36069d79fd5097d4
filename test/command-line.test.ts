/**
 * `berth run`'s command line in everyday use: `--` and DIR, variables from berth's own
 * environment and env-files, `--json` early failures, exit codes.
 */
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import type { EngineClient } from '../src/executor/docker/engine-client.js';
import { expectNothingLeftBehind } from './harness/cleanup.js';
import { testEngine } from './harness/engine.js';
import { jobDir } from './harness/files.js';
import { finished, jobOutput, runBerth, testStateDir } from './harness/cli.js';

let engine: EngineClient;
let busybox: string;
let stateDir: string;

beforeAll(() => {
  engine = testEngine();
  busybox = inject('busyboxImage');
  stateDir = testStateDir();
});

afterEach(async () => {
  await expectNothingLeftBehind(engine);
});

afterAll(() => engine.close());

function berth(
  args: string[],
  env: Record<string, string | undefined> = {},
  options: { cwd?: string; command?: boolean } = {},
): ReturnType<typeof runBerth> {
  return runBerth(args, { BERTH_STATE_DIR: stateDir, ...env }, options);
}

describe('berth run: DIR and --', () => {
  it('says to put -- before a command taken for DIR', async () => {
    const result = await berth(['run', 'echo', 'hi there'], {}, { cwd: jobDir() });
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('/echo does not exist or cannot be read (ENOENT)');
    expect(result.stderr).toContain(
      "fix: If echo is the command, put -- before it (words before -- are DIR and options): berth run -- echo 'hi there'",
    );
  });

  it('takes every word after -- as the command, with no DIR before it', async () => {
    const dir = jobDir({ 'here.txt': 'x\n' });
    const result = await berth(
      [
        'run',
        '--image',
        busybox,
        '--pull',
        'never',
        '--json',
        '--',
        'printf',
        '%s\\n',
        'a b',
        '--',
        'ls',
      ],
      {},
      { cwd: dir },
    );
    expect(result.code).toBe(0);
    expect(jobOutput(result)).toBe('a b\n--\nls\n');
    expect(finished(result).state).toBe('FINISHED');
  });

  it('keeps DIR before -- and an option value that is --', async () => {
    const dir = jobDir({ 'here.txt': 'x\n' });
    const result = await berth([
      'run',
      dir,
      '--image',
      busybox,
      '--pull',
      'never',
      '--json',
      '--env',
      'DASHES=--',
      '--',
      'sh',
      '-c',
      'ls; echo "$DASHES"',
    ]);
    expect(result.code).toBe(0);
    expect(jobOutput(result)).toBe('here.txt\n--\n');
  });

  it('refuses two directories before --, naming both', async () => {
    const result = await berth([
      'run',
      jobDir(),
      'extra',
      '--image',
      busybox,
      '--pull',
      'never',
      '--',
      'true',
    ]);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('more than one directory before --');
    expect(result.stderr).toContain('"extra"');
  });
});

describe("berth run: variables from berth's environment and env-files", () => {
  it('--secret-env NAME takes the value from the environment, and masks it', async () => {
    const result = await berth(
      [
        'run',
        jobDir(),
        '--image',
        busybox,
        '--pull',
        'never',
        '--json',
        '--secret-env',
        'TOKEN',
        '--env',
        'REGION',
        '--',
        'echo "token=$TOKEN region=$REGION"; [ "$TOKEN" = s3cr3t-from-env ] && echo same',
      ],
      { TOKEN: 's3cr3t-from-env', REGION: 'eu-1' },
    );
    expect(result.code).toBe(0);
    expect(jobOutput(result)).toBe('token=***** region=eu-1\nsame\n');
    expect(result.stdout).not.toContain('s3cr3t-from-env');
  });

  it('refuses --secret-env NAME when NAME is not set', async () => {
    const result = await berth(
      [
        'run',
        jobDir(),
        '--image',
        busybox,
        '--pull',
        'never',
        '--secret-env',
        'NOT_SET_ANYWHERE',
        '--',
        'true',
      ],
      { NOT_SET_ANYWHERE: undefined },
    );
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('NOT_SET_ANYWHERE is not set in berth');
  });

  it('reads --secret-env-file and --env-file in Docker format, masking the secret ones', async () => {
    const files = jobDir({
      'secrets.env': '# deploy secrets\n\nDB_PASSWORD=pa55-in-file\nAPI_KEY\n',
      'plain.env': 'STAGE=prod\n',
    });
    const result = await berth(
      [
        'run',
        jobDir(),
        '--image',
        busybox,
        '--pull',
        'never',
        '--json',
        '--secret-env-file',
        `${files}/secrets.env`,
        '--env-file',
        `${files}/plain.env`,
        '--',
        'echo "$DB_PASSWORD $API_KEY $STAGE"; echo "${#DB_PASSWORD}"',
      ],
      { API_KEY: 'key-from-env' },
    );
    expect(result.code).toBe(0);
    expect(jobOutput(result)).toBe('***** ***** prod\n12\n');
    expect(result.stdout).not.toMatch(/pa55-in-file|key-from-env/);
  });
});

describe('the berth command and Node.js', () => {
  it("hands --env-file to the job, never to Node.js (which reads it even among a script's arguments)", async () => {
    const files = jobDir({ 'plain.env': 'GREETING=hi\nBERTH_NOT_A_SETTING=1\n' });
    const run = (envFile: string, ...more: string[]) =>
      berth(
        [
          'run',
          jobDir(),
          '--image',
          busybox,
          '--pull',
          'never',
          ...more,
          '--env-file',
          envFile,
          '--',
          'echo "$GREETING $BERTH_NOT_A_SETTING"',
        ],
        {},
        { command: true },
      );
    const missing = await run(`${files}/missing.env`);
    expect(missing.stderr).not.toMatch(/^node:/m);
    expect(missing.stderr).toContain(`${files}/missing.env`);
    expect(missing.stderr).toContain('[BERTH_USAGE]');
    expect(missing.code).toBe(2);
    // The file's variables are the job's; berth's own environment does not get them (it would
    // warn of a BERTH_ variable it does not know).
    const given = await run(`${files}/plain.env`, '--json');
    expect(given.code).toBe(0);
    expect(jobOutput(given)).toBe('hi 1\n');
    expect(given.stderr).not.toContain('BERTH_NOT_A_SETTING');
  });
});

describe('--concurrency', () => {
  it('has one bound for berth worker and berth up', async () => {
    for (const args of [
      ['worker', '--server', 'http://127.0.0.1:9', '--concurrency', '300'],
      ['up', '--data-dir', jobDir(), '--concurrency', '300'],
    ]) {
      const result = await berth(args, { BERTH_POOL_TOKEN: 'berth_pool_x' });
      expect(result.code, args[0]).toBe(2);
      expect(result.stderr, args[0]).toContain(
        '--concurrency "300": use a whole number from 1 to 256 [BERTH_USAGE]',
      );
    }
  });
});

describe('exit codes: one rule', () => {
  it('gives an invalid image reference exit 3 in berth run and in berth image check alike', async () => {
    const run = await berth(['run', jobDir(), '--image', 'UPPER/Case', '--', 'true']);
    const check = await berth(['image', 'check', 'UPPER/Case']);
    expect(run.stderr).toContain('BERTH_IMAGE_INVALID');
    expect(run.code).toBe(3);
    expect(check.code).toBe(3);
    // Among other option problems it is still the image error that decides.
    const both = await berth([
      'run',
      jobDir(),
      '--image',
      'UPPER/Case',
      '--timeout',
      'x',
      '--',
      'true',
    ]);
    expect(both.stderr).toMatch(/2 problems[\s\S]*--timeout[\s\S]*BERTH_IMAGE_INVALID/);
    expect(both.code).toBe(3);
  });
});

describe('berth run --json: early failures end the stream with one JSON object', () => {
  function lastJson(stdout: string): {
    type: string;
    exitCode: number;
    error: Record<string, string>;
  } {
    const lines = stdout.trim().split('\n');
    expect(lines.length).toBeGreaterThan(0);
    return JSON.parse(lines.at(-1) as string) as ReturnType<typeof lastJson>;
  }

  it.each([
    ['a bad option', ['--bogus'], {}, 'BERTH_USAGE', 2, "unknown option '--bogus'"],
    ['a bad value', ['--timeout', 'soon'], {}, 'BERTH_USAGE', 2, '--timeout "soon"'],
    [
      'no engine',
      [],
      { DOCKER_HOST: 'unix:///tmp/berth-no-such.sock' },
      'BERTH_DOCKER_UNREACHABLE',
      4,
      'berth-no-such.sock',
    ],
  ] as const)('%s', async (_what, options, env, code, exitCode, text) => {
    const result = await berth(
      ['run', jobDir(), '--image', busybox, '--pull', 'never', '--json', ...options, '--', 'true'],
      env,
    );
    expect(result.code).toBe(exitCode);
    const end = lastJson(result.stdout);
    expect(end).toMatchObject({ type: 'error', exitCode, error: { code } });
    expect(end.error.message).toContain(text);
    expect(end.error.hint).not.toBe('');
  });

  it('an invalid runtime configuration, with file:line:column', async () => {
    const dir = jobDir({ '.berth/config.yml': 'version: 1\nstack_defaults:\n  runner_image: 7\n' });
    const result = await berth(['run', dir, '--json', '--', 'true']);
    expect(result.code).toBe(2);
    const end = lastJson(result.stdout);
    expect(end).toMatchObject({
      type: 'error',
      exitCode: 2,
      error: { code: 'BERTH_CONFIG_INVALID' },
    });
    expect(end.error.message).toMatch(/config\.yml:3:\d+/);
  });
});
