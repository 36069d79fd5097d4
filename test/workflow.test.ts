/**
 * Proposed, tracked and destroy runs with a stand-in terraform that acts on the arguments berth
 * really passes: plan writes a plan file, show -json prints a plan in Terraform's JSON format,
 * apply refuses any plan file but the one planned. Tracked runs without auto-deploy end their
 * container at UNCONFIRMED and apply in a new container from the saved workspace.
 */
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import type { EngineClient } from '../src/executor/docker/engine-client.js';
import { expectNothingLeftBehind } from './harness/cleanup.js';
import {
  finished,
  resultOf,
  runBerth,
  spawnBerth,
  testStateDir,
  type BerthResult,
} from './harness/cli.js';
import { testEngine } from './harness/engine.js';
import { jobDir } from './harness/files.js';
import { startReleaseMirror, type ReleaseMirror } from './harness/release-mirror.js';

const STAND_IN = `#!/bin/sh
state=/mnt/workspace/.berth
echo "$*" >> "$state/tool-calls"
case "$1" in
  init) echo "init done" ;;
  plan)
    out=
    for a in "$@"; do case "$a" in -out=*) out=\${a#-out=} ;; esac; done
    [ -n "$out" ] || { echo "plan needs -out" >&2; exit 1; }
    id="plan-$(date +%s)-$$"
    echo "$id" > "$out"; echo "$id" > "$state/planned-id"
    echo "planned $id" ;;
  show)
    [ "$2" = "-json" ] && [ -f "$3" ] || { echo "show needs -json PLANFILE" >&2; exit 1; }
    # A repository may bring the plan JSON to show (the plan summary's tests).
    if [ -f /mnt/workspace/source/show.json ]; then cat /mnt/workspace/source/show.json; exit 0; fi
    printf '%s\\n' '{"format_version":"1.2","resource_changes":[{"address":"null_resource.a","change":{"actions":["create"]}},{"address":"null_resource.b","change":{"actions":["delete","create"]}},{"address":"null_resource.c","change":{"actions":["no-op"]}}]}' ;;
  apply)
    for f in "$@"; do :; done
    [ -f "$f" ] && [ "$(cat "$f")" = "$(cat "$state/planned-id")" ] || { echo "apply refuses $f: not the plan that was planned" >&2; exit 1; }
    echo "applied $(cat "$f")" ;;
  destroy) echo "destroyed everything" ;;
  *) echo "unknown command $1" >&2; exit 1 ;;
esac
`;

let engine: EngineClient;
let mirror: ReleaseMirror;
let stateDir: string;

const HOOKS = `version: 2
stack_defaults:
  terraform_version: "1.6.2"
  before_plan:
    - export FROM_PLAN=kept-across-containers
    - chmod 750 deploy.sh && ln -s main.tf link.tf
  after_apply:
    - 'echo "after_apply: $FROM_PLAN $(stat -c %a deploy.sh) $(readlink link.tf) $(stat -c %u deploy.sh)"'
`;

function repo(): string {
  return jobDir({
    '.berth/config.yml': HOOKS,
    'main.tf': 'terraform {}\n',
    'deploy.sh': 'echo deploy\n',
  });
}

function berthArgs(args: string[]): string[] {
  return ['run', repo(), '--image', inject('busyboxImage'), '--pull', 'never', '--json', ...args];
}

function berthEnv(): Record<string, string> {
  return {
    BERTH_STATE_DIR: stateDir,
    BERTH_TERRAFORM_RELEASES_URL: mirror.baseUrl,
    BERTH_TERRAFORM_SIGNING_KEY_FILE: mirror.keyFile,
  };
}

function berth(args: string[], input?: string): Promise<BerthResult> {
  return runBerth(berthArgs(args), berthEnv(), { input });
}

function states(result: BerthResult): string[] {
  return result.events.flatMap((e) => (e.type === 'run.state' ? [e.state] : []));
}

function output(result: BerthResult, phase: string): string {
  return result.events
    .flatMap((e) => (e.type === 'log' && e.phase === phase ? [e.text] : []))
    .join('');
}

