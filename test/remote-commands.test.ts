/**
 * The server's command line as a script and a new user meet it, against a real `berth server`
 * process (no worker: runs stay queued until cancelled): `berth stack update`, `--json` on every
 * command, usage errors whose fix names the command used, refusals with a command-line fix, and
 * `berth runs logs` of a run that ended before any output, what following a run says when no
 * worker of its pool can take it, and the server's address as a new user gives it.
 */
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runBerth, spawnBerth, resultOf, type BerthResult } from './harness/cli.js';
import { startBerthServer, type BerthServer } from './harness/berth-server.js';
import { tempDir } from './harness/ownership.js';
import { apiRequest } from './harness/api-request.js';
import { startWebPage } from './harness/web-page.js';

let server: BerthServer;
const COMMIT = 'a'.repeat(40);

function berth(args: string[], env: Record<string, string> = {}): Promise<BerthResult> {
  return runBerth(args, { BERTH_SERVER: server.url, BERTH_TOKEN: server.admin, ...env });
}

/** The one JSON object `--json` printed on stdout. */
function json<T = Record<string, unknown>>(result: BerthResult): T {
  expect(result.code, result.stderr).toBe(0);
  const lines = result.stdout.trim().split('\n');
  expect(lines).toHaveLength(1);
  return JSON.parse(lines[0] as string) as T;
}

/** Each line of stdout as a JSON object (a line that is not one fails the test). */
function jsonLines(stdout: string): Record<string, unknown>[] {
  return stdout
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => JSON.parse(line) as Record<string, unknown>);
}

async function createStack(id: string, pool: string, ...more: string[]): Promise<void> {
  const created = await berth([
    'stack',
    'create',
    id,
    '--repo',
    'https://git.example.invalid/team/infra.git',
    '--pool',
    pool,
    ...more,
  ]);
  expect(created.code, created.stderr).toBe(0);
}

/** A run of the stack (no worker takes it: it waits, READY). */
async function trigger(stack: string): Promise<string> {
  const run = json<{ id: string; state: string }>(
    await berth(['stack', 'trigger', stack, '--commit', COMMIT, '--json']),
  );
  expect(run.state).toBe('READY');
  return run.id;
}

beforeAll(async () => {
  server = await startBerthServer();
  const pool = await server.api('POST', '/pools', { id: 'team', kind: 'private' });
  expect(pool.status).toBe(201);
}, 120_000);

afterAll(async () => {
  await server?.stop();
});

