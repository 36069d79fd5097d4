/**
 * Live logs and TLS with real processes: `berth server` over HTTPS (a certificate made here by
 * openssl, signed by a CA made here), `berth worker` and the CLI trusting that CA, jobs on the
 * real engine. A run is followed while its job still runs; values a job masks mid-run never reach
 * the stored log (nor, when printed a moment before the directive, a follower); the log bound is
 * marked; a client without the CA is refused with a clear error; bad TLS files stop the server
 * before it starts; and a server with followers and waiting workers exits on SIGTERM.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import { ApiClient, type LogChunk, type Run } from '../src/api/client.js';
import type { EngineClient } from '../src/executor/docker/engine-client.js';
import { fetchTrusting, trustedCas } from '../src/net/tls-files.js';
import { makeCa, issueCertificate, type TestCa, type TestCertificate } from './harness/certs.js';
import { expectNothingLeftBehind } from './harness/cleanup.js';
import { runBerth, spawnBerth, type BerthProcess } from './harness/cli.js';
import { testEngine } from './harness/engine.js';
import {
  planStackDir,
  spawnServer,
  stopWorkers,
  type ServerProcess,
} from './harness/berth-server.js';
import { tempDir } from './harness/ownership.js';

let engine: EngineClient;
let server: ServerProcess | undefined;
let dataDir = '';
let url = '';
let admin = '';
let ca: TestCa;
let cert: TestCertificate;
let client: ApiClient;
let poolToken = '';
const workers: BerthProcess[] = [];
const LOG_LIMIT = 16 * 1024;

function repo(task: string): string {
  const dir = tempDir('berth-stack-');
  mkdirSync(path.join(dir, '.berth'));
  writeFileSync(path.join(dir, '.berth', 'task.sh'), task);
  return dir;
}

let stacks = 0;
/** A stack of the test pool running `task`, triggered once; the run's id. */
async function trigger(task: string): Promise<string> {
  const id = `live-${(stacks += 1)}`;
  await client.createStack({
    id,
    pool: 'live',
    localDir: repo(task),
    runnerImage: inject('busyboxImage'),
    labels: [],
    autoDeploy: false,
  });
  return (await client.trigger(id, { type: 'task' })).id;
}

async function until<T>(
  what: string,
  probe: () => T | Promise<T>,
  ms = 60_000,
): Promise<NonNullable<T>> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await probe();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

async function storedLog(id: string): Promise<string> {
  let text = '';
  for (let after = 0; ;) {
    const page = await client.logs(id, after);
    if (page.chunks.length === 0) return text;
    text += page.chunks.map((c) => c.text).join('');
    after = page.next;
  }
}

function follow(id: string) {
  const chunks: LogChunk[] = [];
  const runs: Run[] = [];
  const done = client.followLogs(id, { log: (c) => chunks.push(c), run: (r) => runs.push(r) });
  return { chunks, runs, done, text: () => chunks.map((c) => c.text).join('') };
}

beforeAll(async () => {
  engine = testEngine();
  const certs = tempDir('berth-certs-');
  ca = makeCa(certs, 'berth live CA');
  cert = issueCertificate(ca, 'berth server', { server: 'IP:127.0.0.1' });
  dataDir = tempDir('berth-server-');
  server = await spawnServer(
    ['--data-dir', dataDir, '--tls-cert', cert.cert, '--tls-key', cert.key],
    { BERTH_LOG_LIMIT: String(LOG_LIMIT) },
  );
  url = server.url;
  admin = server.admin ?? '';
  expect(url).toMatch(/^https:/);
  client = new ApiClient(url, admin, fetchTrusting(trustedCas(ca.cert, {})));
  poolToken = (await client.createPool({ id: 'live', kind: 'private', pullPolicy: 'never' })).token;
});

/** A worker of the test pool trusting the test CA (the per-test leak check ends children). */
async function startWorker(): Promise<BerthProcess> {
  const worker = spawnBerth(['worker', '--server', url, '--ca-cert', ca.cert], {
    BERTH_POOL_TOKEN: poolToken,
    BERTH_STATE_DIR: tempDir('berth-worker-'),
  });
  workers.push(worker);
  await worker.waitFor('registered in pool');
  return worker;
}

afterEach(async () => {
  await stopWorkers(workers);
  await expectNothingLeftBehind(engine);
});

afterAll(async () => {
  await server?.stop();
  engine?.close();
});

