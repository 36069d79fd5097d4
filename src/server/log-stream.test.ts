/**
 * Live logs over server-sent events, on a listening server (a real socket: the stream is long
 * lived) with a real SQLite store, driven through the worker protocol as a worker would: chunks
 * pushed the moment they are stored, a cut stream resumed with Last-Event-ID without a duplicate
 * or a gap, the end event, the server's log limit and re-masking, and a server that closes with
 * streams and long polls open.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { apiRequest } from '../../test/harness/api-request.js';
import { ApiClient, type LogChunk, type Run } from '../api/client.js';
import { openStore } from '../store/open-store.js';
import type { Store } from '../store/store.js';
import { buildServer, type BerthServer, type ServerDeps } from './app.js';
import { hashToken } from './auth.js';
import { BlobStore } from './blob-store.js';
import { LocalRunFeed } from './run-feed.js';
import { SecretBox } from './secrets.js';

const ADMIN = 'berth_admin_stream-test-token-0123456789';
let dir: string;
let store: Store;
let app: BerthServer;
let url = '';
let poolToken = '';
let workerId = '';

async function call(
  method: string,
  route: string,
  body?: unknown,
  token = ADMIN,
): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await apiRequest(url, token, method, route, body);
  const text = await res.text();
  return { status: res.status, body: text ? (JSON.parse(text) as Record<string, unknown>) : {} };
}

async function until<T>(what: string, probe: () => T | Promise<T>): Promise<T> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    const value = await probe();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** A run of stack `demo`, leased by the test's worker and started (PERFORMING). */
async function runningRun(): Promise<string> {
  const run = await call('POST', '/stacks/demo/runs', { type: 'task' });
  expect(run.status).toBe(201);
  const leased = await call('POST', '/worker/lease', { workerId, waitMs: 5000 }, poolToken);
  expect(leased.status).toBe(200);
  const id = run.body.id as string;
  expect((await report(id, 'PERFORMING')).status).toBe(200);
  return id;
}

function report(id: string, state: string) {
  return call('POST', `/worker/runs/${id}/state`, { workerId, state }, poolToken);
}

function ship(id: string, firstSeq: number, texts: string[]) {
  return call('POST', `/worker/runs/${id}/logs`, { workerId, firstSeq, texts }, poolToken);
}

beforeAll(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'berth-stream-'));
  store = await openStore({ dataDir: dir });
  await store.migrate();
  app = await buildServer({
    store,
    secrets: SecretBox.fromKey(Buffer.alloc(32, 3)),
    blobs: await BlobStore.open(path.join(dir, 'blobs'), 1024 * 1024),
    adminTokenHash: hashToken(ADMIN),
    version: 'test',
    logLimitBytes: 4096,
  });
  await app.listen({ host: '127.0.0.1', port: 0 });
  const address = app.server.address() as { port: number };
  url = `http://127.0.0.1:${address.port}`;
  poolToken = (await call('POST', '/pools', { id: 'streams', kind: 'private' })).body
    .token as string;
  expect(
    (await call('POST', '/stacks', { id: 'demo', localDir: dir, pool: 'streams' })).status,
  ).toBe(201);
  workerId = (
    await call(
      'POST',
      '/worker/register',
      { host: 'h', berthVersion: '0', engineVersion: '0', concurrency: 8 },
      poolToken,
    )
  ).body.workerId as string;
});

afterAll(async () => {
  await app?.close();
  await store?.close();
  rmSync(dir, { recursive: true, force: true });
});

function follower(id: string, client = new ApiClient(url, ADMIN)) {
  const chunks: LogChunk[] = [];
  const runs: Run[] = [];
  const done = client.followLogs(
    id,
    { log: (c) => chunks.push(c), run: (r) => runs.push(r) },
    { retryDelayMs: 10 },
  );
  return { chunks, runs, done, text: () => chunks.map((c) => c.text).join('') };
}