function containers(result: BerthResult): string[] {
  return result.events.flatMap((e) => (e.type === 'container.started' ? [e.containerId] : []));
}

beforeAll(async () => {
  engine = testEngine();
  stateDir = testStateDir();
  mirror = await startReleaseMirror('terraform');
  await mirror.publish('1.6.2', { content: STAND_IN });
});

afterEach(async () => {
  await expectNothingLeftBehind(engine);
});

afterAll(async () => {
  await mirror.stop();
  engine.close();
});

describe('run types', () => {
  it('proposed: init and plan with a saved plan file, and the plan summary from show -json', async () => {
    const result = await berth(['--type', 'proposed']);
    expect(result.code, JSON.stringify(finished(result).error)).toBe(0);
    expect(states(result)).toEqual(['INITIALIZING', 'PLANNING']);
    expect(output(result, 'plan')).toMatch(/^planned plan-\d+-\d+\n$/);
    const summary = { add: 2, change: 0, destroy: 1, replace: 1 };
    expect(result.events.find((e) => e.type === 'plan.summary')).toMatchObject(summary);
    expect(finished(result)).toMatchObject({ state: 'FINISHED', plan: summary });
    expect(finished(result).phases.map((p) => p.name)).toEqual(['init', 'plan']);
  });

  it('masks secrets in the plan summary the job wrote', async () => {
    // A secret in a for_each key reaches the plan's resource addresses.
    const plan = {
      resource_changes: [
        { address: 'aws_iam_access_key.k["tok-4711-x"]', change: { actions: ['create'] } },
      ],
    };
    const dir = jobDir({
      '.berth/config.yml': 'version: 2\nstack_defaults:\n  terraform_version: "1.6.2"\n',
      'main.tf': 'terraform {}\n',
      'show.json': JSON.stringify(plan),
    });
    const args = [
      'run',
      dir,
      '--image',
      inject('busyboxImage'),
      '--pull',
      'never',
      '--json',
      '--type',
      'proposed',
    ];
    const result = await runBerth([...args, '--secret-env', 'TOKEN=tok-4711-x'], berthEnv());
    expect(result.code, JSON.stringify(finished(result).error)).toBe(0);
    const resources = [{ address: 'aws_iam_access_key.k["*****"]', actions: ['create'] }];
    expect(result.events.find((e) => e.type === 'plan.summary')).toMatchObject({ resources });
    expect(finished(result).plan).toMatchObject({ resources });
    expect(result.stdout).not.toContain('tok-4711');
  });

  it('tracked with --auto-deploy applies exactly the saved plan in the same container', async () => {
    const result = await berth(['--type', 'tracked', '--auto-deploy']);
    expect(result.code, JSON.stringify(finished(result).error)).toBe(0);
    expect(states(result)).toEqual(['INITIALIZING', 'PLANNING', 'APPLYING']);
    expect(containers(result)).toHaveLength(1);
    const planned = /planned (plan-\S+)/.exec(output(result, 'plan'))?.[1];
    expect(output(result, 'apply')).toContain(`applied ${planned}\n`);
  });

  it('tracked without auto-deploy: UNCONFIRMED, then confirmed, applies in a new container with modes, links and exports kept', async () => {
    const proc = spawnBerth(berthArgs(['--type', 'tracked']), berthEnv(), { interactive: true });
    await proc.waitFor('Apply this plan?');
    // While it waits, the saved workspace (plan, sources, exported variables) is sealed on disk.
    const runId = /"runId":"([^"]+)"/.exec(proc.stdout())?.[1] as string;
    const sealed = readFileSync(path.join(stateDir, 'runs', runId, 'workspace.tar.sealed'));
    expect(sealed.length).toBeGreaterThan(10_000);
    for (const plain of ['kept-across-containers', 'terraform {}', 'echo deploy', 'FROM_PLAN'])
      expect(sealed.toString('latin1')).not.toContain(plain);
    // `y` applies, as `berth stack trigger --follow` reads it (`yes` does too).
    proc.child.stdin?.end('y\n');
    const result = await resultOf(proc, true);
    expect(result.code, JSON.stringify(finished(result).error)).toBe(0);
    expect(states(result)).toEqual([
      'INITIALIZING',
      'PLANNING',
      'UNCONFIRMED',
      'CONFIRMED',
      'APPLYING',
    ]);
    const [first, second] = containers(result);
    expect(first).toBeDefined();
    expect(second).toBeDefined();
    expect(first).not.toBe(second);
    const planned = /planned (plan-\S+)/.exec(output(result, 'plan'))?.[1];
    expect(output(result, 'apply')).toBe(
      `applied ${planned}\nafter_apply: kept-across-containers 750 main.tf 1983\n`,
    );
    expect(result.stderr).toContain('Apply this plan? [y/N] (y applies, anything else discards)');
    expect(readdirSync(path.join(stateDir, 'runs', finished(result).runId))).not.toContain(
      'workspace.tar.sealed',
    );
  });

  it('BERTH_SAVED_WORKSPACE_INVALID: a saved workspace changed on disk while waiting is never applied', async () => {
    const proc = spawnBerth(berthArgs(['--type', 'tracked']), berthEnv(), { interactive: true });
    await proc.waitFor('Apply this plan?');
    const runId = /"runId":"([^"]+)"/.exec(proc.stdout())?.[1] as string;
    const file = path.join(stateDir, 'runs', runId, 'workspace.tar.sealed');
    const sealed = readFileSync(file);
    const middle = Math.floor(sealed.length / 2);
    sealed[middle] = (sealed[middle] as number) ^ 0xff;
    writeFileSync(file, sealed);
    proc.child.stdin?.end('yes\n');
    const result = await resultOf(proc, true);
    expect(result.code).not.toBe(0);
    expect(finished(result).error?.code).toBe('BERTH_SAVED_WORKSPACE_INVALID');
    expect(output(result, 'apply')).toBe('');
  });

  it('tracked and stopped while asking: STOPPED at once, nothing applied, nothing kept', async () => {
    const proc = spawnBerth(berthArgs(['--type', 'tracked']), berthEnv(), { interactive: true });
    await proc.waitFor('Apply this plan?');
    proc.child.kill('SIGINT');
    const result = await resultOf(proc, true);
    expect(result.code).toBe(130);
    expect(finished(result).state).toBe('STOPPED');
    expect(states(result)).toEqual(['INITIALIZING', 'PLANNING', 'UNCONFIRMED']);
    expect(output(result, 'apply')).toBe('');
    expect(readdirSync(path.join(stateDir, 'runs', finished(result).runId))).not.toContain(
      'workspace.tar.sealed',
    );
  });

  it('tracked and discarded: no apply, state DISCARDED, the saved workspace removed', async () => {
    const result = await berth(['--type', 'tracked'], 'no\n');
    expect(result.code).toBe(0);
    expect(states(result)).toEqual(['INITIALIZING', 'PLANNING', 'UNCONFIRMED', 'DISCARDED']);
    expect(finished(result).state).toBe('DISCARDED');
    expect(output(result, 'apply')).toBe('');
    expect(readdirSync(path.join(stateDir, 'runs', finished(result).runId))).not.toContain(
      'workspace.tar.sealed',
    );
  });

  it('destroy: init and destroy', async () => {
    const result = await berth(['--type', 'destroy']);
    expect(result.code, JSON.stringify(finished(result).error)).toBe(0);
    expect(states(result)).toEqual(['INITIALIZING', 'DESTROYING']);
    expect(output(result, 'destroy')).toBe('destroyed everything\n');
    expect(finished(result).plan).toBeNull();
  });

  it('gives ro_ variables only to read phases and wo_ variables only to apply', async () => {
    const result = await runBerth(
      [
        'run',
        jobDir({
          '.berth/config.yml':
            'version: 2\nstack_defaults:\n  terraform_version: "1.6.2"\n  before_plan: [\'echo "plan sees ${ro_READER:-none} ${wo_WRITER:-none}"\']\n  before_apply: [\'echo "apply sees ${ro_READER:-none} ${wo_WRITER:-none}"\']\n',
          'main.tf': '',
        }),
        '--image',
        inject('busyboxImage'),
        '--pull',
        'never',
        '--json',
        '--type',
        'tracked',
        '--auto-deploy',
        '--env',
        'ro_READER=r',
        '--secret-env',
        'wo_WRITER=w-secret',
        '--',
        'true',
      ],
      {
        BERTH_STATE_DIR: stateDir,
        BERTH_TERRAFORM_RELEASES_URL: mirror.baseUrl,
        BERTH_TERRAFORM_SIGNING_KEY_FILE: mirror.keyFile,
      },
    );
    expect(result.code, JSON.stringify(finished(result).error)).toBe(0);
    expect(output(result, 'plan')).toContain('plan sees r none\n');
    expect(output(result, 'apply')).toContain('apply sees none *****\n');
  });

  it('rejects an unknown run type', async () => {
    const result = await berth(['--type', 'deploy']);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('--type "deploy": use one of task, proposed, tracked, destroy');
  });
});

