/**
 * A new user's first try, with real processes: `berth up` (server and one worker), `berth login`,
 * a stack from a local directory with a secret, a triggered run followed to its end, the runs
 * and workers commands, and the errors of a wrong token and an unreachable server.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import type { EngineClient } from '../src/executor/docker/engine-client.js';
import { expectNothingLeftBehind } from './harness/cleanup.js';
import { BERTH_BIN, runBerth, spawnBerth, type BerthResult } from './harness/cli.js';
import { testEngine } from './harness/engine.js';
import { ensureBuiltImage } from './harness/images.js';
import { recordLauncherPid, tempDir } from './harness/ownership.js';

let engine: EngineClient;
let up: ChildProcess;
let upSaid = '';
let url = '';
let admin = '';
let home = '';
let image = '';
let dataDir = '';

function berth(args: string[], env: Record<string, string> = {}): Promise<BerthResult> {
  return runBerth(args, { XDG_CONFIG_HOME: home, ...env });
}

beforeAll(async () => {
  engine = testEngine();
  // An image built here (no registry origin): the local pool runs it without a registry check.
  image = await ensureBuiltImage(
    engine,
    'remote-cli',
    `FROM ${inject('busyboxImage')}\nENV BUILT_HERE=1\n`,
  );
  home = tempDir('berth-config-');
  dataDir = tempDir('berth-up-');
  // berth up lives for the whole file (the per-test check ends the harness's own children); its
  // worker's containers carry its launcher id, which the leak checks know.
  up = spawn(
    process.execPath,
    [BERTH_BIN, 'up', '--listen', '127.0.0.1:0', '--data-dir', dataDir],
    {
      env: { ...process.env, NO_COLOR: '1', BERTH_STATE_DIR: path.join(dataDir, 'state') },
      stdio: ['ignore', 'ignore', 'pipe'],
    },
  );
  if (up.pid !== undefined) recordLauncherPid(up.pid);
  await new Promise<void>((resolve, reject) => {
    up.stderr?.on('data', (chunk: Buffer) => {
      upSaid += chunk.toString();
      if (/registered in pool local/.test(upSaid)) resolve();
    });
    up.on('exit', (code) => reject(new Error(`berth up exited (${code}): ${upSaid}`)));
  });
  url = /up: server (http:\/\/\S+),/.exec(upSaid)?.[1] as string;
  admin = /admin token \(shown once, keep it\): (\S+)/.exec(upSaid)?.[1] as string;
}, 120_000);

afterEach(async () => {
  await expectNothingLeftBehind(engine);
});

afterAll(async () => {
  if (up && up.exitCode === null) {
    const exited = new Promise((resolve) => up.on('exit', resolve));
    up.kill('SIGTERM');
    await exited;
  }
  engine?.close();
});

describe('berth up, login, stack, runs and worker commands', () => {
  it('takes a new user from berth up to a finished run, with the secret masked', async () => {
    expect(admin).toMatch(/^berth_admin_/);
    const login = await berth(['login', '--server', url], { BERTH_TOKEN: admin });
    expect(login.code, login.stderr).toBe(0);
    const saved = path.join(home, 'berth', 'login.json');
    expect(statSync(saved).mode & 0o777).toBe(0o600);

    const pools = await berth(['pool', 'list']);
    expect(pools.stdout).toMatch(/^local "this machine" {2}private/m);

    const repo = tempDir('berth-repo-');
    mkdirSync(path.join(repo, '.berth'));
    writeFileSync(
      path.join(repo, '.berth', 'task.sh'),
      'echo "hello from $TF_VAR_berth_stack_id with $TOKEN"\n',
    );
    const created = await berth([
      'stack',
      'create',
      'first',
      '--dir',
      repo,
      '--pool',
      'local',
      '--runner-image',
      image,
    ]);
    expect(created.code, created.stderr).toBe(0);
    expect(created.stdout).toContain('first  pool local');
    const secret = await berth(['stack', 'env', 'set', 'first', 'TOKEN', '--secret'], {
      TOKEN: 'first-try-secret-77',
    });
    expect(secret.code, secret.stderr).toBe(0);
    expect((await berth(['stack', 'show', 'first'])).stdout).toContain('TOKEN (secret, set)');

    const followed = await berth(['stack', 'trigger', 'first', '--type', 'task', '--follow']);
    expect(followed.code, followed.stderr).toBe(0);
    // The job's output, and berth's warning that the image built here had no registry check.
    const jobLines = (text: string): string[] =>
      text.split('\n').filter((l) => l !== '' && !l.startsWith('[berth: warning: '));
    expect(jobLines(followed.stdout)).toEqual(['hello from first with *****']);
    expect(followed.stdout).toMatch(/^\[berth: warning: .*registry/m);
    expect(followed.stderr).toMatch(/FINISHED/);

    const runs = await berth(['runs', 'list', '--json']);
    const list = JSON.parse(runs.stdout) as { id: string; state: string }[];
    expect(list.map((r) => r.state)).toEqual(['FINISHED']);
    const id = (list[0] as { id: string }).id;
    expect(jobLines((await berth(['runs', 'logs', id])).stdout)).toEqual([
      'hello from first with *****',
    ]);
    const shown = await berth(['runs', 'show', id]);
    expect(shown.stdout).toMatch(/PERFORMING/);
    expect(shown.stdout).toContain(`image  ${image}`);
    for (const out of [followed, runs, shown])
      expect(out.stdout + out.stderr).not.toContain('first-try-secret-77');
  });

  it('refuses a second berth up, on the same address, data directory or state directory, and the first goes on', async () => {
    const address = new URL(url).host;
    const sameAddress = await berth([
      'up',
      '--listen',
      address,
      '--data-dir',
      tempDir('berth-up-'),
    ]);
    expect(sameAddress.code).toBe(2);
    expect(sameAddress.stderr).toContain(
      `cannot listen on ${address}: another process listens there (EADDRINUSE) [BERTH_USAGE]`,
    );
    const sameData = await berth(['up', '--listen', '127.0.0.1:0', '--data-dir', dataDir], {
      BERTH_STATE_DIR: path.join(dataDir, 'state'),
    });
    expect(sameData.code).toBe(2);
    expect(sameData.stderr).toContain(
      `another berth up (process ${up.pid}) uses the data directory ${dataDir} [BERTH_USAGE]`,
    );
    expect(sameData.stderr).toContain('another --data-dir');
    expect(sameData.stderr).not.toContain('listening on');
    // Another data directory but the same state directory for its worker: said before a server
    // starts and prints a token it would not use.
    const sameState = await berth(
      ['up', '--listen', '127.0.0.1:0', '--data-dir', tempDir('berth-up-')],
      {
        BERTH_STATE_DIR: path.join(dataDir, 'state'),
      },
    );
    expect(sameState.code).toBe(2);
    expect(sameState.stderr).toContain(
      `another berth worker (process ${up.pid}) uses the state directory ${path.join(dataDir, 'state')} [BERTH_USAGE]`,
    );
    expect(sameState.stderr).toContain('Unset BERTH_STATE_DIR for this berth up');
    expect(sameState.stderr).not.toContain('admin token');
    // The first one's worker still has its pool's token: it takes and finishes a run.
    const followed = await berth(['stack', 'trigger', 'first', '--type', 'task', '--follow']);
    expect(followed.code, followed.stderr).toBe(0);
    expect(followed.stderr).toMatch(/FINISHED/);
    expect(upSaid).not.toContain('no longer accepts');
  });

  it('gives a script JSON: trigger --follow --json and runs logs --json, one object a line', async () => {
    const followed = await berth([
      'stack',
      'trigger',
      'first',
      '--type',
      'task',
      '--follow',
      '--json',
    ]);
    expect(followed.code, followed.stderr).toBe(0);
    const events = followed.stdout
      .trim()
      .split('\n')
      .map(
        (line) =>
          JSON.parse(line) as {
            type: string;
            runId: string;
            state?: string;
            seq?: number;
            text?: string;
          },
      );
    const runId = (events[0] as { runId: string }).runId;
    expect(events.every((e) => e.runId === runId)).toBe(true);
    expect(events.at(-1)).toMatchObject({ type: 'run.ended', state: 'FINISHED' });
    expect(events.filter((e) => e.type === 'run.state').map((e) => e.state)).toContain(
      'PERFORMING',
    );
    const logs = events.filter((e) => e.type === 'log');
    expect(logs.map((e) => e.seq)).toEqual(logs.map((_e, i) => i + 1));
    expect(logs.map((e) => e.text).join('')).toContain('hello from first with *****');

    const stored = await berth(['runs', 'logs', runId, '--json']);
    expect(stored.code, stored.stderr).toBe(0);
    const chunks = stored.stdout
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as unknown);
    expect(chunks).toEqual(logs.map((e) => ({ ...e, at: expect.any(String) as unknown })));
    for (const out of [followed, stored])
      expect(out.stdout + out.stderr).not.toContain('first-try-secret-77');
  });

  it('berth runs logs of a run that failed before any output shows why, as berth run would', async () => {
    const gone = path.join(tempDir('berth-gone-'), 'not-here');
    const created = await berth(['stack', 'create', 'nowhere', '--dir', gone, '--pool', 'local']);
    expect(created.code, created.stderr).toBe(0);
    // Said at once (the workers may be other machines, so not refused), not only at the run.
    expect(created.stderr).toContain(
      `berth: warning: ${gone} does not exist on this machine: runs of stack nowhere read it on the machines of pool local's workers`,
    );
    const followed = await berth(['stack', 'trigger', 'nowhere', '--type', 'task', '--follow']);
    expect(followed.code).toBe(1);
    const run = (
      JSON.parse((await berth(['runs', 'list', '--stack', 'nowhere', '--json'])).stdout) as {
        id: string;
        state: string;
        stateReason: string;
      }[]
    )[0] as { id: string; state: string; stateReason: string };
    expect(run.state).toBe('FAILED');
    const logs = await berth(['runs', 'logs', run.id]);
    expect(logs.code).toBe(0);
    // The worker's own lines: the error (the run's reason) and what to do about it.
    expect(logs.stdout).toBe(
      `[berth: error: ${run.stateReason}]\n[berth: fix: A stack's --dir names a directory on the machines of its pool's workers (with berth up, this machine): create it there, or point the stack at the right one (\`berth stack update STACK --dir DIR\`) or at a repository (\`--repo URL\`).]\n`,
    );
    expect(followed.stdout).toBe(logs.stdout);
    expect(run.stateReason).toContain(gone);
    expect((await berth(['stack', 'delete', 'nowhere'])).code).toBe(0);
  });

  it('lists, drains and undrains workers', async () => {
    const listed = JSON.parse((await berth(['worker', 'list', '--json'])).stdout) as {
      id: string;
      status: string;
      pool: string;
    }[];
    expect(listed).toHaveLength(1);
    expect(listed[0]).toMatchObject({ pool: 'local', status: 'IDLE' });
    const id = (listed[0] as { id: string }).id;
    expect((await berth(['worker', 'drain', id])).stdout).toContain(`${id}  DRAINED`);
    expect((await berth(['worker', 'undrain', id])).stdout).toContain(`${id}  IDLE`);
  });

  it('says what was refused and the fix on the command line: a bad value, a missing run, a run not waiting', async () => {
    const bad = await berth(['stack', 'create', 'Bad Id!', '--dir', '/tmp', '--pool', 'local']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain(
      'id "Bad Id!" is not valid: it must be an id of lowercase letters, digits and -, starting with a letter or digit, at most 63 characters [BAD_REQUEST]',
    );
    expect(bad.stderr).toContain('`berth stack create --help` lists the options');
    expect(bad.stderr).not.toContain('COMMAND');
    // A value refused by the server is named by the option that gave it, not the API's field.
    for (const [args, said] of [
      [['--runner-image', 'BAD IMAGE'], 'berth: error: --runner-image: invalid image reference'],
      [['--project-root', '../etc'], 'berth: error: --project-root "../etc" is not valid'],
      [
        ['--label', 'ok', '--label', 'x'.repeat(101)],
        'berth: error: --label (its value 2) is too long: at most 100 characters',
      ],
    ] as const) {
      const option = await berth([
        'stack',
        'create',
        'named',
        '--dir',
        '/tmp',
        '--pool',
        'local',
        ...args,
      ]);
      expect(option.code).toBe(2);
      expect(option.stderr).toContain(said);
    }
    const pull = await berth([
      'pool',
      'create',
      'named',
      '--kind',
      'public',
      '--pull',
      'sometimes',
    ]);
    expect(pull.stderr).toContain(
      'berth: error: --pull "sometimes" is not one of: always, if-not-present, never [BAD_REQUEST]',
    );
    const run = await berth(['runs', 'show', '01XYZ']);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain(
      'id "01XYZ" is not valid: it must be a run id: 26 characters, digits and capital letters, as `berth runs list` shows [BAD_REQUEST]',
    );
    expect(run.stderr).toContain('`berth runs show --help`');
    const missing = await berth(['runs', 'confirm', `01JDEMA${'0'.repeat(19)}`]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain('BERTH_SERVER_REFUSED');
    expect(missing.stderr).toContain('`berth runs list`');
    const finished = (
      JSON.parse((await berth(['runs', 'list', '--json'])).stdout) as { id: string }[]
    )[0]?.id as string;
    const notWaiting = await berth(['runs', 'confirm', finished]);
    expect(notWaiting.code).toBe(2);
    expect(notWaiting.stderr).toContain('[RUN_TRANSITION_INVALID]');
    expect(notWaiting.stderr).toContain('only an UNCONFIRMED run can be confirmed');
  });

  it('says BERTH_SERVER_REFUSED for a wrong token and BERTH_SERVER_UNREACHABLE for no server', async () => {
    const refused = await berth(['stack', 'list'], {
      BERTH_SERVER: url,
      BERTH_TOKEN: 'berth_api_wrong',
    });
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain('BERTH_SERVER_REFUSED');
    expect(refused.stderr).toContain('the token is not valid [UNAUTHENTICATED]');
    // Logging in again would not help: the variable wins over the saved login.
    expect(refused.stderr).toContain(
      'fix: The token comes from BERTH_TOKEN, which wins over the login `berth login` saved',
    );
    expect(refused.stderr).not.toContain('log in again');
    const unreachable = await berth(['runs', 'list'], {
      BERTH_SERVER: 'http://127.0.0.1:9',
      BERTH_TOKEN: admin,
    });
    expect(unreachable.code).toBe(4);
    expect(unreachable.stderr).toContain('BERTH_SERVER_UNREACHABLE');
    expect(unreachable.stderr).toContain('http://127.0.0.1:9');
  });

  it("says who holds a rotated pool token, and a berth up whose local pool's token was rotated says to start it again", async () => {
    const other = spawnBerth(
      ['up', '--listen', '127.0.0.1:0', '--data-dir', tempDir('berth-up-')],
      // A short lease: its worker's heartbeat (a third of it) meets the rotation soon.
      { BERTH_STATE_DIR: tempDir('berth-state-'), BERTH_WORKER_LEASE_TIMEOUT: '6s' },
    );
    await other.waitFor('registered in pool local');
    const otherUrl = /up: server (http:\/\/\S+),/.exec(other.stderr())?.[1] as string;
    const otherAdmin = /admin token \(shown once, keep it\): (\S+)/.exec(other.stderr())?.[1];
    const workerId = /worker (\S+) registered in pool local/.exec(other.stderr())?.[1] as string;
    const rotated = await berth(['pool', 'rotate-token', 'local'], {
      BERTH_SERVER: otherUrl,
      BERTH_TOKEN: otherAdmin as string,
    });
    expect(rotated.code, rotated.stderr).toBe(0);
    expect(rotated.stderr).toContain(
      `berth: 1 worker(s) of pool local hold the old token (${workerId}): each stops its runs and exits at its next call to the server; start them again with BERTH_POOL_TOKEN set to the new token (berth up's own worker: berth up ends with it, its server too; start berth up again, it sets the token itself)`,
    );
    const { code } = await other.exited;
    expect(code).not.toBe(0);
    expect(other.stderr()).toContain(
      "fix: Start berth up again: it gives its worker the local pool's current token itself",
    );
    expect(other.stderr()).not.toContain('Start berth worker again');
  });

  // Last: it ends the berth up of this file.
  it('stops on SIGTERM once its worker left, without waiting out its connections', async () => {
    const exited = new Promise<number | null>((resolve) => up.on('close', resolve));
    up.kill('SIGTERM');
    // Its worker's last connection to its server stayed open for the keep-alive time (72 s).
    let waited: NodeJS.Timeout | undefined;
    const code = await Promise.race([
      exited,
      new Promise<never>((_, reject) => {
        waited = setTimeout(
          () => reject(new Error(`berth up still runs 30 s after SIGTERM: ${upSaid}`)),
          30_000,
        );
      }),
    ]).finally(() => clearTimeout(waited));
    expect(code).toBe(0);
    expect(upSaid).toContain('berth: worker stopped');
  });
});