describe('GET /runs/:id/logs/stream', () => {
  it('pushes chunks while the run goes on, its states, and ends when the run has ended', async () => {
    const id = await runningRun();
    expect((await ship(id, 1, ['one\n'])).status).toBe(200);
    const f = follower(id);
    await until('the stored chunk', () => f.text() === 'one\n');
    expect(f.runs[0]).toMatchObject({ id, state: 'PERFORMING' });
    // Still running: a chunk stored now reaches the follower without asking again.
    await ship(id, 2, ['two\n', 'three\n']);
    await until('the new chunks', () => f.text() === 'one\ntwo\nthree\n');
    await report(id, 'FINISHED');
    await f.done;
    expect(f.chunks.map((c) => c.seq)).toEqual([1, 2, 3]);
    expect(f.runs.at(-1)).toMatchObject({ state: 'FINISHED' });
    expect(f.runs.at(-1)?.states?.map((s) => s.state)).toContain('PERFORMING');
  });

  it('sends a stored log whole and ends for a run that has ended', async () => {
    const id = await runningRun();
    await ship(id, 1, ['a\n', 'b\n']);
    await report(id, 'FAILED');
    const res = await fetch(`${url}/api/v1/runs/${id}/logs/stream?after=1`, {
      headers: { authorization: `Bearer ${ADMIN}` },
    });
    expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/);
    const body = await res.text();
    expect(body).not.toContain('"text":"a\\n"');
    expect(body).toContain('id: 2\nevent: log\ndata: {"seq":2,"text":"b\\n","at":');
    expect(body).toMatch(/^event: run\ndata: \{"id":/);
    expect(body.endsWith('event: end\ndata: {}\n\n')).toBe(true);
    // Last-Event-ID wins over after.
    const resumed = await fetch(`${url}/api/v1/runs/${id}/logs/stream?after=0`, {
      headers: { authorization: `Bearer ${ADMIN}`, 'last-event-id': '2' },
    });
    expect(await resumed.text()).not.toContain('event: log');
  });

  it('resumes a cut stream with Last-Event-ID: no chunk twice, none lost', async () => {
    const id = await runningRun();
    await ship(id, 1, ['1\n', '2\n', '3\n']);
    // The first connection is cut after its first chunk arrived.
    let connections = 0;
    const lastEventIds: (string | null)[] = [];
    const cutting: typeof fetch = async (input, init) => {
      connections += 1;
      lastEventIds.push(new Headers(init?.headers).get('last-event-id'));
      const res = await fetch(input, init);
      if (connections > 1 || !res.body) return res;
      const reader = res.body.getReader() as ReadableStreamDefaultReader<Uint8Array>;
      const decoder = new TextDecoder();
      let seen = '';
      let passed = 0;
      const cut = new ReadableStream<Uint8Array>({
        async pull(controller) {
          const { value, done } = await reader.read();
          if (done) return controller.close();
          seen += decoder.decode(value, { stream: true });
          const log = seen.indexOf('event: log');
          const end = log === -1 ? -1 : seen.indexOf('\n\n', log);
          const upTo = end === -1 ? seen.length : end + 2;
          // Pass on up to the end of the first log event, then drop the connection.
          controller.enqueue(new TextEncoder().encode(seen.slice(passed, upTo)));
          passed = upTo;
          if (end === -1) return;
          await reader.cancel();
          controller.close();
        },
      });
      return new Response(cut, { status: res.status, headers: res.headers });
    };
    const f = follower(id, new ApiClient(url, ADMIN, cutting));
    await until('a reconnection', () => connections >= 2);
    await ship(id, 4, ['4\n']);
    await report(id, 'FINISHED');
    await f.done;
    expect(f.chunks.map((c) => c.seq)).toEqual([1, 2, 3, 4]);
    expect(lastEventIds).toEqual(['0', '1']);
  });

  it('answers with the API errors before the stream starts', async () => {
    const id = await runningRun();
    const stream = (headers: Record<string, string>, run = id) =>
      fetch(`${url}/api/v1/runs/${run}/logs/stream`, { headers }).then(async (r) => ({
        status: r.status,
        code: ((await r.json()) as { code: string }).code,
      }));
    expect(await stream({})).toEqual({ status: 401, code: 'UNAUTHENTICATED' });
    expect(await stream({ authorization: `Bearer ${poolToken}` })).toEqual({
      status: 403,
      code: 'FORBIDDEN',
    });
    expect(
      await stream({ authorization: `Bearer ${ADMIN}` }, '01ARZ3NDEKTSV4RRFFQ69G5FAV'),
    ).toEqual({ status: 404, code: 'NOT_FOUND' });
    expect(await stream({ authorization: `Bearer ${ADMIN}`, 'last-event-id': 'x1' })).toEqual({
      status: 400,
      code: 'BAD_REQUEST',
    });
    await report(id, 'FINISHED');
  });
});

describe('what the server stores', () => {
  it('refuses a log past its limit, with the cut marked in the stored log', async () => {
    const id = await runningRun();
    expect((await ship(id, 1, ['x'.repeat(3000)])).status).toBe(200);
    const over = await ship(id, 2, ['y'.repeat(2000)]);
    expect(over.status).toBe(413);
    expect(over.body.code).toBe('LOG_TOO_LARGE');
    expect((await ship(id, 3, ['z'])).status).toBe(413);
    const log = await call('GET', `/runs/${id}/logs`);
    const texts = (log.body.chunks as LogChunk[]).map((c) => c.text);
    expect(texts).toHaveLength(2);
    expect(texts[1]).toContain("the server stored no more of this run's output here");
    expect(texts.join('')).not.toContain('yyy');
    await report(id, 'FINISHED');
  });

  it('masks a value a worker learnt mid-run in the chunks already stored', async () => {
    const id = await runningRun();
    await ship(id, 1, ['the key is s3cr', 'et-v4lue\n']);
    const f = follower(id);
    await until('the chunks', () => f.chunks.length === 2);
    const masked = await call(
      'POST',
      `/worker/runs/${id}/masks`,
      { workerId, values: ['s3cret-v4lue'] },
      poolToken,
    );
    expect(masked).toEqual({ status: 200, body: { chunks: 2 } });
    const stored = (await call('GET', `/runs/${id}/logs`)).body.chunks as LogChunk[];
    expect(stored.map((c) => c.text).join('')).toBe('the key is *****\n');
    // A person's token cannot ask for it.
    expect(
      (await call('POST', `/worker/runs/${id}/masks`, { workerId, values: ['x'] })).status,
    ).toBe(403);
    await report(id, 'FINISHED');
    await f.done;
  });
});