describe('live logs over server-sent events, through TLS', () => {
  it('shows the output while the job still runs, and the CLI follows to the end (Ctrl-C stops only the following)', async () => {
    await startWorker();
    const id = await trigger('echo first line; sleep 300\n');
    const cli = spawnBerth(['runs', 'logs', id, '-f'], {
      BERTH_SERVER: url,
      BERTH_TOKEN: admin,
      BERTH_CA_CERT: ca.cert,
    });
    await cli.waitFor('first line');
    // The job is still running (it sleeps for minutes): the line came live, not at the end.
    expect((await client.getRun(id)).state).toBe('PERFORMING');
    expect(cli.child.exitCode).toBeNull();
    // Ctrl-C stops a second follower, not the run, and it says how to reach the run again.
    const second = spawnBerth(['runs', 'logs', id, '-f'], {
      BERTH_SERVER: url,
      BERTH_TOKEN: admin,
      BERTH_CA_CERT: ca.cert,
    });
    await second.waitFor('first line');
    second.child.kill('SIGINT');
    expect(await second.exited).toEqual({ code: 130, signal: null });
    expect(second.stderr()).toContain(
      `berth: stopped following; run ${id} goes on (PERFORMING): \`berth runs logs ${id} --follow\` follows it again, \`berth runs cancel ${id}\` stops it`,
    );
    expect((await client.getRun(id)).state).toBe('PERFORMING');
    await client.decide(id, 'cancel');
    const { code } = await cli.exited;
    // Followed to an end that is not FINISHED: exit 1, as `stack trigger --follow` (a script can
    // tell).
    expect(code).toBe(1);
    expect(cli.stdout().split('first line').length - 1).toBe(1);
    expect(cli.stderr()).toMatch(/run \S+ (STOPPED|CANCELED)/);
  });

  it('never stores a value masked mid-run, nor streams one printed a moment before its directive', async () => {
    await startWorker();
    const id = await trigger(
      [
        'V="tok-5ecret-$(echo now)"',
        // One write: the two lines reach the worker together, however loaded the machine (lines
        // a moment apart, within the worker's hold-back, are unit-tested with a clock).
        `printf 'before: %s\\n::add-mask %s\\n' "$V" "$V"`,
        'echo "after: $V"',
        'W="tok-l4te-$(echo later)"',
        'echo "long before: $W"',
        // Longer than the worker holds output back: this line is shipped before the directive.
        'sleep 3',
        'echo "::add-mask $W"',
        'echo "done"',
      ].join('\n'),
    );
    const follower = follow(id);
    await follower.done;
    expect(follower.runs.at(-1)?.state).toBe('FINISHED');
    expect(follower.text()).toContain('before: *****');
    expect(follower.text()).not.toContain('tok-5ecret-now');
    const stored = await storedLog(id);
    expect(stored).toContain('before: *****\n');
    expect(stored).toContain('after: *****\n');
    // Shipped before the job masked it, then masked in the stored log by the server.
    expect(stored).toContain('long before: *****\n');
    expect(stored).not.toContain('tok-5ecret-now');
    expect(stored).not.toContain('tok-l4te-later');
  });

  it('bounds the stored log to head and tail, with the cut marked', async () => {
    await startWorker();
    const id = await trigger(
      'i=0; while [ $i -lt 2000 ]; do echo "line $i of a long output"; i=$((i+1)); done\n',
    );
    const follower = follow(id);
    await follower.done;
    const stored = await storedLog(id);
    // berth's warnings about the image come first.
    const output = stored.replace(/^\[berth: warning: [^\n]*\]\n/gm, '');
    expect(output.startsWith('line 0 of a long output\n')).toBe(true);
    expect(stored).toMatch(/\[berth: \d+ bytes of output cut here/);
    expect(stored.endsWith('line 1999 of a long output\n')).toBe(true);
    expect(stored).not.toContain('line 1000 of');
    expect(Buffer.byteLength(stored)).toBeLessThanOrEqual(LOG_LIMIT);
    expect(follower.text()).toBe(stored);
  });
});

describe('berth up with TLS', () => {
  it("moves a tracked run's saved workspace to the HTTPS server and back, trusting the CA given", async () => {
    await startWorker();
    await client.createStack({
      id: 'live-tracked',
      pool: 'live',
      localDir: planStackDir(),
      runnerImage: inject('busyboxImage'),
      labels: [],
      autoDeploy: false,
    });
    const { id } = await client.trigger('live-tracked', { type: 'tracked' });
    // Up at UNCONFIRMED (the worker's upload), down for the apply (its download).
    await until('the plan waiting', async () => (await client.getRun(id)).state === 'UNCONFIRMED');
    await client.decide(id, 'confirm');
    const end = await until('the apply ended', async () => {
      const run = await client.getRun(id);
      return ['FINISHED', 'FAILED'].includes(run.state) ? run : undefined;
    });
    expect(end.state, end.stateReason ?? '').toBe('FINISHED');
    expect(await storedLog(id)).toMatch(/applied planned with [0-9a-f]{48}/);
  });

  it('serves HTTPS and its own worker trusts the CA given', async () => {
    const up = spawnBerth(
      ['up', '--listen', '127.0.0.1:0', '--data-dir', tempDir('berth-up-')].concat([
        '--tls-cert',
        cert.cert,
        '--tls-key',
        cert.key,
        '--ca-cert',
        ca.cert,
      ]),
      { BERTH_STATE_DIR: tempDir('berth-worker-') },
    );
    workers.push(up);
    await up.waitFor(/listening on https:\/\/127\.0\.0\.1:\d+/);
    await up.waitFor('registered in pool local');
    expect(up.stderr()).not.toContain('BERTH_SERVER_NOT_TRUSTED');
  });
});

describe('TLS refusals', () => {
  it('refuses a CLI and a worker that do not trust the CA, with a clear error', async () => {
    const cli = await runBerth(['runs', 'list'], { BERTH_SERVER: url, BERTH_TOKEN: admin });
    expect(cli.code).toBe(4);
    expect(cli.stderr).toContain('BERTH_SERVER_NOT_TRUSTED');
    expect(cli.stderr).toContain('--ca-cert');
    const worker = spawnBerth(['worker', '--server', url], {
      BERTH_POOL_TOKEN: poolToken,
      BERTH_STATE_DIR: tempDir('berth-worker-'),
    });
    const { code } = await worker.exited;
    expect(code).toBe(4);
    expect(worker.stderr()).toContain('BERTH_SERVER_NOT_TRUSTED');
  });

  /** A certificate of the same CA for another server: its key does not belong to `cert`. */
  const otherKey = (): string =>
    issueCertificate(ca, 'another server', { server: 'IP:127.0.0.1' }).key;
  it.each([
    [
      'only a certificate',
      () => ['--tls-cert', cert.cert],
      'BERTH_USAGE',
      '--tls-cert and --tls-key go together',
    ],
    [
      'a missing certificate file',
      () => ['--tls-cert', path.join(ca.dir, 'missing.crt'), '--tls-key', cert.key],
      'BERTH_TLS_FILE_UNREADABLE',
      'no such file',
    ],
    [
      "another certificate's key",
      () => ['--tls-cert', cert.cert, '--tls-key', otherKey()],
      'BERTH_TLS_INVALID',
      'does not belong to the certificate',
    ],
    [
      'a key for a certificate',
      () => ['--tls-cert', cert.key, '--tls-key', cert.key],
      'BERTH_TLS_INVALID',
      'no PEM certificate',
    ],
  ] as [string, () => string[], string, string][])(
    'stops a server given %s before it starts',
    async (_what, args, code, words) => {
      const dataDir = tempDir('berth-server-');
      const result = await runBerth([
        'server',
        ...['--listen', '127.0.0.1:0', '--data-dir', dataDir],
        ...args(),
      ]);
      expect(result.code, result.stderr).toBe(2);
      expect(result.stderr).toContain(code);
      expect(result.stderr).toContain(words);
    },
  );

  it('refuses a CA file that is not a certificate on the client side too', async () => {
    const result = await runBerth(['runs', 'list'], {
      BERTH_SERVER: url,
      BERTH_TOKEN: admin,
      BERTH_CA_CERT: cert.key,
    });
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('BERTH_TLS_INVALID');
  });
});

describe('stopping the server', () => {
  it('exits on SIGTERM with a follower and a waiting worker, and the follower resumes on its restart without a line lost or doubled', async () => {
    const worker = await startWorker();
    const id = await trigger('i=0; while true; do echo "tick $i"; i=$((i+1)); sleep 0.3; done\n');
    const follower = follow(id);
    await until('the job output', () => follower.text().includes('tick 2\n'));
    expect(await server?.stop()).toBe(0);
    // The same server again, at the same address, on the same database.
    server = await spawnServer(
      ['--listen', `127.0.0.1:${new URL(url).port}`, '--data-dir', dataDir].concat([
        '--tls-cert',
        cert.cert,
        '--tls-key',
        cert.key,
      ]),
      { BERTH_LOG_LIMIT: String(LOG_LIMIT) },
    );
    const seen = follower.chunks.length;
    await until('chunks after the restart', () => follower.chunks.length > seen + 2);
    await client.decide(id, 'cancel');
    await follower.done;
    // The worker has shipped all it had once it is done with the run.
    await worker.waitFor(`run ${id}: done here`);
    const ticks = follower
      .text()
      .split('\n')
      .filter((line) => line.startsWith('tick '));
    expect(ticks).toEqual(ticks.map((_, i) => `tick ${i}`));
    expect(follower.chunks.map((c) => c.seq)).toEqual(follower.chunks.map((_, i) => i + 1));
    expect(follower.text()).toBe(await storedLog(id));
  }, 180_000);
});