describe('berth stack update', () => {
  it("fixes a typo'd branch and other settings in place: variables and runs stay", async () => {
    await createStack('typo', 'team', '--branch', 'mian', '--tool', 'OPEN_TOFU');
    expect((await berth(['stack', 'env', 'set', 'typo', 'REGION=eu-1'])).code).toBe(0);
    const run = await trigger('typo');

    const fixed = json<Record<string, unknown>>(
      await berth([
        'stack',
        'update',
        'typo',
        '--branch',
        'main',
        '--runner-image',
        'quay.io/team/runner:1',
        '--tool-version',
        '~> 1.8',
        '--label',
        'prod',
        '--label',
        'eu',
        '--auto-deploy',
        '--json',
      ]),
    );
    expect(fixed).toMatchObject({
      id: 'typo',
      repository: 'https://git.example.invalid/team/infra.git',
      branch: 'main',
      tool: 'OPEN_TOFU',
      toolVersion: '~> 1.8',
      runnerImage: 'quay.io/team/runner:1',
      labels: ['prod', 'eu'],
      autoDeploy: true,
      variables: [{ name: 'REGION', secret: false, value: 'eu-1' }],
    });
    const runs = json<{ id: string }[]>(await berth(['runs', 'list', '--stack', 'typo', '--json']));
    expect(runs.map((r) => r.id)).toEqual([run]);

    // '' puts a setting back to its default; --no-auto-deploy turns auto-deploy off.
    const cleared = json<Record<string, unknown>>(
      await berth([
        'stack',
        'update',
        'typo',
        '--runner-image',
        '',
        '--tool',
        '',
        '--tool-version',
        '',
        '--label',
        '',
        '--no-auto-deploy',
        '--json',
      ]),
    );
    expect(cleared).toMatchObject({
      branch: 'main',
      tool: null,
      toolVersion: null,
      runnerImage: null,
      labels: [],
      autoDeploy: false,
    });

    // The API itself: null is "none" on create too (it was stored as an empty image reference).
    const viaApi = await server.api('POST', '/stacks', {
      id: 'nulls',
      pool: 'team',
      repository: 'https://git.example.invalid/team/infra.git',
      runnerImage: null,
      toolVersion: null,
    });
    expect(viaApi.body).toMatchObject({ runnerImage: null, toolVersion: null });

    // The human view is the stack, as `stack show` prints it.
    const dir = tempDir('berth-stack-dir-');
    const moved = await berth(['stack', 'update', 'typo', '--dir', dir]);
    expect(moved.code, moved.stderr).toBe(0);
    expect(moved.stderr).not.toContain('warning');
    const file = path.join(dir, 'main.tf');
    writeFileSync(file, '');
    const toFile = await berth(['stack', 'update', 'typo', '--dir', file]);
    expect(toFile.stderr).toContain(
      `berth: warning: ${file} is not a directory on this machine: runs of stack typo read it`,
    );
    expect((await berth(['stack', 'update', 'typo', '--dir', dir])).code).toBe(0);
    expect(moved.stdout).toContain(`source        ${dir}`);
    expect(json(await berth(['stack', 'show', 'typo', '--json']))).toMatchObject({
      repository: null,
      branch: null,
      localDir: dir,
    });
    expect((await berth(['runs', 'cancel', run])).code).toBe(0);
  });

  it('lists runs a page at a time: a full page says how to see the older ones', async () => {
    await createStack('paged', 'team');
    const [oldest, middle, newest] = [
      await trigger('paged'),
      await trigger('paged'),
      await trigger('paged'),
    ];
    const stacks = (await berth(['stack', 'list'])).stdout.split('\n');
    expect(stacks).toContain(`paged  pool team  last run ${newest} PROPOSED READY`);
    const first = await berth(['runs', 'list', '--stack', 'paged', '--limit', '02']);
    expect(first.code, first.stderr).toBe(0);
    const lines = first.stdout.trim().split('\n');
    expect(lines.map((line) => line.split(/\s+/)[0])).toEqual([newest, middle]);
    expect(first.stderr).toBe(
      `berth: older runs: berth runs list --stack paged --before ${middle} --limit 2\n`,
    );
    const rest = await berth([
      'runs',
      'list',
      '--stack',
      'paged',
      '--before',
      middle,
      '--limit',
      '2',
    ]);
    expect(rest.stdout.trim().split(/\s+/)[0]).toBe(oldest);
    expect(rest.stderr).toBe('');
    // Run ids are read in any case, as ULIDs are.
    const paged = json<{ id: string }[]>(
      await berth(['runs', 'list', '--stack', 'paged', '--before', newest.toLowerCase(), '--json']),
    );
    expect(
      json<{ id: string }>(await berth(['runs', 'show', oldest.toLowerCase(), '--json'])).id,
    ).toBe(oldest);
    expect(paged.map((r) => r.id)).toEqual([middle, oldest]);
    for (const limit of ['0', '501', '2x']) {
      const bad = await berth(['runs', 'list', '--limit', limit]);
      expect(bad.code).toBe(2);
      expect(bad.stderr).toContain(`--limit ${limit} is not a number of runs from 1 to 500`);
    }
    for (const id of [oldest, middle, newest])
      expect((await berth(['runs', 'cancel', id])).code).toBe(0);
  });

  it('takes the tool names berth run takes, stores the canonical one, and shows what the default is', async () => {
    await createStack('spelled', 'team', '--tool', 'terraform');
    const created = json<{ tool: string | null }>(
      await berth(['stack', 'show', 'spelled', '--json']),
    );
    expect(created.tool).toBe('TERRAFORM_FOSS');
    const tofu = json<{ tool: string | null }>(
      await berth(['stack', 'update', 'spelled', '--tool', 'Tofu', '--json']),
    );
    expect(tofu.tool).toBe('OPEN_TOFU');
    const bad = await berth(['stack', 'update', 'spelled', '--tool', 'pulumi']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('--tool "pulumi" is not a workflow tool [BERTH_USAGE]');
    expect(bad.stderr).toContain('fix: Use terraform, opentofu (or tofu) or custom');
    const cleared = await berth(['stack', 'update', 'spelled', '--tool', '']);
    expect(cleared.code, cleared.stderr).toBe(0);
    expect(cleared.stdout).toContain(
      "tool          default (OpenTofu, newest stable unless a version is set, when the source's .berth/config.yml names no tool; a task run gets none)",
    );
  });

  it('says what is wrong: nothing to change, two sources, a stack that does not exist', async () => {
    const nothing = await berth(['stack', 'update', 'typo']);
    expect(nothing.code).toBe(2);
    expect(nothing.stderr).toContain('nothing to change: give at least one setting [BERTH_USAGE]');
    expect(nothing.stderr).toContain('`berth stack update --help`');
    const both = await berth([
      'stack',
      'update',
      'typo',
      '--repo',
      'https://x.example/r.git',
      '--dir',
      '/tmp',
    ]);
    expect(both.code).toBe(2);
    expect(both.stderr).toContain('not both');
    expect(both.stderr).toContain('fix: Run `berth stack update --help`');
    // No source at all: the fix names the options, not the API's fields.
    const sourceless = await berth(['stack', 'create', 'nowhere', '--pool', 'team']);
    expect(sourceless.code).toBe(2);
    expect(sourceless.stderr).toContain(
      'fix: Give one: `berth stack create ID --repo URL [--branch B]` or `--dir DIR`',
    );
    const missing = await berth(['stack', 'update', 'no-such-stack', '--branch', 'main']);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain('stack no-such-stack does not exist [NOT_FOUND]');
    expect(missing.stderr).toContain('`berth stack list`');
    // Creating it again points at update; a variable it lacks at `stack show`.
    const again = await berth(['stack', 'create', 'typo', '--dir', '/tmp', '--pool', 'team']);
    expect(again.code).toBe(2);
    expect(again.stderr).toContain('[ALREADY_EXISTS]');
    expect(again.stderr).toContain(
      '`berth stack update ID` and `berth pool update ID` change their settings',
    );
    const noVariable = await berth(['stack', 'env', 'unset', 'typo', 'NOT_SET']);
    expect(noVariable.code).toBe(2);
    expect(noVariable.stderr).toContain('has no variable NOT_SET [NOT_FOUND]');
    expect(noVariable.stderr).toContain("`berth stack show ID` a stack's variables");
    const badPool = await berth(['stack', 'update', 'typo', '--pool', 'nowhere', '--json']);
    expect(badPool.code).toBe(2);
    expect(jsonLines(badPool.stdout).at(-1)).toMatchObject({
      type: 'error',
      error: {
        code: 'BERTH_SERVER_REFUSED',
        message: expect.stringContaining('[POOL_NOT_FOUND]') as unknown,
      },
    });
  });
});

describe('--json on every command', () => {
  it('stack env set/unset and stack delete print JSON (no secret value)', async () => {
    await createStack('scripted', 'team');
    const fromEnvironment = await berth(
      ['stack', 'env', 'set', 'scripted', 'API_KEY', '--secret', '--json'],
      { API_KEY: 'hidden-value-4242' },
    );
    const set = json<{ variables: unknown[] }>(fromEnvironment);
    expect(set.variables).toEqual([{ name: 'API_KEY', secret: true }]);
    // Taken from the environment: nothing to warn of.
    expect(fromEnvironment.stderr).toBe('');
    // A secret not in the environment: the fix keeps its value off the command line.
    const missing = await berth(['stack', 'env', 'set', 'scripted', 'NOT_SET_HERE', '--secret']);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain(
      "fix: Export NOT_SET_HERE first: a secret given as NOT_SET_HERE=VALUE is seen by `ps` and kept in the shell's history",
    );
    // A secret too short to mask well is set, with a warning on stderr (stdout stays JSON).
    const short = await berth(['stack', 'env', 'set', 'scripted', 'ZONE=eu', '--secret', '--json']);
    expect(json<{ variables: unknown[] }>(short).variables).toContainEqual({
      name: 'ZONE',
      secret: true,
    });
    // And its value was on the command line: said too, with the way that keeps it off.
    expect(short.stderr).toBe(
      'berth: warning: the secret ZONE is only 2 characters long: every occurrence of it in the output is masked, inside other words too; if it is not secret, pass it as a plain variable\n' +
        "berth: warning: the secret's value was on the command line, where `ps` and the shell's history see it: next time give ZONE alone, with its value in berth's environment (`ZONE=\"$(cat FILE)\" berth stack env set scripted ZONE --secret`, or `read -rs ZONE && export ZONE`, which asks for one line without showing it)\n",
    );
    expect((await berth(['stack', 'env', 'unset', 'scripted', 'ZONE'])).code).toBe(0);
    // A misspelt git credential is set (the job may want it), with the name it was meant to be.
    const typo = await berth(['stack', 'env', 'set', 'scripted', 'BERTH_GIT_TOKNE', '--secret'], {
      BERTH_GIT_TOKNE: 'a-token-of-the-forge',
    });
    expect(typo.code).toBe(0);
    expect(typo.stderr).toContain(
      'berth: warning: berth reads no stack variable BERTH_GIT_TOKNE (did you mean BERTH_GIT_TOKEN?)',
    );
    expect((await berth(['stack', 'env', 'unset', 'scripted', 'BERTH_GIT_TOKNE'])).code).toBe(0);
    const unset = json<{ variables: unknown[] }>(
      await berth(['stack', 'env', 'unset', 'scripted', 'API_KEY', '--json']),
    );
    expect(unset.variables).toEqual([]);
    expect(json(await berth(['stack', 'delete', 'scripted', '--json']))).toEqual({
      id: 'scripted',
      deleted: true,
    });
    const gone = await berth(['stack', 'show', 'scripted', '--json']);
    expect(gone.code).toBe(2);
  });

  it('runs cancel, confirm and discard print the run; a refusal is one error object', async () => {
    await createStack('decided', 'team');
    const id = await trigger('decided');
    const canceled = json<{ id: string; state: string }>(
      await berth(['runs', 'cancel', id, '--json']),
    );
    expect(canceled).toMatchObject({ id, state: 'CANCELED' });
    for (const decision of ['confirm', 'discard']) {
      const refused = await berth(['runs', decision, id, '--json']);
      expect(refused.code).toBe(2);
      expect(jsonLines(refused.stdout)).toEqual([
        expect.objectContaining({
          type: 'error',
          error: expect.objectContaining({
            code: 'BERTH_SERVER_REFUSED',
            message: expect.stringContaining('[RUN_TRANSITION_INVALID]') as unknown,
          }) as unknown,
        }),
      ]);
    }
  });

  it('pool rotate-token prints the new token; login says where it saved, never the token', async () => {
    const created = json<{ token: string }>(
      await berth(['pool', 'create', 'rotated', '--kind', 'private', '--json']),
    );
    const rotated = json<{ pool: { id: string }; token: string }>(
      await berth(['pool', 'rotate-token', 'rotated', '--json']),
    );
    expect(rotated.pool.id).toBe('rotated');
    expect(rotated.token).toMatch(/^berth_pool_/);
    expect(rotated.token).not.toBe(created.token);
    // The human list shows what decides a pool's images.
    const shared = ['pool', 'create', 'shared', '--kind', 'public'];
    await berth([...shared, '--allowed-registries', 'quay.io,default', '--pull', 'always']);
    await berth(['pool', 'create', 'plain-public', '--kind', 'public']);
    const pools = (await berth(['pool', 'list'])).stdout;
    expect(pools).toContain(
      "shared  public  (allows quay.io, berth's default list; pull always)\n",
    );
    expect(pools).toContain("plain-public  public  (allows berth's default list)\n");
    expect(pools).toMatch(/^rotated {2}private$/m);

    const home = tempDir('berth-config-');
    const login = await runBerth(['login', '--server', server.url, '--json'], {
      BERTH_TOKEN: server.admin,
      XDG_CONFIG_HOME: home,
    });
    const file = path.join(home, 'berth', 'login.json');
    expect(json(login)).toEqual({ server: server.url, file, caCert: null });
    expect(login.stdout + login.stderr).not.toContain(server.admin);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    // Logged in: a command needs no BERTH_TOKEN. Logged out: the file is gone, and it does.
    const saved = { BERTH_SERVER: '', BERTH_TOKEN: '', XDG_CONFIG_HOME: home };
    expect((await runBerth(['stack', 'list'], saved)).code).toBe(0);
    expect(json(await runBerth(['logout', '--json'], saved))).toEqual({
      file,
      loggedOut: true,
      server: server.url,
    });
    expect(existsSync(file)).toBe(false);
    const after = await runBerth(['stack', 'list'], saved);
    expect(after.code).toBe(2);
    expect(after.stderr).toContain('no berth server to talk to');
    const again = await runBerth(['logout'], saved);
    expect(again.code).toBe(0);
    expect(again.stderr).toBe(`berth: not logged in (no ${file})\n`);
  });

  it('stack trigger --follow --json prints JSON events to the run’s end', async () => {
    await createStack('followed', 'team');
    const follow = spawnBerth(
      ['stack', 'trigger', 'followed', '--commit', COMMIT, '--follow', '--json'],
      { BERTH_SERVER: server.url, BERTH_TOKEN: server.admin },
    );
    await follow.waitFor('"type":"run.state"');
    const first = jsonLines(follow.stdout())[0] as { runId: string; state: string };
    expect(first).toMatchObject({ type: 'run.state', state: 'READY' });
    expect((await berth(['runs', 'cancel', first.runId])).code).toBe(0);
    const result = await resultOf(follow, true);
    // A run that did not finish: exit 1, as without --json.
    expect(result.code, result.stderr).toBe(1);
    const events = jsonLines(result.stdout);
    expect(events.map((e) => [e.type, e.state])).toEqual([
      ['run.state', 'READY'],
      ['run.state', 'CANCELED'],
      ['run.ended', 'CANCELED'],
    ]);
    for (const event of events) {
      expect(event.runId).toBe(first.runId);
      expect(event.run).toMatchObject({ id: first.runId, stack: 'followed' });
    }
  });
});

describe('following a run no worker can take', () => {
  /** Registers a worker in `pool` through the worker API, as `berth worker` does; its id. */
  async function registerWorker(poolToken: string, host: string): Promise<string> {
    const res = await apiRequest(server.url, poolToken, 'POST', '/worker/register', {
      host,
      berthVersion: '0.1.0',
      engineVersion: '20.10.24',
      concurrency: 1,
    });
    expect(res.status).toBe(200);
    return ((await res.json()) as { workerId: string }).workerId;
  }

  /** Follows a new run of `stack` until berth says why it waits; cancels it. */
  async function followUntilHint(stack: string, hint: string): Promise<BerthResult> {
    const follow = spawnBerth(['stack', 'trigger', stack, '--commit', COMMIT, '--follow'], {
      BERTH_SERVER: server.url,
      BERTH_TOKEN: server.admin,
    });
    await follow.waitFor(hint, 30_000);
    const id = /run (\S+) READY/.exec(follow.stderr())?.[1] as string;
    expect((await berth(['runs', 'cancel', id])).code).toBe(0);
    const result = await resultOf(follow, true);
    expect(result.code).toBe(1);
    // Said once, and only while the run waited.
    expect(result.stderr.split('waits for a worker').length).toBe(2);
    expect(result.stderr.indexOf('waits for a worker')).toBeLessThan(
      result.stderr.indexOf('CANCELED'),
    );
    return result;
  }

  it('says when no worker has registered in its pool, and how to start one', async () => {
    const created = await server.api('POST', '/pools', { id: 'empty', kind: 'private' });
    expect(created.status).toBe(201);
    await createStack('unserved', 'empty');
    const result = await followUntilHint('unserved', 'no worker has registered in that pool');
    expect(result.stderr).toContain(
      `waits for a worker of pool empty, and no worker has registered in that pool: start one on a machine with Docker: \`BERTH_POOL_TOKEN=<the pool's token> berth worker --server ${server.url}\``,
    );
    expect(result.stderr).toContain('`berth pool rotate-token empty` gives a new token');
  });

  it('says when every worker of its pool is offline, naming the last one heard of', async () => {
    const created = await server.api<{ token: string }>('POST', '/pools', {
      id: 'gone',
      kind: 'private',
    });
    const workerId = await registerWorker(created.body.token, 'build-7.example');
    const left = await apiRequest(server.url, created.body.token, 'POST', '/worker/deregister', {
      workerId,
    });
    expect(left.status).toBe(204);
    await createStack('abandoned', 'gone');
    const result = await followUntilHint('abandoned', 'is offline');
    expect(result.stderr).toContain(
      `waits for a worker of pool gone, and its only worker is offline (last heard of: ${workerId} on build-7.example at `,
    );
  });

  it('says when every online worker of its pool is drained, and how to undrain it', async () => {
    const created = await server.api<{ token: string }>('POST', '/pools', {
      id: 'drained',
      kind: 'private',
    });
    const workerId = await registerWorker(created.body.token, 'build-8.example');
    expect((await berth(['worker', 'drain', workerId])).code).toBe(0);
    await createStack('paused', 'drained');
    const result = await followUntilHint('paused', 'is drained');
    expect(result.stderr).toContain(
      `waits for a worker of pool drained, and every online worker of it is drained: \`berth worker undrain ${workerId}\` lets it take runs again`,
    );
  });
});

describe('errors name the command used and a fix on the command line', () => {
  it.each([
    [['runs', 'logs', 'RUN', '--bogus'], 'berth runs logs --help'],
    [['stack', 'env', 'set', 'S', 'A=1', '--bogus'], 'berth stack env set --help'],
    [['pool', 'create'], 'berth pool create --help'],
    [['stack', 'frob'], 'berth stack --help'],
    [['--bogus'], 'berth --help'],
  ])('berth %s: the fix is `%s`', async (args, help) => {
    const text = await berth(args);
    expect(text.code).toBe(2);
    expect(text.stderr).toContain(`fix: Run \`${help}\``);
    expect(text.stderr).not.toContain('berth help run');
    const asJson = await berth([...args, '--json']);
    expect(jsonLines(asJson.stdout).at(-1)).toMatchObject({
      type: 'error',
      error: { code: 'BERTH_USAGE', hint: expect.stringContaining(`\`${help}\``) as unknown },
    });
  });

  it('a stack with an active run is not deleted: STACK_HAS_RUNS says to cancel it', async () => {
    await createStack('busy', 'team');
    const id = await trigger('busy');
    const refused = await berth(['stack', 'delete', 'busy']);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain(`(${id}); cancel it first [STACK_HAS_RUNS]`);
    expect(refused.stderr).toContain(`fix: Cancel run ${id} (\`berth runs cancel ${id}\``);
    expect(refused.stderr).toContain('`berth runs list --stack busy`');
    expect(refused.stderr).not.toContain('Check the token');
    expect((await berth(['runs', 'cancel', id])).code).toBe(0);
    const deleted = await berth(['stack', 'delete', 'busy']);
    expect(deleted.code).toBe(0);
    expect(deleted.stderr).toBe(
      'berth: stack busy deleted\nberth: its 1 run(s), their logs and state histories were deleted with it\n',
    );
  });

  it("pool update changes a pool's settings; pool delete refuses a pool a stack uses, then deletes it", async () => {
    expect((await berth(['pool', 'create', 'spare', '--kind', 'public'])).code).toBe(0);
    const changed = await berth([
      'pool',
      'update',
      'spare',
      '--allowed-registries',
      'quay.io',
      '--default-image',
      'quay.io/team/runner:1',
      '--pull',
      'always',
    ]);
    expect(changed.code, changed.stderr).toBe(0);
    expect(changed.stdout).toBe(
      'spare  public  (allows quay.io; pull always; default image quay.io/team/runner:1)\n',
    );
    const rekind = await berth(['pool', 'update', 'spare', '--kind', 'private']);
    expect(rekind.code).toBe(2);
    expect(rekind.stderr).toContain(
      '--kind is set when a pool is created and does not change: pool update takes no --kind (pool spare: "private" given) [BERTH_USAGE]',
    );
    expect(rekind.stderr).toContain('`berth pool create NEW --kind private`');
    expect(rekind.stderr).toContain('`berth pool delete spare`');
    expect((await berth(['pool', 'update', '--help'])).stdout).not.toContain('--kind');
    const reset = await berth(['pool', 'update', 'spare', '--default-image', '', '--pull', '']);
    expect(reset.stdout).toBe('spare  public  (allows quay.io)\n');
    const named = await berth(['pool', 'update', 'spare', '--name', 'Spare pool']);
    expect(named.stdout).toBe('spare "Spare pool"  public  (allows quay.io)\n');
    const nothing = await berth(['pool', 'update', 'spare']);
    expect(nothing.code).toBe(2);
    expect(nothing.stderr).toContain('nothing to change: give at least one setting');
    const bad = await berth(['pool', 'update', 'spare', '--pull', 'sometimes']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('--pull');

    await createStack('in-spare', 'spare');
    const refused = await berth(['pool', 'delete', 'spare']);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain('worker pool spare has 1 stack(s): in-spare; move them');
    expect(refused.stderr).toContain('[POOL_IN_USE]');
    expect(refused.stderr).toContain('fix: `berth stack list` shows the stacks and their pools');
    // A stack without runs: nothing more to say.
    expect((await berth(['stack', 'delete', 'in-spare'])).stderr).toBe(
      'berth: stack in-spare deleted\n',
    );
    const deleted = await berth(['pool', 'delete', 'spare', '--json']);
    expect(json(deleted)).toEqual({ id: 'spare', deleted: true });
    expect((await berth(['pool', 'list'])).stdout).not.toContain('spare');
  });

  it('an image a public pool does not allow: refused at create, said at pool update, refused at trigger, then it runs', async () => {
    const pool = await server.api('POST', '/pools', {
      id: 'open',
      kind: 'public',
      allowList: ['quay.io'],
    });
    expect(pool.status).toBe(201);
    const offList = await berth([
      'stack',
      'create',
      'on-open',
      '--repo',
      'https://git.example.invalid/team/infra.git',
      '--pool',
      'open',
      '--runner-image',
      'registry.internal.example:5000/runner:1',
    ]);
    expect(offList.code).toBe(2);
    expect(offList.stderr).toContain('[IMAGE_NOT_ALLOWED]');
    expect(offList.stderr).toContain('or that option of `berth stack create`');
    expect(offList.stderr).not.toContain('PATCH');
    await createStack('on-open', 'open', '--runner-image', 'quay.io/team/runner:1');
    const ofOpen = await berth(['stack', 'list', '--pool', 'open']);
    expect(ofOpen.code, ofOpen.stderr).toBe(0);
    const typo = await berth(['stack', 'list', '--pool', 'opne']);
    expect(typo.code).toBe(2);
    expect(typo.stderr).toContain('worker pool opne does not exist [NOT_FOUND]');
    expect(ofOpen.stdout.trim().split('\n')).toEqual([
      expect.stringMatching(/^on-open {2}pool open {2}/),
    ]);
    // The pool's default image comes from its own allow-list, whatever a stack runs.
    const offListDefault = await berth([
      'pool',
      'update',
      'open',
      '--default-image',
      'registry.internal.example:5000/runner:1',
    ]);
    expect(offListDefault.code).toBe(2);
    expect(offListDefault.stderr).toContain('[IMAGE_NOT_ALLOWED]');
    expect(offListDefault.stderr).toContain('`berth pool update open --default-image REF`');
    // The pool's list narrows: its operator hears which stacks it stops.
    const narrowed = await berth(['pool', 'update', 'open', '--allowed-registries', 'ghcr.io']);
    expect(narrowed.code, narrowed.stderr).toBe(0);
    expect(narrowed.stderr).toContain(
      "berth: warning: stack on-open's runner image quay.io/team/runner:1 is not allowed any more (registry quay.io is not on this public pool's allow-list",
    );
    expect(narrowed.stderr).toContain('`berth stack update on-open --runner-image REF`');
    const refused = await berth(['stack', 'trigger', 'on-open', '--commit', COMMIT]);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain('[IMAGE_NOT_ALLOWED]');
    expect(refused.stderr).toContain('`berth stack update ID --runner-image REF`');
    expect(refused.stderr).not.toContain('PATCH');
    const updated = await berth([
      'stack',
      'update',
      'on-open',
      '--runner-image',
      'ghcr.io/team/runner:1',
    ]);
    expect(updated.code, updated.stderr).toBe(0);
    const id = await trigger('on-open');
    expect((await berth(['runs', 'cancel', id])).code).toBe(0);
  });
});

describe('berth runs logs of a run without output', () => {
  it('says on stderr that there is no log and why (not yet, or how the run ended)', async () => {
    await createStack('quiet', 'team');
    const id = await trigger('quiet');
    const waiting = await berth(['runs', 'logs', id]);
    expect(waiting.code).toBe(0);
    expect(waiting.stdout).toBe('');
    expect(waiting.stderr).toContain(`run ${id} has no log yet (it is READY)`);
    expect(waiting.stderr).toContain(`berth runs logs ${id} -f`);

    expect((await berth(['runs', 'cancel', id])).code).toBe(0);
    for (const args of [
      ['runs', 'logs', id],
      ['runs', 'logs', id, '--json'],
    ]) {
      const ended = await berth(args);
      expect(ended.code).toBe(0);
      expect(ended.stdout).toBe('');
      expect(ended.stderr).toMatch(
        new RegExp(`run ${id} has no log: it ended CANCELED before any output`),
      );
    }
  });
});

describe("the server's address", () => {
  it("takes the web page's address, the API's and a trailing /, for login and every command", async () => {
    const home = tempDir('berth-config-');
    const login = await runBerth(['login', '--server', `${server.url}/ui/`, '--json'], {
      BERTH_TOKEN: server.admin,
      XDG_CONFIG_HOME: home,
    });
    const file = path.join(home, 'berth', 'login.json');
    expect(json(login)).toEqual({ server: server.url, file, caCert: null });
    expect((JSON.parse(readFileSync(file, 'utf8')) as { server: string }).server).toBe(server.url);
    for (const address of [
      `${server.url}/`,
      `${server.url}/api/v1`,
      `${server.url}/api/v1/`,
      `${server.url}/ui/`,
      `${server.url}/ui/runs/01JRUN`,
    ]) {
      const listed = await berth(['pool', 'list'], { BERTH_SERVER: address });
      expect(listed.code, `${address}: ${listed.stderr}`).toBe(0);
      expect(listed.stdout).toMatch(/^team {2}private/m);
    }
  });

  it('refuses an address without http:// or https://, naming it, with an example', async () => {
    const bare = server.url.replace(/^http:\/\//, '');
    const home = tempDir('berth-config-');
    const login = await runBerth(['login', '--server', bare], {
      BERTH_TOKEN: server.admin,
      XDG_CONFIG_HOME: home,
    });
    expect(login.code).toBe(2);
    expect(login.stderr).toContain(`--server "${bare}" is not an http:// or https:// URL`);
    expect(login.stderr).toContain(`e.g. --server http://${bare} `);
    expect(login.stderr).toContain('[BERTH_USAGE]');
    expect(existsSync(path.join(home, 'berth', 'login.json'))).toBe(false);
    const listed = await berth(['stack', 'list'], { BERTH_SERVER: bare });
    expect(listed.code).toBe(2);
    expect(listed.stderr).toContain(`BERTH_SERVER "${bare}" is not an http:// or https:// URL`);
    expect(listed.stderr).toContain('[BERTH_USAGE]');
  });

  it('says a web page that answers is not berth, and login saves nothing', async () => {
    const page = await startWebPage();
    try {
      const home = tempDir('berth-config-');
      const login = await runBerth(['login', '--server', page.url], {
        BERTH_TOKEN: server.admin,
        XDG_CONFIG_HOME: home,
      });
      expect(login.code).toBe(2);
      expect(login.stderr).toContain(`${page.url} answered 200 with text/html`);
      expect(login.stderr).toContain("the address may not be a berth server's");
      expect(login.stderr).toContain('[BERTH_SERVER_ANSWER_UNEXPECTED]');
      expect(login.stderr).not.toMatch(/BERTH_INTERNAL|a bug in berth|\n {4}at /);
      expect(existsSync(path.join(home, 'berth', 'login.json'))).toBe(false);

      const listed = await berth(['runs', 'list', '--json'], { BERTH_SERVER: page.url });
      expect(listed.code).toBe(2);
      const failed = JSON.parse(listed.stdout) as { error: { code: string } };
      expect(failed.error.code).toBe('BERTH_SERVER_ANSWER_UNEXPECTED');
    } finally {
      await page.close();
    }
  });

  it('says what is missing: an empty token on standard input, a worker id to drain', async () => {
    const login = await runBerth(
      ['login', '--server', server.url],
      { BERTH_TOKEN: '', XDG_CONFIG_HOME: tempDir('berth-config-') },
      { input: '' },
    );
    expect(login.code).toBe(2);
    expect(login.stderr).toContain('no token: standard input was empty and BERTH_TOKEN is not set');
    const drain = await berth(['worker', 'drain']);
    expect(drain.code).toBe(2);
    expect(drain.stderr).toContain('berth worker drain needs the id of a worker');
    expect(drain.stderr).toContain('`berth worker list` shows the workers');
  });

  it('with BERTH_SERVER but no token anywhere, says the token is missing and how to give it', async () => {
    const listed = await runBerth(['stack', 'list'], {
      BERTH_SERVER: server.url,
      BERTH_TOKEN: '',
      XDG_CONFIG_HOME: tempDir('berth-config-'),
    });
    expect(listed.code).toBe(2);
    expect(listed.stderr).toContain(`no token for the berth server at ${server.url}`);
    expect(listed.stderr).toContain('BERTH_TOKEN');
    expect(listed.stderr).toContain(`berth login --server ${server.url}`);
    expect(listed.stderr).not.toContain('no berth server to talk to');
  });
});