/** A server of its own (with `deps`), listening, with a run leased by a worker. */
async function ownServer(deps: Partial<ServerDeps> = {}) {
  const ownDir = mkdtempSync(path.join(tmpdir(), 'berth-'));
  const ownStore = await openStore({ dataDir: ownDir });
  await ownStore.migrate();
  const feed = new LocalRunFeed();
  const server = await buildServer({
    runFeed: feed,
    store: ownStore,
    secrets: SecretBox.fromKey(Buffer.alloc(32, 4)),
    blobs: await BlobStore.open(path.join(ownDir, 'blobs'), 1024 * 1024),
    adminTokenHash: hashToken(ADMIN),
    version: 'test',
    ...deps,
  });
  await server.listen({ host: '127.0.0.1', port: 0 });
  const port = (server.server.address() as { port: number }).port;
  const base = `http://127.0.0.1:${port}`;
  const other = async (method: string, route: string, body: unknown, token = ADMIN) =>
    (
      await fetch(`${base}/api/v1${route}`, {
        method,
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: JSON.stringify(body),
      })
    ).json() as Promise<Record<string, unknown>>;
  const token = (await other('POST', '/pools', { id: 'p', kind: 'private' })).token as string;
  await other('POST', '/stacks', { id: 's', localDir: dir, pool: 'p' });
  const run = (await other('POST', '/stacks/s/runs', { type: 'task' })).id as string;
  const worker = (
    await other(
      'POST',
      '/worker/register',
      { host: 'h', berthVersion: '0', engineVersion: '0', concurrency: 2 },
      token,
    )
  ).workerId as string;
  await other('POST', '/worker/lease', { workerId: worker, waitMs: 0 }, token);
  const close = async (): Promise<void> => {
    await server.close();
    await ownStore.close();
    rmSync(ownDir, { recursive: true, force: true });
  };
  return { server, store: ownStore, feed, base, port, other, token, run, worker, close };
}

describe('a client that reads nothing', () => {
  it('is dropped once its socket stayed full instead of being buffered for', async () => {
    const own = await ownServer({ logLimitBytes: 128 * 1024 * 1024, streamDrainTimeoutMs: 300 });
    // More output than the sockets between the two can buffer: 48 MiB.
    const text = 'x'.repeat(250_000);
    for (let i = 0; i < 48; i += 1) {
      const answer = await own.other(
        'POST',
        `/worker/runs/${own.run}/logs`,
        { workerId: own.worker, firstSeq: i * 4 + 1, texts: [text, text, text, text] },
        own.token,
      );
      expect(answer.next).toBe(i * 4 + 5);
    }
    // A raw connection that asks for the stream and then never reads.
    const socket = connect(own.port, '127.0.0.1');
    socket.pause();
    socket.on('error', () => undefined);
    socket.write(
      `GET /api/v1/runs/${own.run}/logs/stream HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${ADMIN}\r\n\r\n`,
    );
    await until('the follower', () => own.feed.followers(own.run) === 1);
    // The server gave up on it: the stream ended while the client had read nothing.
    await until('the slow reader to be dropped', () => own.feed.followers(own.run) === 0);
    expect(socket.bytesRead).toBe(0);
    socket.destroy();
    await own.close();
  }, 60_000);
});

describe('closing the server', () => {
  it('ends open log streams and long polls, so close() returns', async () => {
    const { server, feed, base, token, run, worker, close } = await ownServer();
    // A follower of the running run, and a worker waiting for more work for a minute.
    const stream = await fetch(`${base}/api/v1/runs/${run}/logs/stream`, {
      headers: { authorization: `Bearer ${ADMIN}` },
    });
    const streamed = stream.text();
    const polling = fetch(`${base}/api/v1/worker/lease`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ workerId: worker, waitMs: 60_000 }),
    });
    await until(
      'the follower and the waiting worker',
      () => feed.followers(run) === 1 && server.waitingWorkers('p') === 1,
    );
    // Without letting go of them, close() waits for the keep-alive timeout (72 s): past this
    // test's 30 s.
    await close();
    expect((await polling).status).toBe(204);
    const text = await streamed;
    expect(text).toContain('event: run');
    expect(text).not.toContain('event: end');
  }, 30_000);
});