describe('CUSTOM workflow tool', () => {
  const custom = (files: Record<string, string>): string =>
    jobDir({
      '.berth/config.yml': 'version: 2\nstack_defaults:\n  terraform_workflow_tool: CUSTOM\n',
      'main.tf': '',
      ...files,
    });
  const run = (dir: string, type: string): Promise<BerthResult> =>
    runBerth(
      [
        'run',
        dir,
        '--image',
        inject('busyboxImage'),
        '--pull',
        'never',
        '--json',
        '--type',
        type,
        '--auto-deploy',
      ],
      { BERTH_STATE_DIR: stateDir },
    );

  it('runs the commands of .berth/workflow.yml, with the plan file filled in', async () => {
    const workflow = [
      'init: echo custom-init',
      // The reference documentation's plan template, Go template logic included.
      'plan: echo planned -lock={{ .Lock }} {{ if not .Refresh }}-refresh=false {{ end }}{{ range .Targets }}-target={{ . }} {{ end }}> "{{ .PlanFileName }}"',
      'showPlan: printf \'{"resource_changes":[{"address":"x.y","change":{"actions":["update"]}}]}\'',
      'apply: cat {{.PlanFileName}}',
      'destroy: echo custom-destroy',
    ].join('\n');
    const result = await run(custom({ '.berth/workflow.yml': workflow }), 'tracked');
    expect(result.code, JSON.stringify(finished(result).error)).toBe(0);
    expect(output(result, 'init')).toBe('custom-init\n');
    expect(output(result, 'apply')).toBe('planned -lock=true\n');
    expect(finished(result).plan).toMatchObject({ add: 0, change: 1, destroy: 0 });
    expect(result.events.some((e) => e.type === 'tool.ready')).toBe(false);
  });

  it('a missing workflow file, missing commands and a program missing from the image are three different errors', async () => {
    const noFile = await run(custom({}), 'proposed');
    expect(noFile.code).toBe(2);
    expect(noFile.stderr).toContain('BERTH_CUSTOM_WORKFLOW_MISSING');
    expect(noFile.stderr).toContain('.berth/workflow.yml or .spacelift/workflow.yml');

    const missing = await run(
      custom({ '.spacelift/workflow.yml': 'init: echo i\nplan: echo p\ncolour: blue\n' }),
      'tracked',
    );
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain('BERTH_CUSTOM_COMMANDS_MISSING');
    expect(missing.stderr).toContain('a tracked run needs showPlan, apply, which are missing');
    expect(missing.stderr).toContain('unknown command "colour"');

    const absent = await run(
      custom({ '.berth/workflow.yml': 'init: terragrunt init\ndestroy: terragrunt destroy\n' }),
      'destroy',
    );
    expect(absent.code).toBe(3);
    expect(finished(absent).error?.code).toBe('BERTH_CUSTOM_TOOL_MISSING');
    expect(finished(absent).error?.message).toContain('"terragrunt"');
    expect(finished(absent).phases).toEqual([]);
  });
});
