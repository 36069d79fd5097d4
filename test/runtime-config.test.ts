/**
 * The runtime configuration and hooks through `berth run`, on the real engine: precedence shown
 * with sources, project_root, environment, hook chaining, strict hooks, exported variables,
 * ::add-mask, after_run with the final state, and validation before any container starts.
 */
import { readFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import type { EngineClient } from '../src/executor/docker/engine-client.js';
import { jobDir } from './harness/files.js';
import { expectNothingLeftBehind } from './harness/cleanup.js';
import {
  finished,
  jobOutput,
  resultOf,
  runBerth,
  spawnBerth,
  testStateDir,
  type BerthResult,
} from './harness/cli.js';
import { testEngine, touchInContainer } from './harness/engine.js';
import { ADD_MASK_LINE_LIMIT } from '../src/domain/hook-script.js';
import { ADD_MASK_LIMITS } from '../src/domain/log-masker.js';

let engine: EngineClient;
let busybox: string;
let stateDir: string;

function berth(dir: string, args: string[], command?: string): Promise<BerthResult> {
  return runBerth(
    [
      'run',
      dir,
      '--image',
      busybox,
      '--pull',
      'never',
      '--json',
      ...args,
      ...(command === undefined ? [] : ['--', command]),
    ],
    {
      BERTH_STATE_DIR: stateDir,
    },
  );
}

/**
 * Runs a job that waits (`while [ ! -e /tmp/go ]`) until the test has seen `seen` in berth's
 * output, then lets it go on: ordering by what berth has shown, not by sleeping.
 */
async function berthStepped(dir: string, command: string, seen: string): Promise<BerthResult> {
  const proc = spawnBerth(
    ['run', dir, '--image', busybox, '--pull', 'never', '--json', '--', command],
    {
      BERTH_STATE_DIR: stateDir,
    },
  );
  await proc.waitFor(seen);
  const started = proc
    .stdout()
    .split('\n')
    .filter((line) => line.includes('"type":"container.started"'))
    .map((line) => JSON.parse(line) as { containerId: string })[0];
  await touchInContainer(engine, started?.containerId as string, '/tmp/go');
  return resultOf(proc, true);
}

const WAIT_FOR_GO = 'while [ ! -e /tmp/go ]; do sleep 0.05; done';

function phaseOutput(result: BerthResult, phase: string): string {
  return result.events
    .flatMap((e) => (e.type === 'log' && e.phase === phase ? [e.text] : []))
    .join('');
}

beforeAll(() => {
  engine = testEngine();
  busybox = inject('busyboxImage');
  stateDir = testStateDir();
});

afterEach(async () => {
  await expectNothingLeftBehind(engine);
});

afterAll(() => engine.close());

describe('runtime configuration in berth run', () => {
  it('resolves settings by version 2 precedence, shows each source, and applies project_root and environment', async () => {
    const dir = jobDir({
      '.berth/config.yml': `version: 2
stack_defaults:
  environment: { FROM: defaults }
  project_root: infra/shared
stacks:
  prod:
    project_root: infra/prod
`,
      'infra/prod/main.tf': '',
      'infra/shared/main.tf': '',
      'settings.yml': 'environment: { FROM: stack-settings }\nproject_root: infra/shared\n',
    });
    const result = await berth(
      dir,
      ['--stack', 'prod', '--stack-settings', path.join(dir, 'settings.yml'), '--env', 'FLAG=yes'],
      'pwd; echo "$FROM $FLAG"; echo "$TF_VAR_berth_stack_id $TF_VAR_spacelift_project_root $TF_VAR_berth_run_type"; echo "$TF_VAR_berth_run_trigger [$TF_VAR_berth_stack_labels]"',
    );
    expect(result.code, result.stderr).toBe(0);
    expect(jobOutput(result)).toBe(
      '/mnt/workspace/source/infra/prod\ndefaults yes\nprod infra/prod TASK\nberth run []\n',
    );
    const configured = result.events.find((e) => e.type === 'run.configured');
    expect(configured).toMatchObject({
      stack: 'prod',
      file: '.berth/config.yml',
      settings: {
        project_root: { value: 'infra/prod', source: '.berth/config.yml stacks.prod' },
        environment: { value: { FROM: 'defaults' }, source: '.berth/config.yml stack_defaults' },
        runner_image: { value: busybox, source: '--image' },
      },
    });
    expect(finished(result).configuration?.settings.project_root?.source).toBe(
      '.berth/config.yml stacks.prod',
    );
    expect(result.events.find((e) => e.type === 'run.finished' && e.runId)).toBeDefined();
    const runId = finished(result).runId;
    const again = await berth(dir, ['--stack', 'prod'], 'echo $TF_VAR_berth_run_id');
    expect(jobOutput(again).trim()).not.toBe(runId);
    expect(jobOutput(again).trim()).toBe(finished(again).runId);
  });

  it('gives the job the commit and branch of a git checkout', async () => {
    const dir = jobDir({ 'main.tf': '' });
    const git = (...args: string[]): string =>
      execFileSync(
        'git',
        ['-C', dir, '-c', 'user.name=t', '-c', 'user.email=t@example.invalid', ...args],
        { encoding: 'utf8' },
      ).trim();
    git('init', '-q', '-b', 'feature/x');
    git('add', '.');
    git('commit', '-q', '-m', 'first');
    const sha = git('rev-parse', 'HEAD');
    const result = await berth(
      dir,
      [],
      'echo "$TF_VAR_berth_commit_sha $TF_VAR_spacelift_commit_branch"',
    );
    expect(result.code, result.stderr).toBe(0);
    expect(jobOutput(result)).toBe(`${sha} feature/x\n`);
    const plain = await berth(jobDir(), [], 'echo "[$TF_VAR_berth_commit_sha]"');
    expect(jobOutput(plain)).toBe('[]\n');
  });

  it('follows version 1 precedence: the stack settings beat stack_defaults', async () => {
    const dir = jobDir({
      '.spacelift/config.yml': 'version: 1\nstack_defaults:\n  project_root: a\n',
      'a/x': '',
      'b/x': '',
    });
    const result = await berth(dir, ['--project-root', 'b'], 'pwd');
    expect(result.code, result.stderr).toBe(0);
    expect(jobOutput(result)).toBe('/mnt/workspace/source/b\n');
    expect(finished(result).configuration).toMatchObject({
      file: '.spacelift/config.yml',
      settings: { project_root: { source: 'stack settings' } },
    });
  });

  it('takes the runner image from the runtime configuration over --runner-image', async () => {
    const dir = jobDir({
      '.berth/config.yml': `version: 2\nstacks:\n  s:\n    runner_image: ${busybox}\n`,
    });
    const result = await runBerth(
      [
        'run',
        dir,
        '--stack',
        's',
        '--runner-image',
        'example.invalid/nope:1',
        '--pull',
        'never',
        '--json',
        '--',
        'true',
      ],
      { BERTH_STATE_DIR: stateDir },
    );
    expect(result.code, result.stderr).toBe(0);
    expect(finished(result).configuration?.settings.runner_image).toEqual({
      value: busybox,
      source: '.berth/config.yml stacks.s',
    });
  });

  it('reports every configuration problem with file:line:column before starting anything', async () => {
    const dir = jobDir({
      '.berth/config.yml':
        'version: 2\nstack_defaults:\n  projet_root: x\n  before_init: echo\nstacks:\n  s:\n    project_root: ../up\n',
    });
    const result = await berth(dir, [], 'true');
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('3 problems in the configuration');
    expect(result.stderr).toContain(
      '.berth/config.yml:3:3: unknown setting "projet_root" in stack_defaults (did you mean project_root?)',
    );
    expect(result.stderr).toContain(
      '.berth/config.yml:4:16: stack_defaults.before_init must be a list of shell commands',
    );
    expect(result.stderr).toContain(
      '.berth/config.yml:7:19: stacks.s.project_root: project_root "../up" leaves the repository',
    );
    expect(result.stderr).toContain('BERTH_CONFIG_INVALID');
    // Nothing started: the --json stream is the one error object.
    expect(result.events).toMatchObject([
      { type: 'error', exitCode: 2, error: { code: 'BERTH_CONFIG_INVALID' } },
    ]);
  });

  it('says so when project_root is not a directory in the repository', async () => {
    const result = await berth(
      jobDir({ '.berth/config.yml': 'version: 2\nstack_defaults:\n  project_root: missing\n' }),
      [],
      'true',
    );
    expect(result.code).toBe(2);
    expect(result.stderr).toContain(
      'project_root "missing" (from .berth/config.yml stack_defaults) is not a directory',
    );
  });
});

describe('hooks', () => {
  const withHooks = (hooks: string): string =>
    jobDir({ '.berth/config.yml': `version: 2\nstack_defaults:\n${hooks}` });

  it('run before and after the command in one session; exports reach the command', async () => {
    const result = await berth(
      withHooks(
        '  before_perform: ["export STAGE=set-by-hook", "echo before"]\n  after_perform: ["echo after $STAGE"]\n',
      ),
      [],
      'echo "command $STAGE"',
    );
    expect(result.code, result.stderr).toBe(0);
    expect(jobOutput(result)).toBe('before\ncommand set-by-hook\nafter set-by-hook\n');
  });

  it('a failing before-hook skips the command and fails the run', async () => {
    const result = await berth(
      withHooks(
        '  before_perform: ["echo one", "exit 4", "echo never"]\n  after_perform: ["echo never-after"]\n',
      ),
      [],
      'echo never-command',
    );
    expect(result.code).toBe(1);
    expect(jobOutput(result)).toBe('one\n');
    expect(finished(result).jobExitCode).toBe(4);
  });

  it('a failing command skips the after-hooks', async () => {
    const result = await berth(
      withHooks('  after_perform: ["echo never-after"]\n'),
      [],
      'echo cmd; false',
    );
    expect(result.code).toBe(1);
    expect(jobOutput(result)).toBe('cmd\n');
  });

  it('hide a failure in the middle of a multi-line hook unless strict_hooks is on', async () => {
    const hook = '  before_perform:\n    - |\n      false\n      echo rest-of-hook\n';
    const loose = await berth(withHooks(hook), [], 'echo command-ran');
    expect(loose.code).toBe(0);
    expect(jobOutput(loose)).toBe('rest-of-hook\ncommand-ran\n');
    const strict = await berth(withHooks(`${hook}  strict_hooks: true\n`), [], 'echo command-ran');
    expect(strict.code).toBe(1);
    expect(jobOutput(strict)).toBe('');
    const unset = await berth(
      withHooks('  strict_hooks: true\n  before_perform: ["echo $NOT_SET_ANYWHERE"]\n'),
      [],
      'true',
    );
    expect(unset.code).toBe(1);
    const exports = await berth(
      withHooks('  strict_hooks: true\n  before_perform: ["export FROM_STRICT=kept"]\n'),
      [],
      'echo $FROM_STRICT',
    );
    expect(jobOutput(exports)).toBe('kept\n');
  });

  it('::add-mask masks the value in all later output', async () => {
    const result = await berthStepped(
      withHooks(
        '  before_perform: [\'TOKEN=tok-$(date +%s)-x; echo "::add-mask $TOKEN"; echo "$TOKEN" > /tmp/t\']\n',
      ),
      // The engine reads stdout and stderr through separate pipes, so the other stream is masked
      // from the moment berth has read the directive: the stderr write waits until berth has
      // shown the masked stdout line.
      `echo "value: $(cat /tmp/t)"; ${WAIT_FOR_GO}; cat /tmp/t >&2`,
      'value: *****',
    );
    expect(result.code, result.stderr).toBe(0);
    expect(jobOutput(result, 'stdout')).toBe('::add-mask *****\nvalue: *****\n');
    expect(jobOutput(result, 'stderr')).toBe('*****\n');
    expect(result.stdout).not.toMatch(/tok-\d+-x/);
  });

  it('bounds what a job adds with ::add-mask, and says so in the run', async () => {
    // An overlong directive line, a value past the length limit, and more values than allowed.
    const script = [
      `printf '::add-mask %s\\n' "$(head -c ${ADD_MASK_LINE_LIMIT + 1} /dev/zero | tr '\\0' x)"`,
      `v=$(head -c ${ADD_MASK_LIMITS.valueChars + 1} /dev/zero | tr '\\0' y); echo "::add-mask $v"; echo "$v" | head -c 8; echo`,
      `i=1; while [ $i -le ${ADD_MASK_LIMITS.values + 1} ]; do echo "::add-mask val-$i-z"; i=$((i+1)); done`,
      `echo "val-1-z val-${ADD_MASK_LIMITS.values + 1}-z"`,
    ].join('; ');
    const result = await berth(jobDir(), [], script);
    expect(result.code, result.stderr).toBe(0);
    const directives = '::add-mask *****\n'.repeat(ADD_MASK_LIMITS.values + 3);
    expect(jobOutput(result, 'stdout')).toBe(
      `${directives.slice(0, 34)}yyyyyyyy\n${directives.slice(34)}***** val-${ADD_MASK_LIMITS.values + 1}-z\n`,
    );
    const warnings = finished(result).warnings.filter((w) => w.startsWith('::add-mask'));
    expect(warnings).toEqual([
      expect.stringContaining(`a line longer than ${ADD_MASK_LINE_LIMIT} characters`),
      expect.stringContaining(`a value longer than ${ADD_MASK_LIMITS.valueChars} characters`),
      expect.stringContaining(`more than ${ADD_MASK_LIMITS.values} values`),
    ]);
  });

  it('masks an ::add-mask value in the stored log even where it was printed before the directive', async () => {
    const result = await berthStepped(
      jobDir(),
      // Printed first on stderr, then declared on stdout once the live view has shown it.
      `printf "early-leak-4711\\n" >&2; ${WAIT_FOR_GO}; echo "::add-mask early-leak-4711"; echo "later early-leak-4711"`,
      '"text":"early-leak-4711',
    );
    expect(result.code, result.stderr).toBe(0);
    expect(jobOutput(result, 'stderr')).toBe('early-leak-4711\n');
    expect(jobOutput(result, 'stdout')).toBe('::add-mask *****\nlater *****\n');
    const log = readFileSync(finished(result).log.path as string, 'utf8');
    expect(log).not.toContain('early-leak-4711');
    expect(log).toContain('later *****');
  });

  it('never saves secrets in the phase environment that travels with the workspace', async () => {
    const dir = jobDir({
      '.berth/config.yml':
        'version: 2\nstack_defaults:\n  after_run: ["grep -c -e TOKEN -e t0ps3cret -e KEPT /mnt/workspace/.berth/env.sh"]\n',
    });
    const result = await runBerth(
      [
        'run',
        dir,
        '--image',
        busybox,
        '--pull',
        'never',
        '--json',
        '--secret-env',
        'TOKEN=t0ps3cret',
        '--',
        'export KEPT=yes; echo "$TOKEN"',
      ],
      { BERTH_STATE_DIR: stateDir },
    );
    expect(result.code, result.stderr).toBe(0);
    expect(phaseOutput(result, 'task')).toBe('*****\n');
    // Only KEPT matches: the secret (name or value) was in the job's environment but not in the
    // saved file.
    expect(phaseOutput(result, 'after_run')).toBe('1\n');
  });

  it('after_run runs at the end of every run with the final state, without changing it', async () => {
    const hooks = '  after_run: ["echo final=$BERTH_RUN_FINAL_STATE", "exit 9"]\n';
    const ok = await berth(withHooks(hooks), [], 'echo work');
    expect(ok.code).toBe(0);
    expect(phaseOutput(ok, 'after_run')).toBe('final=FINISHED\n');
    expect(finished(ok).afterRun?.exitCode).toBe(9);
    expect(finished(ok).state).toBe('FINISHED');
    expect(finished(ok).warnings.join('\n')).toContain(
      'after_run hooks ended with exit code 9; the run stays FINISHED',
    );

    const failed = await berth(withHooks(hooks), [], 'exit 3');
    expect(failed.code).toBe(1);
    expect(phaseOutput(failed, 'after_run')).toBe('final=FAILED\n');

    const timedOut = await berth(
      withHooks('  after_run: ["echo final=$BERTH_RUN_FINAL_STATE"]\n'),
      // Counted from the run's start, before the container's: room for a slow engine.
      ['--timeout', '5s', '--grace', '5s'],
      'sleep 30',
    );
    expect(timedOut.code).toBe(124);
    expect(phaseOutput(timedOut, 'after_run')).toBe('final=FAILED\n');
  });
});
