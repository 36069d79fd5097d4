/**
 * The HTTP API in-process (app.inject, no port) on a real SQLite store: authentication, pools,
 * stacks and write-only secrets, runs and the state machine's refusals, and bad input of every
 * kind answered with a 4xx and a stable code, never a 500, never a changed record.
 */
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openStore } from '../store/open-store.js';
import type { Store } from '../store/store.js';
import { buildServer, openApiDocument, type BerthServer } from './app.js';
import { hashToken, sessionSetCookie } from './auth.js';
import { SecretBox } from './secrets.js';
import { BlobStore } from './blob-store.js';
import type { BranchHead } from './commits.js';

const ADMIN = 'berth_admin_test-token-0123456789';
let dir: string;
let store: Store;
let app: BerthServer;
let clock = new Date('2026-11-30T12:00:00.000Z');

beforeAll(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'berth-api-'));
  store = await openStore({ dataDir: dir });
  await store.migrate();
  app = await serverOn(SecretBox.fromKey(Buffer.alloc(32, 7)));
});

/** A server on this file's store and blob directory, with `secrets` as its key. */
async function serverOn(secrets: SecretBox): Promise<BerthServer> {
  return buildServer({
    store,
    secrets,
    blobs: await BlobStore.open(path.join(dir, 'blobs'), 1024 * 1024),
    adminTokenHash: hashToken(ADMIN),
    version: 'test',
    now: () => clock,
    resolveCommit: () => Promise.resolve(branchHead),
    authFailureLimit: 5,
    say: (line) => said.push(line),
  });
}

/** What the stub of `git ls-remote` answers for a stack's branch. */
let branchHead: BranchHead = { sha: 'c'.repeat(40) };

/** What the server said for the operator. */
const said: string[] = [];

afterAll(async () => {
  await app?.close();
  await store?.close();
  rmSync(dir, { recursive: true, force: true });
});

type Answer = { status: number; body: Record<string, unknown> };

async function call(
  method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE',
  url: string,
  body?: unknown,
  token: string | null = ADMIN,
  address = '127.0.0.1',
): Promise<Answer> {
  const res = await app.inject({
    method,
    url,
    remoteAddress: address,
    headers: token ? { authorization: `Bearer ${token}` } : {},
    ...(body === undefined ? {} : { payload: body as Record<string, unknown> }),
  });
  return {
    status: res.statusCode,
    body: res.body ? (JSON.parse(res.body) as Record<string, unknown>) : {},
  };
}

let poolToken = '';

describe('authentication', () => {
  it('answers health without a token and everything else only with one', async () => {
    expect(await call('GET', '/api/v1/health', undefined, null)).toEqual({
      status: 200,
      body: { status: 'ok', version: 'test' },
    });
    const none = await call('GET', '/api/v1/stacks', undefined, null);
    expect(none.status).toBe(401);
    expect(none.body.code).toBe('UNAUTHENTICATED');
    expect(none.body.hint).toContain('Authorization: Bearer');
    expect((await call('GET', '/api/v1/stacks', undefined, 'berth_admin_wrong')).status).toBe(401);
    // The router decodes the path: an API route spelt with escapes is still an API route.
    for (const spelt of ['/%61pi/v1/stacks', '/api/v1/%73tacks', '/api/%76%31/pools']) {
      const escaped = await call('GET', spelt, undefined, null);
      expect(escaped.status, spelt).toBe(401);
      expect(escaped.body.code, spelt).toBe('UNAUTHENTICATED');
    }
  });

  it('limits failed attempts per address, not for others', async () => {
    for (let i = 0; i < 5; i += 1)
      expect((await call('GET', '/api/v1/stacks', undefined, `bad-${i}`, '10.9.9.9')).status).toBe(
        401,
      );
    const blocked = await call('GET', '/api/v1/stacks', undefined, 'bad-6', '10.9.9.9');
    expect(blocked.status).toBe(429);
    expect(blocked.body.code).toBe('TOO_MANY_FAILED_LOGINS');
    // The operator hears it once, when the address is refused, not at each request after.
    expect(said.filter((line) => line.includes('10.9.9.9'))).toEqual([
      '5 requests with a wrong token from 10.9.9.9 within a minute: it is refused (429) for 60 s',
    ]);
    // A valid token still works from there: a stale client cannot lock the others out.
    expect((await call('GET', '/api/v1/stacks', undefined, ADMIN, '10.9.9.9')).status).toBe(200);
    clock = new Date(clock.getTime() + 61_000);
    expect((await call('GET', '/api/v1/stacks', undefined, 'bad-7', '10.9.9.9')).status).toBe(401);
  });
});

describe('pools', () => {
  it('shows a pool token once, stores it hashed, and rotates it', async () => {
    const created = await call('POST', '/api/v1/pools', { id: 'team-a', kind: 'private' });
    expect(created.status).toBe(201);
    poolToken = created.body.token as string;
    expect(poolToken).toMatch(/^berth_pool_/);
    const listed = await call('GET', '/api/v1/pools');
    expect(JSON.stringify(listed.body)).not.toContain(poolToken);
    expect(await store.findPoolByTokenHash(hashToken(poolToken))).not.toBeNull();
    const rotated = await call('POST', '/api/v1/pools/team-a/token');
    expect(rotated.status).toBe(200);
    expect(await store.findPoolByTokenHash(hashToken(poolToken))).toBeNull();
    poolToken = rotated.body.token as string;
    expect((await call('POST', '/api/v1/pools', { id: 'team-a', kind: 'private' })).body.code).toBe(
      'ALREADY_EXISTS',
    );
  });

  it('gives a public pool the default allow-list and refuses one for a private pool', async () => {
    const pub = await call('POST', '/api/v1/pools', { id: 'shared', kind: 'public' });
    expect((pub.body.pool as { allowList: string[] }).allowList).toEqual(['default']);
    const bad = await call('POST', '/api/v1/pools', {
      id: 'team-b',
      kind: 'private',
      allowList: ['ghcr.io'],
    });
    expect(bad.status).toBe(400);
    expect(await store.getPool('team-b')).toBeNull();
  });

  it("changes a public pool's settings, keeps its kind, and deletes an unused pool", async () => {
    const changed = await call('PATCH', '/api/v1/pools/shared', {
      allowList: ['quay.io', 'default'],
      defaultImage: 'quay.io/team/runner:2',
      pullPolicy: 'always',
    });
    expect(changed.status).toBe(200);
    expect(changed.body).toMatchObject({
      id: 'shared',
      kind: 'public',
      allowList: ['quay.io', 'default'],
      defaultImage: 'quay.io/team/runner:2',
      pullPolicy: 'always',
    });
    // null (and '') puts a setting back to berth's default; an empty list is the default list.
    const reset = await call('PATCH', '/api/v1/pools/shared', {
      allowList: [],
      defaultImage: null,
      pullPolicy: null,
    });
    expect(reset.body).toMatchObject({
      allowList: ['default'],
      defaultImage: null,
      pullPolicy: null,
    });
    for (const [id, body, message] of [
      ['shared', { kind: 'private' }, 'kind'],
      ['shared', { defaultImage: 'Quay.io/Bad' }, 'defaultImage: '],
      ['shared', { allowList: ['not a host'] }, 'allowList: '],
      ['team-a', { allowList: ['ghcr.io'] }, 'allowList is for public pools'],
    ] as const) {
      const refused = await call('PATCH', `/api/v1/pools/${id}`, body);
      expect(refused.status, JSON.stringify(body)).toBe(400);
      expect(refused.body.message).toContain(message);
    }
    expect((await store.getPool('shared'))?.kind).toBe('public');
    expect((await store.getPool('team-a'))?.allowList).toEqual([]);
    expect((await call('PATCH', '/api/v1/pools/nowhere', { name: 'x' })).status).toBe(404);

    const spare = await call('POST', '/api/v1/pools', { id: 'spare', kind: 'private' });
    const spareToken = spare.body.token as string;
    expect((await call('DELETE', '/api/v1/pools/spare')).status).toBe(204);
    expect(await store.getPool('spare')).toBeNull();
    expect(await store.findPoolByTokenHash(hashToken(spareToken))).toBeNull();
    expect((await call('DELETE', '/api/v1/pools/spare')).status).toBe(404);
  });

  it('lets a pool token call no endpoint meant for people', async () => {
    const answer = await call('GET', '/api/v1/stacks', undefined, poolToken);
    expect(answer.status).toBe(403);
    expect(answer.body.code).toBe('FORBIDDEN');
  });
});

describe('API tokens', () => {
  type Created = { apiToken: { id: string; name: string; role: string }; token: string };
  const create = async (name: string, role: 'admin' | 'user', as = ADMIN): Promise<Created> => {
    const answer = await call('POST', '/api/v1/tokens', { name, role }, as);
    expect(answer.status).toBe(201);
    return answer.body as unknown as Created;
  };

  it('shows a new token once, stores it hashed, and lists tokens without any secret', async () => {
    const created = await create('ci deploy', 'user');
    expect(created.token).toMatch(/^berth_user_[A-Za-z0-9_-]{32}$/);
    expect(created.apiToken).toEqual({
      id: expect.stringMatching(/^[0-9a-z]{26}$/) as string,
      name: 'ci deploy',
      role: 'user',
      createdAt: clock.toISOString(),
    });
    expect((await store.findTokenByHash(hashToken(created.token)))?.id).toBe(created.apiToken.id);
    expect((await create('ops', 'admin')).token).toMatch(/^berth_admin_/);
    const listed = await call('GET', '/api/v1/tokens');
    expect(listed.status).toBe(200);
    const tokens = listed.body.tokens as Record<string, unknown>[];
    expect(tokens).toContainEqual({ ...created.apiToken, createdAt: clock.toISOString() });
    for (const token of tokens)
      expect(Object.keys(token).sort()).toEqual(['createdAt', 'id', 'name', 'role']);
    expect(JSON.stringify(listed.body)).not.toContain(created.token);
    expect(JSON.stringify(listed.body)).not.toContain(hashToken(created.token));
  });

  it('refuses a second token of a name with TOKEN_NAME_TAKEN (409), naming the one there is', async () => {
    const first = await create('alice', 'user');
    const before = (await store.listTokens()).length;
    const again = await call('POST', '/api/v1/tokens', { name: 'alice', role: 'admin' });
    expect(again.status).toBe(409);
    expect(again.body).toEqual({
      code: 'TOKEN_NAME_TAKEN',
      message: `a token named "alice" exists already (id ${first.apiToken.id})`,
      hint: `Pick another name, or revoke that token first (\`berth token revoke ${first.apiToken.id}\`).`,
    });
    expect(await store.listTokens()).toHaveLength(before);
    expect((await create('Alice', 'user')).apiToken.name).toBe('Alice');
  });

  it('refuses the name "admin" (the server\'s own admin token\'s), and a name taken since it looked', async () => {
    const admin = await call('POST', '/api/v1/tokens', { name: 'admin', role: 'admin' });
    expect(admin.status).toBe(409);
    expect(admin.body).toMatchObject({
      code: 'TOKEN_NAME_TAKEN',
      message: 'the name "admin" is the server\'s own admin token\'s (made on its first start)',
    });
    // Another request makes "twice" between this one's look and its insert: the store's unique
    // name refuses the insert, and the answer names the token that won.
    const first = await create('twice', 'user');
    const list = store.listTokens.bind(store);
    let looks = 0;
    store.listTokens = async () => ((looks += 1) === 1 ? [] : list());
    try {
      const again = await call('POST', '/api/v1/tokens', { name: 'twice', role: 'user' });
      expect(again.status).toBe(409);
      expect(again.body).toMatchObject({
        code: 'TOKEN_NAME_TAKEN',
        message: `a token named "twice" exists already (id ${first.apiToken.id})`,
      });
    } finally {
      store.listTokens = list;
    }
    expect((await store.listTokens()).filter((t) => t.name === 'twice')).toHaveLength(1);
  });

  it('lets a user token read and manage stacks, but not create pools or touch tokens (403)', async () => {
    const { token } = await create('reader', 'user');
    expect((await call('GET', '/api/v1/pools', undefined, token)).status).toBe(200);
    expect((await call('GET', '/api/v1/stacks', undefined, token)).status).toBe(200);
    for (const [method, url, body] of [
      ['POST', '/api/v1/pools', { id: 'by-user', kind: 'private' }],
      ['PATCH', '/api/v1/pools/team-a', { pullPolicy: 'never' }],
      ['DELETE', '/api/v1/pools/team-a', undefined],
      ['POST', '/api/v1/tokens', { name: 'more', role: 'admin' }],
      ['GET', '/api/v1/tokens', undefined],
      ['DELETE', '/api/v1/tokens/admin', undefined],
    ] as const) {
      const answer = await call(method, url, body, token);
      expect(answer.status, `${method} ${url}`).toBe(403);
      expect(answer.body.code).toBe('FORBIDDEN');
    }
    expect(await store.getPool('by-user')).toBeNull();
    const pool = await call('POST', '/api/v1/tokens', { name: 'x', role: 'user' }, poolToken);
    expect(pool.status).toBe(403);
  });

  it('revokes a token at once: its next request and its browser session are refused (401)', async () => {
    const { apiToken, token } = await create('leaving', 'user');
    const signedIn = await app.inject({
      method: 'POST',
      url: '/api/v1/session',
      payload: { token },
    });
    const cookie = /^(berth_session=[^;]+)/.exec(String(signedIn.headers['set-cookie']))?.[1];
    expect(cookie).toBeDefined();
    expect((await call('GET', '/api/v1/stacks', undefined, token)).status).toBe(200);
    expect((await call('DELETE', `/api/v1/tokens/${apiToken.id}`)).status).toBe(204);
    const after = await call('GET', '/api/v1/stacks', undefined, token);
    expect(after.status).toBe(401);
    expect(after.body.code).toBe('UNAUTHENTICATED');
    const session = await app.inject({
      method: 'GET',
      url: '/api/v1/session',
      headers: { cookie: cookie as string },
    });
    expect(session.statusCode).toBe(401);
    const again = await call('DELETE', `/api/v1/tokens/${apiToken.id}`);
    expect(again.status).toBe(404);
    expect(again.body.code).toBe('NOT_FOUND');
    expect(again.body.hint).toContain('berth token list');
  });

  it("refuses to revoke the caller's own token and the last admin token, with a code, and keeps them", async () => {
    // This server's ADMIN is kept outside the store: the store's one admin token is 'ops'.
    const admins = (await store.listTokens()).filter((t) => t.role === 'admin');
    expect(admins.map((t) => t.name)).toEqual(['ops']);
    const ops = admins[0] as { id: string };
    const lastOps = await call('DELETE', `/api/v1/tokens/${ops.id}`);
    expect(lastOps.status).toBe(409);
    expect(lastOps.body.code).toBe('TOKEN_LAST_ADMIN');
    const first = await create('first admin', 'admin');
    expect((await call('DELETE', `/api/v1/tokens/${ops.id}`)).status).toBe(204);
    const own = await call('DELETE', `/api/v1/tokens/${first.apiToken.id}`, undefined, first.token);
    expect(own.status).toBe(409);
    expect(own.body.code).toBe('TOKEN_IN_USE');
    expect(own.body.hint).toContain('another admin token');
    const last = await call('DELETE', `/api/v1/tokens/${first.apiToken.id}`);
    expect(last.status).toBe(409);
    expect(last.body.code).toBe('TOKEN_LAST_ADMIN');
    expect(last.body.hint).toContain('berth token create NAME --role admin');
    expect((await call('GET', '/api/v1/tokens', undefined, first.token)).status).toBe(200);
    // With a second admin token, the first may go (revoked by the second).
    const second = await create('second admin', 'admin', first.token);
    const gone = await call(
      'DELETE',
      `/api/v1/tokens/${first.apiToken.id}`,
      undefined,
      second.token,
    );
    expect(gone.status).toBe(204);
    expect((await call('GET', '/api/v1/tokens', undefined, first.token)).status).toBe(401);
  });

  it('answers bad bodies and ids with a 400 and a code, and makes no token of them', async () => {
    const before = (await store.listTokens()).length;
    for (const body of [
      {},
      { name: 'no role' },
      { role: 'user' },
      { name: 'x', role: 'root' },
      { name: '', role: 'user' },
      { name: 'bell\u0007', role: 'user' },
      { name: 'x'.repeat(201), role: 'user' },
      { name: 'x', role: 'user', token: 'berth_user_mine' },
      { name: { first: 'x' }, role: 'user' },
    ]) {
      const answer = await call('POST', '/api/v1/tokens', body);
      expect(answer.status, JSON.stringify(body)).toBe(400);
      expect(answer.body.code).toBe('BAD_REQUEST');
    }
    const badId = await call('DELETE', '/api/v1/tokens/NOT%20AN%20ID');
    expect(badId.status).toBe(400);
    expect(badId.body.code).toBe('BAD_REQUEST');
    expect(await store.listTokens()).toHaveLength(before);
  });
});

describe('stacks', () => {
  it('creates a stack from a repository, with its settings', async () => {
    const created = await call('POST', '/api/v1/stacks', {
      id: 'demo',
      repository: 'https://git.example.com/infra.git',
      branch: 'main',
      projectRoot: 'envs/dev',
      pool: 'team-a',
      labels: ['team:a'],
    });
    expect(created.status).toBe(201);
    expect(created.body).toMatchObject({
      id: 'demo',
      projectRoot: 'envs/dev',
      pool: 'team-a',
      variables: [],
    });
  });

  it.each([
    [{ id: 'x1', repository: 'https://g/x.git', pool: 'team-a', colour: 'red' }, 'BAD_REQUEST'],
    [{ id: '../etc', repository: 'https://g/x.git', pool: 'team-a' }, 'BAD_REQUEST'],
    [{ id: '<script>', repository: 'https://g/x.git', pool: 'team-a' }, 'BAD_REQUEST'],
    [{ id: 'x2', repository: 'https://g/x.git', pool: 'team-a', labels: ['a\nb'] }, 'BAD_REQUEST'],
    [
      { id: 'x3', repository: 'https://g/x.git', pool: 'team-a', projectRoot: '../up' },
      'BAD_REQUEST',
    ],
    [
      { id: 'x4', repository: 'https://g/x.git', pool: 'team-a', runnerImage: 'Ubuntu' },
      'BAD_REQUEST',
    ],
    [{ id: 'x5', repository: 'https://g/x.git', pool: 'nowhere' }, 'POOL_NOT_FOUND'],
    [{ id: 'x6', pool: 'team-a' }, 'BAD_REQUEST'],
    [{ id: 'x7', repository: 'ext::sh -c evil', pool: 'team-a' }, 'BAD_REQUEST'],
  ])('refuses %j with %s and creates nothing', async (body, code) => {
    const answer = await call('POST', '/api/v1/stacks', body);
    expect(answer.status).toBe(400);
    expect(answer.body.code).toBe(code);
    expect(typeof answer.body.message).toBe('string');
    expect((await store.listStacks()).map((s) => s.id)).toEqual(['demo']);
  });

  it('refuses a repository URL with a password or token in it, without echoing it', async () => {
    const repository = 'https://deploy:pa@ss-w0rd@git.example.com/infra.git';
    const created = await call('POST', '/api/v1/stacks', { id: 'x8', repository, pool: 'team-a' });
    const patched = await call('PATCH', '/api/v1/stacks/demo', { repository });
    for (const answer of [created, patched]) {
      expect(answer.status).toBe(400);
      expect(answer.body.message).toBe(
        'repository: https://***@git.example.com/infra.git has a password or token written into it, which everyone who may read the stack would see',
      );
      expect(answer.body.hint).toContain('BERTH_GIT_TOKEN');
      expect(JSON.stringify(answer.body)).not.toMatch(/deploy|ss-w0rd/);
    }
    const asUser = await call('POST', '/api/v1/stacks', {
      id: 'x9',
      repository: 'https://ghp_s3cret@git.example.com/infra.git',
      pool: 'team-a',
    });
    expect(asUser.status).toBe(400);
    expect(asUser.body.message).toContain('has a user name written into it (often a token)');
    expect(JSON.stringify(asUser.body)).not.toContain('ghp_s3cret');
    expect((await store.listStacks()).map((s) => s.id)).toEqual(['demo']);
    expect((await store.getStack('demo'))?.repository).toBe('https://git.example.com/infra.git');
    // One stored before such URLs were refused is shown without its user info.
    try {
      for (const [old, shown] of [
        ['https://deploy:t0ken@git.example.com/old.git', 'https://***@git.example.com/old.git'],
        ['https://deploy:t0k/en@git.example.com/old.git', 'https://***'],
      ] as const) {
        await store.updateStack('demo', { repository: old }, clock);
        expect((await call('GET', '/api/v1/stacks/demo')).body.repository).toBe(shown);
        expect(JSON.stringify((await call('GET', '/api/v1/stacks')).body)).not.toContain('t0k');
      }
    } finally {
      await store.updateStack('demo', { repository: 'https://git.example.com/infra.git' }, clock);
    }
  });

  it("lets only the admin give a private pool's stack a source on the workers' disks", async () => {
    const userToken = 'berth_api_user-token-0123456789';
    await store.createToken({ id: 'u1', name: 'user', role: 'user' }, hashToken(userToken), clock);
    const local = { id: 'local-src', localDir: '/etc', pool: 'team-a' };
    const byUser = await call('POST', '/api/v1/stacks', local, userToken);
    expect(byUser.status).toBe(403);
    const fileRepo = await call(
      'POST',
      '/api/v1/stacks',
      { id: 'file-src', repository: 'file:///root/.ssh', pool: 'team-a' },
      userToken,
    );
    expect(fileRepo.status).toBe(403);
    const onPublic = await call('POST', '/api/v1/stacks', { ...local, pool: 'shared' });
    expect(onPublic.status).toBe(400);
    // Nor by a change of an existing stack.
    const patched = await call(
      'PATCH',
      '/api/v1/stacks/demo',
      { repository: null, localDir: '/root' },
      userToken,
    );
    expect(patched.status).toBe(403);
    expect((await store.getStack('demo'))?.localDir).toBeNull();
    expect((await store.listStacks()).map((s) => s.id)).toEqual(['demo']);
  });

  it("lets only the admin name a repository on the server's or workers' own machine, or a link-local one", async () => {
    const userToken = 'berth_api_user-token-loopback-repo-01';
    await store.createToken(
      { id: 'u-loop', name: 'loopback user', role: 'user' },
      hashToken(userToken),
      clock,
    );
    const loopback = { id: 'probe', repository: 'https://127.0.0.1:5432/x.git', pool: 'team-a' };
    const byUser = await call('POST', '/api/v1/stacks', loopback, userToken);
    expect(byUser.status).toBe(403);
    expect(byUser.body.message).toBe(
      "only an admin token may name such a repository: the repository's host 127.0.0.1 is this machine's own (loopback), a link-local address or none, where the server and the workers would reach their own services",
    );
    expect(await store.getStack('probe')).toBeNull();
    const metadata = await call(
      'PATCH',
      '/api/v1/stacks/demo',
      { repository: 'https://169.254.169.254/latest.git' },
      userToken,
    );
    expect(metadata.status).toBe(403);
    expect((await store.getStack('demo'))?.repository).toBe('https://git.example.com/infra.git');
    // A git server on the network is any user's to name; one beside berth is the admin's.
    const onNetwork = await call(
      'POST',
      '/api/v1/stacks',
      { ...loopback, repository: 'https://10.1.2.3/x.git' },
      userToken,
    );
    expect(onNetwork.status).toBe(201);
    expect((await call('DELETE', '/api/v1/stacks/probe')).status).toBe(204);
    expect((await call('POST', '/api/v1/stacks', loopback)).status).toBe(201);
    expect((await call('DELETE', '/api/v1/stacks/probe')).status).toBe(204);
  });

  it("lets only the admin change a stack whose source is on the workers' disks, and says so", async () => {
    const userToken = 'berth_api_user-token-local-stack-01';
    await store.createToken(
      { id: 'u2', name: 'local stack user', role: 'user' },
      hashToken(userToken),
      clock,
    );
    const made = await call('POST', '/api/v1/stacks', {
      id: 'infra',
      localDir: '/srv/infra',
      pool: 'team-a',
    });
    expect(made.status).toBe(201);
    for (const patch of [
      { runnerImage: 'busybox:evil' },
      { repository: 'https://g/x.git', localDir: null },
    ]) {
      const byUser = await call('PATCH', '/api/v1/stacks/infra', patch, userToken);
      expect(byUser.status, JSON.stringify(patch)).toBe(403);
      expect(byUser.body).toEqual({
        code: 'FORBIDDEN',
        message:
          "stack infra's source is on the workers' own disks (/srv/infra): only an admin token may change the stack",
        hint: 'Ask the admin to make the change (`berth stack update` with an admin token).',
      });
    }
    expect((await store.getStack('infra'))?.runnerImage).toBeNull();
    const byAdmin = await call('PATCH', '/api/v1/stacks/infra', { runnerImage: 'busybox:1.36' });
    expect(byAdmin.status).toBe(200);
    // Its runs and variables are a user's to manage, as for any stack.
    const variable = await call(
      'PUT',
      '/api/v1/stacks/infra/env/TF_LOG',
      { value: 'info' },
      userToken,
    );
    expect(variable.status).toBe(200);
    // A directory has no commits: a run of one is refused, not recorded with it.
    const withCommit = await call('POST', '/api/v1/stacks/infra/runs', {
      type: 'task',
      commit: 'a'.repeat(40),
    });
    expect(withCommit.status).toBe(400);
    expect(withCommit.body.message).toBe(
      `stack infra's source is a directory on its workers (/srv/infra), which has no commits: commit ${'a'.repeat(40)} cannot be run`,
    );
    expect(await store.listRuns({ stackId: 'infra', limit: 5 })).toEqual([]);
    // Deleting it is a change too: its runs and logs would go, and its id be free for the user.
    const deleteByUser = await call('DELETE', '/api/v1/stacks/infra', undefined, userToken);
    expect(deleteByUser.status).toBe(403);
    expect(deleteByUser.body).toEqual({
      code: 'FORBIDDEN',
      message:
        "stack infra's source is on the workers' own disks (/srv/infra): only an admin token may delete the stack",
      hint: 'Ask the admin to make the change (`berth stack delete` with an admin token).',
    });
    expect(await store.getStack('infra')).not.toBeNull();
    expect((await call('DELETE', '/api/v1/stacks/infra')).status).toBe(204);
  });

  it('keeps secret variables write-only and sealed at rest', async () => {
    const secret = 'hunter2-very-secret-value';
    const put = await call('PUT', '/api/v1/stacks/demo/env/DB_PASSWORD', {
      value: secret,
      secret: true,
    });
    expect(put.status).toBe(200);
    await call('PUT', '/api/v1/stacks/demo/env/TF_LOG', { value: 'info' });
    const shown = await call('GET', '/api/v1/stacks/demo');
    expect(shown.body.variables).toEqual([
      { name: 'DB_PASSWORD', secret: true },
      { name: 'TF_LOG', secret: false, value: 'info' },
    ]);
    expect(JSON.stringify(put.body) + JSON.stringify(shown.body)).not.toContain(secret);
    const stored = (await store.listStackVariables('demo')).find((v) => v.name === 'DB_PASSWORD');
    expect(stored?.value).not.toContain(secret);
    expect(SecretBox.fromKey(Buffer.alloc(32, 7)).open(stored?.value as string)).toBe(secret);
    expect(readFileSync(path.join(dir, 'berth.db')).toString('latin1')).not.toContain(secret);
    // Nor can another user of the machine read the database (its logs, its sealed values).
    for (const file of ['berth.db', 'berth.db-wal'])
      expect(statSync(path.join(dir, file)).mode & 0o777, file).toBe(0o600);
    // A plain set (a missed --secret) never makes it readable; unset first to make it plain.
    for (const body of [{ value: 'now-plain' }, { value: 'now-plain', secret: false }]) {
      const plain = await call('PUT', '/api/v1/stacks/demo/env/DB_PASSWORD', body);
      expect(plain.status).toBe(409);
      expect(plain.body.code).toBe('VARIABLE_IS_SECRET');
      expect(plain.body.hint).toContain('berth stack env unset demo DB_PASSWORD');
    }
    expect((await call('GET', '/api/v1/stacks/demo')).body.variables).toContainEqual({
      name: 'DB_PASSWORD',
      secret: true,
    });
    expect(
      (await call('PUT', '/api/v1/stacks/demo/env/DB_PASSWORD', { value: secret, secret: true }))
        .status,
    ).toBe(200);
  });

  it.each(['BERTH_GIT_TOKEN', 'BERTH_GIT_SSH_KEY'])(
    'refuses %s as a plain variable: a git credential is a secret',
    async (name) => {
      const put = await call('PUT', `/api/v1/stacks/demo/env/${name}`, { value: 'credential' });
      expect(put.status).toBe(400);
      expect(put.body.message).toBe(`${name} holds a git credential and must be a secret variable`);
      // The command line keeps a fix that names its command (not its generic one for values).
      expect(put.body.hint).toBe(
        `Set it as a secret: \`berth stack env set demo ${name} --secret\` (through the API, secret: true).`,
      );
      expect((await store.listStackVariables('demo')).map((v) => v.name)).not.toContain(name);
      const secret = await call('PUT', `/api/v1/stacks/demo/env/${name}`, {
        value: 'credential',
        secret: true,
      });
      expect(secret.status).toBe(200);
    },
  );
});

describe('runs', () => {
  it('queues a tracked run of a stack without auto-deploy (its plan will wait for a confirm)', async () => {
    const queued = await call('POST', '/api/v1/stacks/demo/runs', { type: 'tracked' });
    expect(queued.status).toBe(201);
    expect(queued.body).toMatchObject({ type: 'TRACKED', state: 'READY', autoDeploy: false });
    // Confirm before there is a plan: refused, nothing changed.
    const early = await call('POST', `/api/v1/runs/${queued.body.id as string}/confirm`);
    expect(early.status).toBe(409);
    expect(early.body.code).toBe('RUN_TRANSITION_INVALID');
    expect((await call('POST', `/api/v1/runs/${queued.body.id as string}/cancel`)).status).toBe(
      200,
    );
    expect((await call('PATCH', '/api/v1/stacks/demo', { autoDeploy: true })).status).toBe(200);
  });

  it('binds a run to a commit and refuses moves the state machine does not allow', async () => {
    const first = await call('POST', '/api/v1/stacks/demo/runs', { type: 'tracked' });
    expect(first.status).toBe(201);
    expect(first.body).toMatchObject({ type: 'TRACKED', state: 'READY', commit: 'c'.repeat(40) });
    const second = await call('POST', '/api/v1/stacks/demo/runs', {
      type: 'tracked',
      commit: 'd'.repeat(40),
    });
    expect(second.body).toMatchObject({ state: 'QUEUED', commit: 'd'.repeat(40) });
    const confirm = await call('POST', `/api/v1/runs/${first.body.id as string}/confirm`);
    expect(confirm.status).toBe(409);
    expect(confirm.body.code).toBe('RUN_TRANSITION_INVALID');
    expect((await store.getRun(first.body.id as string))?.state).toBe('READY');
    const canceled = await call('POST', `/api/v1/runs/${first.body.id as string}/cancel`);
    expect(canceled.body.state).toBe('CANCELED');
    expect((await call('GET', `/api/v1/runs/${second.body.id as string}`)).body.state).toBe(
      'READY',
    );
    const again = await call('POST', `/api/v1/runs/${first.body.id as string}/cancel`);
    expect(again.status).toBe(409);
    const shown = await call('GET', `/api/v1/runs/${first.body.id as string}`);
    expect((shown.body.states as { state: string }[]).map((s) => s.state)).toEqual([
      'QUEUED',
      'READY',
      'CANCELED',
    ]);
    await call('POST', `/api/v1/runs/${second.body.id as string}/cancel`);
  });

  it('refuses a trigger on a branch the repository does not have, and binds no commit when it could not tell', async () => {
    const before = (await store.listRuns({ stackId: 'demo', limit: 500 })).length;
    try {
      branchHead = { missing: 'main' };
      const refused = await call('POST', '/api/v1/stacks/demo/runs', { type: 'task' });
      expect(refused.status).toBe(409);
      expect(refused.body.code).toBe('BRANCH_NOT_FOUND');
      expect(refused.body.message).toMatch(/^stack demo's branch main does not exist in /);
      expect(refused.body.hint).toContain('Push the branch');
      expect((await store.listRuns({ stackId: 'demo', limit: 500 })).length).toBe(before);
      // The SSH login in the repository URL is not shown either.
      const withUser = await call('POST', '/api/v1/stacks', {
        id: 'creds',
        repository: 'ssh://deploy@git.example.com/infra.git',
        pool: 'team-a',
      });
      expect(withUser.status).toBe(201);
      const hidden = await call('POST', '/api/v1/stacks/creds/runs', { type: 'task' });
      expect(hidden.body.code).toBe('BRANCH_NOT_FOUND');
      expect(hidden.body.message).toContain('ssh://***@git.example.com/infra.git');
      expect(JSON.stringify(hidden.body)).not.toContain('deploy');
      expect((await call('DELETE', '/api/v1/stacks/creds')).status).toBe(204);
      // A given commit needs no branch head.
      const given = await call('POST', '/api/v1/stacks/demo/runs', {
        type: 'task',
        commit: 'e'.repeat(40),
      });
      expect(given.body).toMatchObject({ state: 'READY', commit: 'e'.repeat(40) });
      await call('POST', `/api/v1/runs/${given.body.id as string}/cancel`);
      // Out of the server's reach: the worker takes the branch head (docs/server.md).
      branchHead = { unknown: true };
      const unbound = await call('POST', '/api/v1/stacks/demo/runs', { type: 'task' });
      expect(unbound.body).toMatchObject({ state: 'READY', commit: null });
      await call('POST', `/api/v1/runs/${unbound.body.id as string}/cancel`);
    } finally {
      branchHead = { sha: 'c'.repeat(40) };
    }
  });

  it('reads a log from an offset', async () => {
    const run = await call('POST', '/api/v1/stacks/demo/runs', { type: 'proposed' });
    // The stack shows it as its last run, alone and in the list.
    const last = { id: run.body.id, type: 'PROPOSED', state: 'READY' };
    expect((await call('GET', '/api/v1/stacks/demo')).body.lastRun).toMatchObject(last);
    const listed = (await call('GET', '/api/v1/stacks')).body.stacks as {
      id: string;
      lastRun: unknown;
    }[];
    expect(listed.find((s) => s.id === 'demo')?.lastRun).toMatchObject(last);
    await store.appendLog(run.body.id as string, 1, ['one\n', 'two\n'], clock);
    const all = await call('GET', `/api/v1/runs/${run.body.id as string}/logs`);
    expect(all.body).toMatchObject({ next: 2 });
    const rest = await call('GET', `/api/v1/runs/${run.body.id as string}/logs?after=1`);
    expect((rest.body.chunks as { text: string }[]).map((c) => c.text)).toEqual(['two\n']);
    await call('POST', `/api/v1/runs/${run.body.id as string}/cancel`);
  });
});

describe('bad input', () => {
  it('answers malformed JSON, a wrong media type and an oversized body with 4xx and a code', async () => {
    const malformed = await app.inject({
      method: 'POST',
      url: '/api/v1/stacks',
      headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
      payload: '{"id": "x", ',
    });
    expect(malformed.statusCode).toBe(400);
    expect((JSON.parse(malformed.body) as { code: string }).code).toBe('BAD_JSON');
    const big = await app.inject({
      method: 'POST',
      url: '/api/v1/stacks',
      headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
      payload: JSON.stringify({ id: 'big', name: 'x'.repeat(2 * 1024 * 1024) }),
    });
    expect(big.statusCode).toBe(413);
    expect((JSON.parse(big.body) as { code: string }).code).toBe('BODY_TOO_LARGE');
    const text = await app.inject({
      method: 'POST',
      url: '/api/v1/stacks',
      headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'text/plain' },
      payload: 'id=x',
    });
    expect(text.statusCode).toBe(415);
    expect((await call('GET', '/api/v1/nothing-here')).body.code).toBe('NOT_FOUND');
    expect((await call('GET', '/api/v1/runs/not-a-ulid')).status).toBe(400);
  });

  it.each([
    [
      '/api/v1/stacks',
      { id: 'Bad Id!', localDir: '/x', pool: 'team-a' },
      'id "Bad Id!" is not valid: it must be an id of lowercase letters, digits and -, starting with a letter or digit, at most 63 characters',
    ],
    [
      '/api/v1/stacks',
      { id: 'ok', repository: '/tmp/walk/repo', pool: 'team-a' },
      'repository "/tmp/walk/repo" is not valid: it must be an https://, ssh://, git@ or file:// URL, without spaces',
    ],
    [
      '/api/v1/stacks',
      { id: 'ok', localDir: '/x', pool: 'team-a', projectRoot: '..' },
      'projectRoot ".." is not valid: it must be a relative path inside the source, without `..`',
    ],
    [
      '/api/v1/stacks',
      { id: 'ok', localDir: '/x', pool: 'team-a', tool: 'TERRAFORM' },
      'tool "TERRAFORM" is not one of: TERRAFORM_FOSS, OPEN_TOFU, CUSTOM (or null)',
    ],
    [
      '/api/v1/stacks/demo/runs',
      { type: 'bogus' },
      'type "bogus" is not one of: task, proposed, tracked, destroy',
    ],
    ['/api/v1/pools', { id: 'p', kind: 'shared' }, 'kind "shared" is not one of: public, private'],
    ['/api/v1/pools', { kind: 'private' }, 'body needs the field id'],
    ['/api/v1/tokens', { name: '', role: 'user' }, 'name is empty: it needs a value'],
    [
      '/api/v1/pools',
      { id: 'p', kind: 'private', colour: 'red' },
      'body has a field this endpoint does not take: colour',
    ],
  ])(
    'says which field of POST %s is wrong, the value given and what is accepted',
    async (url, body, message) => {
      const answer = await call('POST', url, body);
      expect(answer.status).toBe(400);
      expect(answer.body).toMatchObject({ code: 'BAD_REQUEST', message });
    },
  );

  it('never echoes a free-text value it refuses, such as a secret variable over the limit', async () => {
    const secret = `hunter2-${'x'.repeat(65536)}`;
    const answer = await call('PUT', '/api/v1/stacks/demo/env/TOO_LONG', {
      value: secret,
      secret: true,
    });
    expect(answer.status).toBe(400);
    expect(answer.body.message).toBe('value is too long: at most 65536 characters');
    expect(JSON.stringify(answer.body)).not.toContain('hunter2');
  });

  it('says which part of the address is wrong, and what it takes in words', async () => {
    const answer = await call('POST', '/api/v1/runs/NOPE/confirm');
    expect(answer.status).toBe(400);
    expect(answer.body.message).toBe(
      'id "NOPE" is not valid: it must be a run id: 26 characters, digits and capital letters, as `berth runs list` shows',
    );
    const worker = await call('POST', '/api/v1/workers/nosuchworker/drain');
    expect(worker.body.message).toBe(
      'id "nosuchworker" is not valid: it must be a worker id: 26 characters, digits and capital letters, as `berth worker list` shows',
    );
  });

  it('never answers a random body with a 500 or changes anything, on any endpoint', async () => {
    const ids = async (): Promise<string> =>
      JSON.stringify([
        (await store.listStacks()).map((s) => s.id),
        await store.listPools(),
        await store.listTokens(),
      ]);
    const before = await ids();
    const endpoints: ['POST' | 'PUT' | 'PATCH', string][] = [
      ['POST', '/api/v1/pools'],
      ['POST', '/api/v1/stacks'],
      ['PATCH', '/api/v1/stacks/demo'],
      ['PUT', '/api/v1/stacks/demo/env/X'],
      ['POST', '/api/v1/stacks/demo/runs'],
      ['POST', '/api/v1/tokens'],
    ];
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(...endpoints),
        fc.oneof(
          fc.jsonValue(),
          fc.dictionary(
            fc.constantFrom('id', 'kind', 'pool', 'type', 'labels', 'value', 'x'),
            fc.jsonValue(),
          ),
        ),
        async ([method, url], body) => {
          const res = await app.inject({
            method,
            url,
            headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
            payload: JSON.stringify(body),
          });
          expect(
            res.statusCode,
            `${method} ${url} ${JSON.stringify(body)} → ${res.body}`,
          ).toBeLessThan(500);
          if (res.statusCode >= 400)
            expect(typeof (JSON.parse(res.body) as { code?: unknown }).code).toBe('string');
        },
      ),
      { numRuns: 300 },
    );
    // No random body makes a pool, a stack or a token (none carries every field one needs).
    expect(await ids()).toBe(before);
  });
});

describe('the OpenAPI document', () => {
  it('is served and is the committed docs/api/openapi.json (npm run openapi writes it)', async () => {
    const served = await call('GET', '/api/v1/openapi.json', undefined, null);
    expect(served.status).toBe(200);
    const committed = JSON.parse(
      readFileSync(new URL('../../docs/api/openapi.json', import.meta.url), 'utf8'),
    ) as unknown;
    expect(openApiDocument(app)).toEqual(committed);
    expect(served.body).toEqual(committed);
  });
});

describe('the worker protocol', () => {
  let otherPoolToken = '';

  beforeAll(async () => {
    otherPoolToken = (await call('POST', '/api/v1/pools', { id: 'team-z', kind: 'private' })).body
      .token as string;
  });

  async function register(token: string): Promise<string> {
    const answer = await call(
      'POST',
      '/api/v1/worker/register',
      { host: 'worker-1', berthVersion: '0.1.0', engineVersion: '20.10.24', concurrency: 2 },
      token,
    );
    expect(answer.status).toBe(200);
    return answer.body.workerId as string;
  }

  it('refuses the id of a live worker on another host (a copied state directory) until that worker left', async () => {
    const token = (await call('POST', '/api/v1/pools', { id: 'copied', kind: 'private' })).body
      .token as string;
    const id = await register(token);
    const as = (host: string): Promise<Answer> =>
      call(
        'POST',
        '/api/v1/worker/register',
        { id, host, berthVersion: '0.1.0', engineVersion: '20.10.24', concurrency: 1 },
        token,
      );
    const copy = await as('worker-2');
    expect(copy.status).toBe(409);
    // Free in the whole default lease time (60 s): the test's clock has not moved.
    expect(copy.body).toMatchObject({
      code: 'WORKER_ID_IN_USE',
      message: `worker id ${id} is in use by a live worker on host worker-1 (last heartbeat ${clock.toISOString()}): a copy of its state directory, or this worker restarted under another host name; if that worker has stopped, the id is free in 60 s`,
    });
    expect(copy.body.hint).toContain('BERTH_STATE_DIR');
    // The same host again is the worker restarted (after a crash its heartbeat is still fresh).
    expect((await as('worker-1')).status).toBe(200);
    expect((await call('POST', '/api/v1/worker/deregister', { workerId: id }, token)).status).toBe(
      204,
    );
    expect((await as('worker-2')).status).toBe(200);
  });

  it('counts a worker online until exactly the lease time after its heartbeat, alike in the list, a pool delete and its id', async () => {
    const token = (await call('POST', '/api/v1/pools', { id: 'edge', kind: 'private' })).body
      .token as string;
    const id = await register(token);
    const started = clock;
    const status = async (): Promise<unknown> =>
      (
        (await call('GET', '/api/v1/workers')).body.workers as { id: string; status: string }[]
      ).find((w) => w.id === id)?.status;
    const copy = (): Promise<Answer> =>
      call(
        'POST',
        '/api/v1/worker/register',
        { id, host: 'worker-2', berthVersion: '0.1.0', engineVersion: '20.10.24', concurrency: 1 },
        token,
      );
    try {
      // A millisecond before the lease time has passed: online everywhere.
      clock = new Date(started.getTime() + 60_000 - 1);
      expect(await status()).toBe('IDLE');
      expect((await call('DELETE', '/api/v1/pools/edge')).body.code).toBe('POOL_IN_USE');
      expect((await copy()).body.code).toBe('WORKER_ID_IN_USE');
      // At the lease time: offline everywhere (it was online in the list, offline to the delete).
      clock = new Date(started.getTime() + 60_000);
      expect(await status()).toBe('OFFLINE');
      expect((await copy()).status).toBe(200);
      clock = new Date(started.getTime() + 60_000 * 2);
      expect((await call('DELETE', '/api/v1/pools/edge')).status).toBe(204);
    } finally {
      clock = started;
    }
  });

  it("ends the runs of a worker id at its process's first registration only (a live process registering again keeps them)", async () => {
    const token = (await call('POST', '/api/v1/pools', { id: 'restarts', kind: 'private' })).body
      .token as string;
    expect(
      (await call('POST', '/api/v1/stacks', { id: 'restarts', localDir: dir, pool: 'restarts' }))
        .status,
    ).toBe(201);
    const id = await register(token);
    const again = (fresh?: boolean): Promise<Answer> =>
      call(
        'POST',
        '/api/v1/worker/register',
        {
          id,
          host: 'worker-1',
          berthVersion: '0.1.0',
          engineVersion: '20.10.24',
          concurrency: 1,
          ...(fresh === undefined ? {} : { fresh }),
        },
        token,
      );
    const held = async (): Promise<string> => {
      const run = await call('POST', '/api/v1/stacks/restarts/runs', { type: 'task' });
      const leased = await call('POST', '/api/v1/worker/lease', { workerId: id }, token);
      expect(leased.body.run).toMatchObject({ id: run.body.id, state: 'PREPARING' });
      return run.body.id as string;
    };
    const kept = await held();
    for (const fresh of [undefined, false]) {
      expect((await again(fresh)).status).toBe(200);
      expect((await call('GET', `/api/v1/runs/${kept}`)).body).toMatchObject({
        state: 'PREPARING',
        worker: id,
      });
    }
    expect((await again(true)).status).toBe(200);
    expect((await call('GET', `/api/v1/runs/${kept}`)).body).toMatchObject({
      state: 'READY',
      worker: null,
      stateReason: `worker ${id} started again before any container of the run started; the run went back to the queue`,
    });
    await call('POST', `/api/v1/runs/${kept}/cancel`);
  });

  it("tells the worker who triggered a run by the token's name (its job's TF_VAR_berth_run_trigger)", async () => {
    const token = (await call('POST', '/api/v1/pools', { id: 'triggers', kind: 'private' })).body
      .token as string;
    await call('POST', '/api/v1/stacks', { id: 'triggers', localDir: dir, pool: 'triggers' });
    const user = await call('POST', '/api/v1/tokens', { name: 'release pipeline', role: 'user' });
    const run = await call(
      'POST',
      '/api/v1/stacks/triggers/runs',
      { type: 'task' },
      user.body.token as string,
    );
    expect(run.status).toBe(201);
    const workerId = await register(token);
    const leased = await call('POST', '/api/v1/worker/lease', { workerId }, token);
    expect(leased.body.run).toMatchObject({
      id: run.body.id,
      triggeredBy: (user.body.apiToken as { id: string }).id,
    });
    expect(leased.body.trigger).toBe('release pipeline');
    // Its worker reports it ended: nothing is left leased for another test's lease sweep.
    const ended = await call(
      'POST',
      `/api/v1/worker/runs/${run.body.id as string}/state`,
      { workerId, state: 'CANCELED' },
      token,
    );
    expect(ended.body.state).toBe('CANCELED');
  });

  it('is for pool tokens only', async () => {
    const answer = await call('POST', '/api/v1/worker/register', {
      host: 'h',
      berthVersion: '0',
      engineVersion: '0',
      concurrency: 1,
    });
    expect(answer.status).toBe(403);
  });

  it('ends a run whose secret this server cannot open (sealed with another key), naming it, rather than handing it out again', async () => {
    const token = (await call('POST', '/api/v1/pools', { id: 'resealed', kind: 'private' })).body
      .token as string;
    expect(
      (
        await call('POST', '/api/v1/stacks', {
          id: 'resealed',
          repository: 'https://git.example.com/infra.git',
          branch: 'main',
          pool: 'resealed',
        })
      ).status,
    ).toBe(201);
    // As a server with another key would have stored it.
    await store.setStackVariable('resealed', {
      name: 'API_TOKEN',
      value: SecretBox.fromKey(Buffer.alloc(32, 9)).seal('not for this server'),
      secret: true,
    });
    const run = await call('POST', '/api/v1/stacks/resealed/runs', { type: 'task' });
    expect(run.status).toBe(201);
    const workerId = await register(token);
    expect((await call('POST', '/api/v1/worker/lease', { workerId }, token)).status).toBe(204);
    const ended = await call('GET', `/api/v1/runs/${run.body.id as string}`);
    expect(ended.body).toMatchObject({
      state: 'FAILED',
      stateReason:
        "stack resealed's secret variable API_TOKEN cannot be opened with this server's secrets key: it was sealed with another key [BERTH_SECRETS_KEY_MISMATCH]",
    });
    // Not back in the queue: the next lease finds nothing.
    expect((await call('POST', '/api/v1/worker/lease', { workerId }, token)).status).toBe(204);
  });

  it("wakes a waiting worker when a run of its pool is queued, and gives it the stack's secrets", async () => {
    const workerId = await register(poolToken);
    const otherId = await register(otherPoolToken);
    const waiting = call('POST', '/api/v1/worker/lease', { workerId, waitMs: 30_000 }, poolToken);
    const otherWaiting = call(
      'POST',
      '/api/v1/worker/lease',
      { workerId: otherId, waitMs: 300 },
      otherPoolToken,
    );
    const run = await call('POST', '/api/v1/stacks/demo/runs', { type: 'task' });
    const leased = await waiting;
    expect(leased.status).toBe(200);
    expect(leased.body.run).toMatchObject({
      id: run.body.id,
      state: 'PREPARING',
      worker: workerId,
    });
    expect(leased.body.environment).toContainEqual({
      name: 'DB_PASSWORD',
      value: 'hunter2-very-secret-value',
      secret: true,
    });
    // The other pool's worker never saw it.
    expect((await otherWaiting).status).toBe(204);
    const runId = run.body.id as string;

    // Another pool's worker cannot touch it.
    const foreign = await call(
      'POST',
      `/api/v1/worker/runs/${runId}/state`,
      { workerId: otherId, state: 'PERFORMING' },
      otherPoolToken,
    );
    expect(foreign.status).toBe(404);
    const foreignLog = await call(
      'POST',
      `/api/v1/worker/runs/${runId}/logs`,
      { workerId: otherId, firstSeq: 1, texts: ['x'] },
      otherPoolToken,
    );
    expect(foreignLog.status).toBe(404);
    // Nor can it speak for this pool's worker with its own token.
    const spoofed = await call(
      'POST',
      '/api/v1/worker/heartbeat',
      { workerId, runs: [runId] },
      otherPoolToken,
    );
    expect(spoofed.status).toBe(404);

    const started = await call(
      'POST',
      `/api/v1/worker/runs/${runId}/state`,
      {
        workerId,
        state: 'PERFORMING',
        started: true,
        image: { reference: 'debian:bookworm-slim', digest: null, source: 'present' },
      },
      poolToken,
    );
    expect(started.body).toMatchObject({
      state: 'PERFORMING',
      image: { reference: 'debian:bookworm-slim' },
    });
    // The same report again (its answer was lost): accepted, nothing changes, the job goes on.
    const repeated = await call(
      'POST',
      `/api/v1/worker/runs/${runId}/state`,
      { workerId, state: 'PERFORMING', started: true },
      poolToken,
    );
    expect(repeated.status).toBe(200);
    expect(repeated.body).toMatchObject({ state: 'PERFORMING' });
    expect((await store.runStates(runId)).filter((s) => s.state === 'PERFORMING')).toHaveLength(1);
    // People's decisions and the queue's moves are not a worker's to report.
    const notAWorkersMove = await call(
      'POST',
      `/api/v1/worker/runs/${runId}/state`,
      { workerId, state: 'READY' },
      poolToken,
    );
    expect(notAWorkersMove.status).toBe(409);
    expect(leased.body.logNext).toBe(1);
    const batch = { workerId, firstSeq: 1, texts: ['hello\n', 'world\n'] };
    expect(
      (await call('POST', `/api/v1/worker/runs/${runId}/logs`, batch, poolToken)).body,
    ).toEqual({
      next: 3,
    });
    // Sent again after a lost answer: stored once.
    expect(
      (await call('POST', `/api/v1/worker/runs/${runId}/logs`, batch, poolToken)).body,
    ).toEqual({
      next: 3,
    });
    // Batches travel side by side: one that overtakes the batch before it waits for it.
    const early = call(
      'POST',
      `/api/v1/worker/runs/${runId}/logs`,
      { workerId, firstSeq: 5, texts: ['!\n'] },
      poolToken,
    );
    const behind = call(
      'POST',
      `/api/v1/worker/runs/${runId}/logs`,
      { workerId, firstSeq: 3, texts: ['again\n', 'and\n'] },
      poolToken,
    );
    expect((await early).body).toEqual({ next: 6 });
    expect((await behind).body).toEqual({ next: 5 });
    // One whose predecessor never comes is answered LOG_GAP after the wait, and nothing of it
    // is stored (the log below ends where it was).
    const stranded = await call(
      'POST',
      `/api/v1/worker/runs/${runId}/logs`,
      { workerId, firstSeq: 9, texts: ['never\n'] },
      poolToken,
    );
    expect(stranded.status).toBe(409);
    expect(stranded.body.code).toBe('LOG_GAP');
    // At most four batches of a run wait at once (an honest worker has three in flight): a fifth
    // is answered LOG_GAP at once, while the four still wait, and nothing of it is stored.
    const settled = new Set<number>();
    const held = [7, 8, 9, 10].map((firstSeq) =>
      call(
        'POST',
        `/api/v1/worker/runs/${runId}/logs`,
        { workerId, firstSeq, texts: [`w${firstSeq}\n`] },
        poolToken,
      ).then((answer: Answer) => {
        settled.add(firstSeq);
        return answer;
      }),
    );
    while (app.waitingLogBatches(runId) < 4)
      await new Promise((resolve) => setTimeout(resolve, 10));
    const fifth = await call(
      'POST',
      `/api/v1/worker/runs/${runId}/logs`,
      { workerId, firstSeq: 11, texts: ['w11\n'] },
      poolToken,
    );
    expect(fifth.body.code).toBe('LOG_GAP');
    expect([...settled]).toEqual([]);
    // The gap filled, the four are stored in order, and the fifth is taken when sent again.
    const filled = await call(
      'POST',
      `/api/v1/worker/runs/${runId}/logs`,
      { workerId, firstSeq: 6, texts: ['w6\n'] },
      poolToken,
    );
    expect(filled.body).toEqual({ next: 7 });
    expect((await Promise.all(held)).map((a) => a.body)).toEqual([
      { next: 8 },
      { next: 9 },
      { next: 10 },
      { next: 11 },
    ]);
    expect(
      (
        await call(
          'POST',
          `/api/v1/worker/runs/${runId}/logs`,
          { workerId, firstSeq: 11, texts: ['w11\n'] },
          poolToken,
        )
      ).body,
    ).toEqual({ next: 12 });
    expect(
      (await call('POST', '/api/v1/worker/heartbeat', { workerId, runs: [runId] }, poolToken)).body,
    ).toEqual({ stop: [], drained: false });
    // A person cancels it while its job runs: the run is not ended under the job's feet (the
    // stack's next run would start beside it); the worker is asked to stop it.
    const canceled = await call('POST', `/api/v1/runs/${runId}/cancel`);
    expect(canceled.status).toBe(200);
    expect(canceled.body).toMatchObject({
      state: 'PERFORMING',
      stopRequested: { reason: expect.stringMatching(/^canceled by \S+$/) as unknown },
    });
    expect((await store.getRun(runId))?.leaseExpiresAt).not.toBeNull();
    // Asked again: the same, the first request kept.
    const again = await call('POST', `/api/v1/runs/${runId}/cancel`);
    expect(again.body).toMatchObject({
      state: 'PERFORMING',
      stopRequested: canceled.body.stopRequested,
    });
    // The next heartbeat tells the worker, and keeps the lease; the job's last output still lands.
    expect(
      (await call('POST', '/api/v1/worker/heartbeat', { workerId, runs: [runId] }, poolToken)).body,
    ).toEqual({ stop: [runId], drained: false });
    expect(
      (
        await call(
          'POST',
          `/api/v1/worker/runs/${runId}/logs`,
          { workerId, firstSeq: 12, texts: ['interrupted\n'] },
          poolToken,
        )
      ).body,
    ).toEqual({ next: 13 });
    // The worker says the job stopped: the run ends STOPPED, the cancel's reason first.
    const stoppedReport = await call(
      'POST',
      `/api/v1/worker/runs/${runId}/state`,
      { workerId, state: 'STOPPED', reason: 'stopped: canceled, ended by SIGINT' },
      poolToken,
    );
    expect(stoppedReport.body).toMatchObject({
      state: 'STOPPED',
      stateReason: `${(canceled.body.stopRequested as { reason: string }).reason}; worker ${workerId}: stopped: canceled, ended by SIGINT`,
    });
    // Ended, it is no longer leased: no lease sweep looks at it again.
    expect((await store.getRun(runId))?.leaseExpiresAt).toBeNull();
    expect(await store.expireLeases(new Date(Date.now() + 24 * 3_600_000))).toEqual([]);
    expect(
      (await call('POST', '/api/v1/worker/heartbeat', { workerId, runs: [runId] }, poolToken)).body,
    ).toEqual({ stop: [runId], drained: false });
    const late = await call(
      'POST',
      `/api/v1/worker/runs/${runId}/state`,
      { workerId, state: 'FINISHED' },
      poolToken,
    );
    expect(late.status).toBe(409);
    expect((await store.getRun(runId))?.state).toBe('STOPPED');
    // What the job says while its worker stops it still reaches the log, for a while.
    const stopping = (seq: number) =>
      call(
        'POST',
        `/api/v1/worker/runs/${runId}/logs`,
        { workerId, firstSeq: seq, texts: ['stopping\n'] },
        poolToken,
      );
    clock = new Date(clock.getTime() + 60_000);
    expect((await stopping(13)).body).toEqual({ next: 14 });
    clock = new Date(clock.getTime() + 100_000);
    const closed = await stopping(14);
    expect(closed.status).toBe(409);
    expect(closed.body).toMatchObject({
      code: 'RUN_CHANGED',
      message: `run ${runId} ended (STOPPED) 160 s ago; its log is closed`,
    });
    const logs = await call('GET', `/api/v1/runs/${runId}/logs`);
    expect((logs.body.chunks as { text: string }[]).map((c) => c.text).join('')).toBe(
      'hello\nworld\nagain\nand\n!\nw6\nw7\nw8\nw9\nw10\nw11\ninterrupted\nstopping\n',
    );
  });
});

describe("a public pool's allow-list", () => {
  it("refuses a stack whose runner image comes from a registry off the pool's allow-list, made or moved there, and its trigger once the list narrowed", async () => {
    expect((await call('POST', '/api/v1/pools', { id: 'open', kind: 'public' })).status).toBe(201);
    const offList = 'registry.internal.example:5000/team/runner:1';
    const refusedCreate = await call('POST', '/api/v1/stacks', {
      id: 'on-open',
      repository: 'https://git.example.com/on-open.git',
      runnerImage: offList,
      pool: 'open',
    });
    expect(refusedCreate.status).toBe(400);
    expect(refusedCreate.body.code).toBe('IMAGE_NOT_ALLOWED');
    expect(refusedCreate.body.message).toContain(
      "registry registry.internal.example:5000 is not on this public pool's allow-list",
    );
    expect(refusedCreate.body.hint).toContain('move the stack to a private pool');
    expect(await store.getStack('on-open')).toBeNull();
    // Made in a private pool, it may not move to the public one with that image.
    const created = await call('POST', '/api/v1/stacks', {
      id: 'on-open',
      repository: 'https://git.example.com/on-open.git',
      runnerImage: offList,
      pool: 'team-a',
    });
    expect(created.status).toBe(201);
    const moved = await call('PATCH', '/api/v1/stacks/on-open', { pool: 'open' });
    expect(moved.body.code).toBe('IMAGE_NOT_ALLOWED');
    expect((await store.getStack('on-open'))?.poolId).toBe('team-a');
    // An allow-listed registry is fine.
    const fine = await call('PATCH', '/api/v1/stacks/on-open', {
      pool: 'open',
      runnerImage: 'public.ecr.aws/team/runner:1',
    });
    expect(fine.status).toBe(200);
    // The pool's list narrows: other changes of the stack still go, its trigger is refused.
    expect(
      (await call('PATCH', '/api/v1/pools/open', { allowList: ['quay.io'] })).body,
    ).toMatchObject({ allowList: ['quay.io'] });
    expect((await call('PATCH', '/api/v1/stacks/on-open', { branch: 'release' })).status).toBe(200);
    const refused = await call('POST', '/api/v1/stacks/on-open/runs', { type: 'proposed' });
    expect(refused.status).toBe(400);
    expect(refused.body.code).toBe('IMAGE_NOT_ALLOWED');
    expect(refused.body.message).toContain(
      "registry public.ecr.aws is not on this public pool's allow-list",
    );
    expect((await call('GET', '/api/v1/runs?stack=on-open')).body.runs).toEqual([]);
    // A stack that does not exist (a typo) is not a stack without runs.
    expect(await call('GET', '/api/v1/runs?stack=on-opne')).toEqual({
      status: 404,
      body: { code: 'NOT_FOUND', message: 'stack on-opne does not exist' },
    });
    await call('PATCH', '/api/v1/pools/open', { allowList: [] });
    expect((await call('POST', '/api/v1/stacks/on-open/runs', { type: 'proposed' })).status).toBe(
      201,
    );
  });
});

describe("a public pool's default image", () => {
  it('must come from a registry on its own allow-list, at create and when either changes; a rename leaves it', async () => {
    const create = (defaultImage: string): ReturnType<typeof call> =>
      call('POST', '/api/v1/pools', {
        id: 'open-default',
        kind: 'public',
        allowList: ['quay.io'],
        defaultImage,
      });
    const refusedCreate = await create('ghcr.io/team/runner:1');
    expect(refusedCreate.status).toBe(400);
    expect(refusedCreate.body.code).toBe('IMAGE_NOT_ALLOWED');
    expect(refusedCreate.body.message).toContain(
      "public pool open-default's default image ghcr.io/team/runner:1 is refused by its own allow-list (registry ghcr.io is not on this public pool's allow-list",
    );
    // Nothing was made: the fix is the create again, not an update.
    expect(refusedCreate.body.hint).toContain(
      '`berth pool create open-default --kind public --allowed-registries LIST --default-image REF`',
    );
    expect(await store.getPool('open-default')).toBeNull();
    const created = await create('quay.io/team/runner:1');
    expect(created.status).toBe(201);
    // A narrower list that drops the default's registry, or a default from off the list: refused,
    // nothing changed.
    for (const patch of [{ allowList: ['ghcr.io'] }, { defaultImage: 'ghcr.io/team/runner:2' }]) {
      const refused = await call('PATCH', '/api/v1/pools/open-default', patch);
      expect(refused.status).toBe(400);
      expect(refused.body.code).toBe('IMAGE_NOT_ALLOWED');
    }
    expect(await store.getPool('open-default')).toMatchObject({
      allowList: ['quay.io'],
      defaultImage: 'quay.io/team/runner:1',
    });
    // Both at once are fine, as is a private pool's default from anywhere.
    const both = await call('PATCH', '/api/v1/pools/open-default', {
      allowList: ['ghcr.io'],
      defaultImage: 'ghcr.io/team/runner:2',
    });
    expect(both.status).toBe(200);
    // An ECR image on a listed registry: its account is each worker's to allow
    // (BERTH_PUBLIC_ECR_ACCOUNTS), not the server's to refuse.
    const ecr = '123456789012.dkr.ecr.eu-west-1.amazonaws.com';
    expect(
      (
        await call('POST', '/api/v1/pools', {
          id: 'open-ecr',
          kind: 'public',
          allowList: [ecr],
          defaultImage: `${ecr}/runner:1`,
        })
      ).status,
    ).toBe(201);
    // A pool stored before this rule, its default off its list: a rename is not refused for it.
    await store.updatePool('open-default', { allowList: ['quay.io'] });
    const renamed = await call('PATCH', '/api/v1/pools/open-default', { name: 'Open' });
    expect(renamed.status).toBe(200);
    expect(renamed.body).toMatchObject({ name: 'Open', defaultImage: 'ghcr.io/team/runner:2' });
    expect(
      (await call('PATCH', '/api/v1/pools/team-a', { defaultImage: 'example.org/any:1' })).status,
    ).toBe(200);
  });
});

describe('the stack list of one pool', () => {
  it('has only the stacks of the pool named by ?pool=, and none for a pool without stacks', async () => {
    for (const id of ['solo', 'empty'])
      expect((await call('POST', '/api/v1/pools', { id, kind: 'private' })).status).toBe(201);
    for (const [id, pool] of [
      ['in-a', 'solo'],
      ['also-in-a', 'solo'],
      ['elsewhere', 'team-a'],
    ])
      expect(
        (
          await call('POST', '/api/v1/stacks', {
            id,
            repository: `https://git.example.com/${id}.git`,
            pool,
          })
        ).status,
      ).toBe(201);
    const all = (await call('GET', '/api/v1/stacks')).body.stacks as { id: string }[];
    const ofA = (await call('GET', '/api/v1/stacks?pool=solo')).body.stacks as {
      id: string;
      pool: string;
    }[];
    expect(ofA.map((s) => s.id).sort()).toEqual(['also-in-a', 'in-a']);
    expect(ofA.every((s) => s.pool === 'solo')).toBe(true);
    expect(all.length).toBeGreaterThan(ofA.length);
    expect((await call('GET', '/api/v1/stacks?pool=empty')).body).toEqual({ stacks: [] });
    expect((await call('GET', '/api/v1/stacks?pool=..')).status).toBe(400);
    // A pool that does not exist (a typo) is not one without stacks.
    expect(await call('GET', '/api/v1/stacks?pool=sollo')).toEqual({
      status: 404,
      body: { code: 'NOT_FOUND', message: 'worker pool sollo does not exist' },
    });
  });
});

describe('browser sessions', () => {
  type Raw = Awaited<ReturnType<typeof app.inject>>;
  const signIn = (token: string, address = '127.0.0.1'): Promise<Raw> =>
    app.inject({
      method: 'POST',
      url: '/api/v1/session',
      remoteAddress: address,
      payload: { token },
    });
  const cookieOf = (res: Raw): string => {
    const value = /^berth_session=([^;]+)/.exec(String(res.headers['set-cookie']))?.[1];
    expect(value).toMatch(/^[A-Za-z0-9_-]{43}$/);
    return `berth_session=${value}`;
  };
  const withCookie = (
    method: 'GET' | 'POST' | 'DELETE',
    url: string,
    cookie: string,
    headers: Record<string, string> = {},
    payload?: Record<string, unknown>,
  ): Promise<Raw> =>
    app.inject({ method, url, headers: { cookie, ...headers }, ...(payload ? { payload } : {}) });

  it('signs in with a token for an HttpOnly, SameSite=Strict cookie whose value is stored hashed only', async () => {
    const res = await signIn(ADMIN);
    expect(res.statusCode).toBe(201);
    const setCookie = String(res.headers['set-cookie']);
    expect(setCookie).toMatch(/^berth_session=[A-Za-z0-9_-]{43}; Max-Age=43200; /);
    expect(setCookie.split('; ').slice(2)).toEqual(['Path=/', 'HttpOnly', 'SameSite=Strict']);
    const cookie = cookieOf(res);
    const body = JSON.parse(res.body) as { caller: unknown; csrfToken: string };
    expect(body.caller).toEqual({ kind: 'admin', id: 'admin' });
    const value = cookie.split('=')[1] as string;
    expect(body.csrfToken).not.toContain(value);
    expect(await store.findSession(value, clock)).toBeNull();
    expect(await store.findSession(hashToken(value), clock)).toMatchObject({ callerId: 'admin' });
    // The cookie alone reads the API, and tells the page its CSRF token again after a reload.
    expect((await withCookie('GET', '/api/v1/stacks', cookie)).statusCode).toBe(200);
    const session = await withCookie('GET', '/api/v1/session', cookie);
    expect(JSON.parse(session.body)).toMatchObject({ csrfToken: body.csrfToken });
  });

  it('marks the cookie Secure when the server is reached over TLS', () => {
    expect(sessionSetCookie('v', true).split('; ')).toContain('Secure');
    expect(sessionSetCookie('v', false).split('; ')).not.toContain('Secure');
  });

  it('refuses a change made with the cookie but without its CSRF token, or with a wrong one, and changes nothing', async () => {
    const signedIn = await signIn(ADMIN);
    const cookie = cookieOf(signedIn);
    const { csrfToken } = JSON.parse(signedIn.body) as { csrfToken: string };
    const pool = { id: 'csrf-pool', kind: 'private' };
    const missing = await withCookie('POST', '/api/v1/pools', cookie, {}, pool);
    expect(missing.statusCode).toBe(403);
    expect(JSON.parse(missing.body)).toMatchObject({ code: 'CSRF_TOKEN_MISSING' });
    // Another session's token is a wrong one.
    const other = JSON.parse((await signIn(ADMIN)).body) as { csrfToken: string };
    const wrong = await withCookie(
      'POST',
      '/api/v1/pools',
      cookie,
      { 'x-berth-csrf': other.csrfToken },
      pool,
    );
    expect(wrong.statusCode).toBe(403);
    expect(JSON.parse(wrong.body)).toMatchObject({ code: 'CSRF_TOKEN_INVALID' });
    expect(await store.getPool('csrf-pool')).toBeNull();
    const right = await withCookie(
      'POST',
      '/api/v1/pools',
      cookie,
      { 'x-berth-csrf': csrfToken },
      pool,
    );
    expect(right.statusCode).toBe(201);
    // A bearer token needs no CSRF token: no other site's page can send one.
    expect((await call('POST', '/api/v1/pools/csrf-pool/token')).status).toBe(200);
  });

  it('signs out: the session ends at once and the browser is told to forget the cookie', async () => {
    const signedIn = await signIn(ADMIN);
    const cookie = cookieOf(signedIn);
    const { csrfToken } = JSON.parse(signedIn.body) as { csrfToken: string };
    expect((await withCookie('DELETE', '/api/v1/session', cookie)).statusCode).toBe(403);
    const out = await withCookie('DELETE', '/api/v1/session', cookie, {
      'x-berth-csrf': csrfToken,
    });
    expect(out.statusCode).toBe(204);
    expect(String(out.headers['set-cookie'])).toMatch(
      /^berth_session=; Max-Age=0; Path=\/; HttpOnly/,
    );
    const after = await withCookie('GET', '/api/v1/stacks', cookie);
    expect(after.statusCode).toBe(401);
    expect(JSON.parse(after.body)).toMatchObject({
      code: 'UNAUTHENTICATED',
      message: expect.stringContaining('the session has ended') as unknown,
    });
    // A bearer caller has no session to end.
    expect((await call('DELETE', '/api/v1/session')).body.code).toBe('NO_SESSION');
  });

  it('ends a session after 12 hours, and refuses pool tokens and wrong tokens at sign-in', async () => {
    const cookie = cookieOf(await signIn(ADMIN));
    const start = clock;
    clock = new Date(start.getTime() + 12 * 3600_000);
    try {
      expect((await withCookie('GET', '/api/v1/stacks', cookie)).statusCode).toBe(401);
    } finally {
      clock = start;
    }
    const pool = await signIn(poolToken);
    expect(pool.statusCode).toBe(403);
    expect(pool.headers['set-cookie']).toBeUndefined();
    const wrong = await signIn('berth_api_wrong', '10.7.7.7');
    expect(wrong.statusCode).toBe(401);
    expect(JSON.parse(wrong.body)).toMatchObject({ code: 'UNAUTHENTICATED' });
    expect(wrong.headers['set-cookie']).toBeUndefined();
  });
});

describe('the web page', () => {
  let web: FastifyInstance;
  let root: string;

  beforeAll(async () => {
    root = mkdtempSync(path.join(tmpdir(), 'berth-web-'));
    mkdirSync(path.join(root, 'assets'));
    writeFileSync(path.join(root, 'index.html'), '<!doctype html><title>berth</title>');
    writeFileSync(path.join(root, 'assets', 'app-X1.js'), 'console.log(1)');
    web = await buildServer({
      store,
      secrets: SecretBox.fromKey(Buffer.alloc(32, 7)),
      adminTokenHash: hashToken(ADMIN),
      version: 'test',
      blobs: await BlobStore.open(path.join(root, 'blobs'), 1024),
      webRoot: root,
    });
  });
  afterAll(async () => {
    await web?.close();
    rmSync(root, { recursive: true, force: true });
  });

  it('is served under /ui/ with a strict Content-Security-Policy, and / leads there', async () => {
    const home = await web.inject({ method: 'GET', url: '/' });
    expect(home.statusCode).toBe(302);
    expect(home.headers.location).toBe('/ui/');
    // Any page path is the page itself: it routes in the browser.
    const page = await web.inject({ method: 'GET', url: '/ui/runs/01ABC' });
    expect(page.statusCode).toBe(200);
    expect(page.body).toBe('<!doctype html><title>berth</title>');
    expect(page.headers['content-type']).toBe('text/html; charset=utf-8');
    const policy = String(page.headers['content-security-policy']);
    expect(policy).toContain("default-src 'self'");
    expect(policy).toContain("script-src 'self'");
    expect(policy).not.toContain('unsafe-inline');
    expect(page.headers['x-content-type-options']).toBe('nosniff');
    expect(page.headers['x-frame-options']).toBe('DENY');
    expect(page.headers['referrer-policy']).toBe('no-referrer');
    const script = await web.inject({ method: 'GET', url: '/ui/assets/app-X1.js' });
    expect(script.headers['content-type']).toBe('text/javascript; charset=utf-8');
    expect(script.headers['cache-control']).toContain('immutable');
    expect((await web.inject({ method: 'GET', url: '/ui/assets/none.js' })).statusCode).toBe(404);
    // Nothing outside the built folder can be asked for.
    const escape = await web.inject({ method: 'GET', url: '/ui/assets/../../package.json' });
    expect(escape.body).not.toContain('"name"');
  });

  it('gives API answers a policy that lets nothing run', async () => {
    for (const url of ['/api/v1/health', '/%61pi/v1/health']) {
      const health = await web.inject({ method: 'GET', url });
      expect(health.statusCode, url).toBe(200);
      expect(health.headers['content-security-policy'], url).toBe(
        "default-src 'none'; frame-ancestors 'none'; sandbox",
      );
    }
  });
});

describe('plan → confirm → apply across workers', () => {
  let tokenA = '';
  let tokenB = '';
  let planner = '';
  let applier = '';
  let foreigner = '';
  const seal = {
    key: Buffer.alloc(32, 1).toString('base64'),
    iv: Buffer.alloc(12, 2).toString('base64'),
    tag: Buffer.alloc(16, 3).toString('base64'),
  };
  const blobFile = (runId: string): string => path.join(dir, 'blobs', `${runId}.workspace`);

  async function register(token: string): Promise<string> {
    return (
      await call(
        'POST',
        '/api/v1/worker/register',
        { host: 'h', berthVersion: '0', engineVersion: '0', concurrency: 1 },
        token,
      )
    ).body.workerId as string;
  }

  async function upload(runId: string, workerId: string, token: string, payload: Buffer) {
    const res = await app.inject({
      method: 'PUT',
      url: `/api/v1/worker/runs/${runId}/workspace?workerId=${workerId}`,
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/octet-stream' },
      payload,
    });
    return { status: res.statusCode, body: JSON.parse(res.body) as Record<string, unknown> };
  }

  async function download(runId: string, workerId: string, token: string) {
    return app.inject({
      method: 'GET',
      url: `/api/v1/worker/runs/${runId}/workspace?workerId=${workerId}`,
      headers: { authorization: `Bearer ${token}` },
    });
  }

  const report = (runId: string, workerId: string, body: Record<string, unknown>) =>
    call('POST', `/api/v1/worker/runs/${runId}/state`, { workerId, ...body }, tokenA);

  /** A tracked run of `plan-stack` planned by `planner`, now UNCONFIRMED with its blob stored. */
  async function planned(content: Buffer): Promise<string> {
    const run = await call('POST', '/api/v1/stacks/plan-stack/runs', { type: 'tracked' });
    const runId = run.body.id as string;
    const leased = await call('POST', '/api/v1/worker/lease', { workerId: planner }, tokenA);
    expect(leased.body.run).toMatchObject({ id: runId, state: 'PREPARING' });
    expect(leased.body.resume).toBeUndefined();
    expect((await report(runId, planner, { state: 'INITIALIZING', started: true })).status).toBe(
      200,
    );
    expect((await report(runId, planner, { state: 'PLANNING' })).status).toBe(200);
    // UNCONFIRMED before the workspace is there: refused with its own code.
    const early = await report(runId, planner, { state: 'UNCONFIRMED', workspace: seal });
    expect(early.status).toBe(409);
    expect(early.body.code).toBe('WORKSPACE_MISSING');
    expect((await upload(runId, planner, tokenA, content)).body).toEqual({
      bytes: content.length,
    });
    const noSeal = await report(runId, planner, { state: 'UNCONFIRMED' });
    expect(noSeal.status).toBe(400);
    expect(noSeal.body.code).toBe('WORKSPACE_SEAL_MISSING');
    const waiting = await report(runId, planner, {
      state: 'UNCONFIRMED',
      workspace: seal,
      plan: { add: 1, change: 0, destroy: 0, replace: 0 },
      image: { reference: 'busybox', digest: null, source: 'present', id: 'sha256:abc' },
    });
    expect(waiting.body).toMatchObject({ state: 'UNCONFIRMED', plan: { add: 1 } });
    // The seal is kept sealed with the server's key, never as given, and never shown.
    const stored = await store.getRun(runId);
    expect(stored?.workspaceSeal).not.toContain(seal.key);
    expect(JSON.stringify(waiting.body)).not.toContain(seal.key);
    expect(readFileSync(blobFile(runId))).toEqual(content);
    // Its part done, the planner may not add to or rewrite the log a person now reviews.
    for (const [route, body] of [
      ['logs', { firstSeq: 1, texts: ['added later\n'] }],
      ['masks', { values: ['plan'] }],
    ] as const) {
      const late = await call(
        'POST',
        `/api/v1/worker/runs/${runId}/${route}`,
        { workerId: planner, ...body },
        tokenA,
      );
      expect(late.status).toBe(409);
      expect(late.body).toMatchObject({
        code: 'RUN_CHANGED',
        message: `run ${runId} is UNCONFIRMED: worker ${planner} no longer holds it, and its log is closed to it`,
      });
    }
    return runId;
  }

  beforeAll(async () => {
    tokenA = (await call('POST', '/api/v1/pools', { id: 'plan-a', kind: 'private' })).body
      .token as string;
    tokenB = (await call('POST', '/api/v1/pools', { id: 'plan-b', kind: 'private' })).body
      .token as string;
    expect(
      (await call('POST', '/api/v1/stacks', { id: 'plan-stack', localDir: dir, pool: 'plan-a' }))
        .status,
    ).toBe(201);
    planner = await register(tokenA);
    applier = await register(tokenA);
    foreigner = await register(tokenB);
  });

  it('keeps the workspace while the plan waits, hands it to the apply of the same pool only, and deletes it at the end', async () => {
    const content = Buffer.from('sealed workspace bytes');
    const runId = await planned(content);
    // The stack's lock holds while the plan waits: the next tracked run queues behind it.
    const next = await call('POST', '/api/v1/stacks/plan-stack/runs', { type: 'tracked' });
    expect(next.body.state).toBe('QUEUED');
    // Nobody may download a workspace before the apply is leased.
    const tooSoon = await download(runId, planner, tokenA);
    expect(tooSoon.statusCode).toBe(409);
    expect((JSON.parse(tooSoon.body) as { code: string }).code).toBe('RUN_TRANSITION_INVALID');
    expect((await call('POST', `/api/v1/runs/${runId}/confirm`)).body.state).toBe('CONFIRMED');
    const again = await call('POST', `/api/v1/runs/${runId}/confirm`);
    expect(again.status).toBe(409);
    expect(again.body.code).toBe('RUN_TRANSITION_INVALID');
    const lateDiscard = await call('POST', `/api/v1/runs/${runId}/discard`);
    expect(lateDiscard.status).toBe(409);
    expect(lateDiscard.body.code).toBe('RUN_TRANSITION_INVALID');
    // Another pool's worker never gets it.
    expect(
      (await call('POST', '/api/v1/worker/lease', { workerId: foreigner }, tokenB)).status,
    ).toBe(204);
    const leased = await call('POST', '/api/v1/worker/lease', { workerId: applier }, tokenA);
    expect(leased.body.run).toMatchObject({ id: runId, state: 'PREPARING_APPLY' });
    expect(leased.body.resume).toEqual({ seal, imageId: 'sha256:abc' });
    const foreign = await download(runId, foreigner, tokenB);
    expect(foreign.statusCode).toBe(404);
    expect((JSON.parse(foreign.body) as { code: string }).code).toBe('NOT_FOUND');
    const notHolder = await download(runId, planner, tokenA);
    expect(notHolder.statusCode).toBe(409);
    expect((JSON.parse(notHolder.body) as { code: string }).code).toBe('RUN_CHANGED');
    const got = await download(runId, applier, tokenA);
    expect(got.statusCode).toBe(200);
    expect(got.rawPayload).toEqual(content);
    // No upload over a plan that is no longer being made.
    const overwrite = await upload(runId, applier, tokenA, Buffer.from('other'));
    expect(overwrite.status).toBe(409);
    expect(overwrite.body.code).toBe('RUN_TRANSITION_INVALID');
    expect((await report(runId, applier, { state: 'APPLYING', started: true })).status).toBe(200);
    expect((await report(runId, applier, { state: 'FINISHED' })).body.state).toBe('FINISHED');
    expect(existsSync(blobFile(runId))).toBe(false);
    // The lock passed on; that run ends here.
    expect((await call('GET', `/api/v1/runs/${next.body.id as string}`)).body.state).toBe('READY');
    await call('POST', `/api/v1/runs/${next.body.id as string}/cancel`);
  });

  it.each(['discard', 'cancel'] as const)(
    '%s at UNCONFIRMED ends the run DISCARDED and deletes its workspace',
    async (decision) => {
      const runId = await planned(Buffer.from(`to ${decision}`));
      const ended = await call('POST', `/api/v1/runs/${runId}/${decision}`);
      expect(ended.body.state).toBe('DISCARDED');
      expect(existsSync(blobFile(runId))).toBe(false);
      const afterwards = await call('POST', `/api/v1/runs/${runId}/confirm`);
      expect(afterwards.status).toBe(409);
      expect(afterwards.body.code).toBe('RUN_TRANSITION_INVALID');
      // Ended by a person long after the planner's part: its log does not open to it again.
      const late = await call(
        'POST',
        `/api/v1/worker/runs/${runId}/logs`,
        { workerId: planner, firstSeq: 1, texts: ['added later\n'] },
        tokenA,
      );
      expect(late.body).toMatchObject({
        code: 'RUN_CHANGED',
        message: `run ${runId} ended (DISCARDED) after worker ${planner}'s part was done; its log is closed to it`,
      });
    },
  );

  it('ends a confirmed apply whose saved workspace is gone from the blob store FAILED, saying where it looked and why it may be elsewhere', async () => {
    const runId = await planned(Buffer.from('to lose'));
    expect((await call('POST', `/api/v1/runs/${runId}/confirm`)).body.state).toBe('CONFIRMED');
    // As when a second server on the database keeps its blobs in a directory of its own.
    rmSync(blobFile(runId));
    expect((await call('POST', '/api/v1/worker/lease', { workerId: applier }, tokenA)).status).toBe(
      204,
    );
    const ended = await call('GET', `/api/v1/runs/${runId}`);
    expect(ended.body.state).toBe('FAILED');
    expect(ended.body.stateReason).toBe(
      `the saved workspace of the plan is missing from the server's blob store (${path.join(dir, 'blobs')}); nothing was applied: trigger the run again (several servers on one database must share one blob directory, BERTH_BLOB_DIR)`,
    );
  });

  it('ends a confirmed apply whose seal this server cannot open (another key) FAILED, naming the seal', async () => {
    const runId = await planned(Buffer.from('sealed elsewhere'));
    expect((await call('POST', `/api/v1/runs/${runId}/confirm`)).body.state).toBe('CONFIRMED');
    // A second server on the same database and blobs, with a key of its own.
    const other = await serverOn(SecretBox.fromKey(Buffer.alloc(32, 9)));
    try {
      const leased = await other.inject({
        method: 'POST',
        url: '/api/v1/worker/lease',
        headers: { authorization: `Bearer ${tokenA}` },
        payload: { workerId: applier },
      });
      expect(leased.statusCode).toBe(204);
    } finally {
      await other.close();
    }
    expect((await call('GET', `/api/v1/runs/${runId}`)).body).toMatchObject({
      state: 'FAILED',
      stateReason: `the seal of run ${runId}'s saved workspace cannot be opened with this server's secrets key: it was sealed with another key [BERTH_SECRETS_KEY_MISMATCH]`,
    });
    expect(existsSync(blobFile(runId))).toBe(false);
  });

  it('refuses a workspace over the limit and keeps nothing of it', async () => {
    const run = await call('POST', '/api/v1/stacks/plan-stack/runs', { type: 'tracked' });
    const runId = run.body.id as string;
    await call('POST', '/api/v1/worker/lease', { workerId: planner }, tokenA);
    await report(runId, planner, { state: 'INITIALIZING', started: true });
    await report(runId, planner, { state: 'PLANNING' });
    const big = await upload(runId, planner, tokenA, Buffer.alloc(1024 * 1024 + 1));
    expect(big.status).toBe(413);
    expect(big.body.code).toBe('WORKSPACE_TOO_LARGE');
    expect(readdirSync(path.join(dir, 'blobs'))).toEqual([]);
    // A proposed run keeps no workspace.
    const proposed = await call('POST', '/api/v1/stacks/plan-stack/runs', { type: 'proposed' });
    await call('POST', '/api/v1/worker/lease', { workerId: applier }, tokenA);
    const refused = await upload(proposed.body.id as string, applier, tokenA, Buffer.from('x'));
    expect(refused.status).toBe(409);
    expect(refused.body.code).toBe('RUN_TRANSITION_INVALID');
    // Canceled while their workers hold them: ended once the workers say the jobs stopped (the
    // plan's had started, the proposed run's had not).
    for (const [id, worker, end] of [
      [runId, planner, 'STOPPED'],
      [proposed.body.id as string, applier, 'CANCELED'],
    ] as const) {
      expect((await call('POST', `/api/v1/runs/${id}/cancel`)).body.stopRequested).toMatchObject({
        reason: expect.stringMatching(/^canceled by /) as unknown,
      });
      expect((await report(id, worker, { state: end })).body.state).toBe(end);
    }
  });

  it("keeps the stack's lock while a canceled run's job is being stopped, and passes it on once the worker says it stopped", async () => {
    const run = await call('POST', '/api/v1/stacks/plan-stack/runs', { type: 'tracked' });
    const runId = run.body.id as string;
    await call('POST', '/api/v1/worker/lease', { workerId: planner }, tokenA);
    await report(runId, planner, { state: 'INITIALIZING', started: true });
    const next = await call('POST', '/api/v1/stacks/plan-stack/runs', { type: 'tracked' });
    const nextId = next.body.id as string;
    expect(next.body.state).toBe('QUEUED');
    const canceled = await call('POST', `/api/v1/runs/${runId}/cancel`);
    expect(canceled.body).toMatchObject({
      state: 'INITIALIZING',
      stopRequested: { reason: expect.stringMatching(/^canceled by /) as unknown },
    });
    // Shown as stopping wherever the run is read, and to the worker in every report's answer.
    expect((await call('GET', `/api/v1/runs/${runId}`)).body.stopRequested).toEqual(
      canceled.body.stopRequested,
    );
    const planning = await report(runId, planner, { state: 'PLANNING' });
    expect(planning.body).toMatchObject({
      state: 'PLANNING',
      stopRequested: { reason: expect.any(String) as unknown },
    });
    // The job may still be running: the next tracked run waits, no worker gets it.
    expect((await call('GET', `/api/v1/runs/${nextId}`)).body.state).toBe('QUEUED');
    expect((await call('POST', '/api/v1/worker/lease', { workerId: applier }, tokenA)).status).toBe(
      204,
    );
    const stopped = await report(runId, planner, {
      state: 'STOPPED',
      reason: 'stopped: canceled, ended by SIGINT',
    });
    expect(stopped.body).toMatchObject({
      state: 'STOPPED',
      stateReason: `${(canceled.body.stopRequested as { reason: string }).reason}; worker ${planner}: stopped: canceled, ended by SIGINT`,
    });
    expect((await call('GET', `/api/v1/runs/${nextId}`)).body.state).toBe('READY');
    expect(await call('POST', `/api/v1/runs/${nextId}/cancel`)).toMatchObject({
      body: { state: 'CANCELED' },
    });
  });

  it('records a stop as the state machine tells CANCELED from STOPPED, and a second cancel after the lease and grace ends a run its worker never stopped', async () => {
    // Reported STOPPED (the worker's container had started) before any job state: CANCELED.
    const early = await call('POST', '/api/v1/stacks/plan-stack/runs', { type: 'proposed' });
    const earlyId = early.body.id as string;
    await call('POST', '/api/v1/worker/lease', { workerId: planner }, tokenA);
    await call('POST', `/api/v1/runs/${earlyId}/cancel`);
    const reported = await report(earlyId, planner, {
      state: 'STOPPED',
      reason: 'stopped: canceled, ended by SIGINT',
    });
    expect(reported.body).toMatchObject({
      state: 'CANCELED',
      stateReason: expect.stringMatching(
        new RegExp(`^canceled by \\S+; worker ${planner}: stopped: canceled, ended by SIGINT$`),
      ) as unknown,
    });
    // Its answer lost, the same report again is taken as done.
    expect((await report(earlyId, planner, { state: 'STOPPED', reason: 'again' })).body.state).toBe(
      'CANCELED',
    );
    // A worker that heartbeats but never stops the run (stuck before its job).
    const stuck = await call('POST', '/api/v1/stacks/plan-stack/runs', { type: 'proposed' });
    const stuckId = stuck.body.id as string;
    await call('POST', '/api/v1/worker/lease', { workerId: applier }, tokenA);
    const asked = await call('POST', `/api/v1/runs/${stuckId}/cancel`);
    expect(asked.body).toMatchObject({ state: 'PREPARING' });
    clock = new Date(clock.getTime() + 60_000);
    expect((await call('POST', `/api/v1/runs/${stuckId}/cancel`)).body).toMatchObject({
      state: 'PREPARING',
      stopRequested: asked.body.stopRequested,
    });
    clock = new Date(clock.getTime() + 31_000);
    const forced = await call('POST', `/api/v1/runs/${stuckId}/cancel`);
    expect(forced.body).toMatchObject({
      state: 'CANCELED',
      stateReason: expect.stringMatching(
        new RegExp(
          `^canceled by \\S+, and again by \\S+ 91 s later: worker ${applier} had not started its job nor said that it stopped the run$`,
        ),
      ) as unknown,
    });
    expect((await store.getRun(stuckId))?.leaseExpiresAt).toBeNull();
    // A job that may be running is never ended that way: it would run beside the next one.
    const running = await call('POST', '/api/v1/stacks/plan-stack/runs', { type: 'proposed' });
    const runningId = running.body.id as string;
    await call('POST', '/api/v1/worker/lease', { workerId: applier }, tokenA);
    await report(runningId, applier, { state: 'INITIALIZING', started: true });
    await call('POST', `/api/v1/runs/${runningId}/cancel`);
    clock = new Date(clock.getTime() + 3_600_000);
    expect((await call('POST', `/api/v1/runs/${runningId}/cancel`)).body).toMatchObject({
      state: 'INITIALIZING',
      stopRequested: { reason: expect.stringMatching(/^canceled by /) as unknown },
    });
    expect((await report(runningId, applier, { state: 'STOPPED' })).body.state).toBe('STOPPED');
  });

  it('discards a plan that its worker reports just after the cancel, and deletes its workspace', async () => {
    const run = await call('POST', '/api/v1/stacks/plan-stack/runs', { type: 'tracked' });
    const runId = run.body.id as string;
    await call('POST', '/api/v1/worker/lease', { workerId: planner }, tokenA);
    await report(runId, planner, { state: 'INITIALIZING', started: true });
    await report(runId, planner, { state: 'PLANNING' });
    expect((await call('POST', `/api/v1/runs/${runId}/cancel`)).body.state).toBe('PLANNING');
    expect((await upload(runId, planner, tokenA, Buffer.from('plan'))).status).toBe(200);
    const waiting = await report(runId, planner, { state: 'UNCONFIRMED', workspace: seal });
    expect(waiting.body).toMatchObject({
      state: 'DISCARDED',
      stateReason: expect.stringMatching(
        /^canceled by \S+; its plan was done before the worker heard, and is discarded$/,
      ) as unknown,
    });
    expect(existsSync(blobFile(runId))).toBe(false);
    expect((await call('POST', `/api/v1/runs/${runId}/confirm`)).status).toBe(409);
  });

  it('ends a canceled run whose worker goes silent as the cancel meant at the lease end, never back in the queue', async () => {
    const preparing = await call('POST', '/api/v1/stacks/plan-stack/runs', { type: 'proposed' });
    const preparingId = preparing.body.id as string;
    await call('POST', '/api/v1/worker/lease', { workerId: planner }, tokenA);
    const running = await call('POST', '/api/v1/stacks/plan-stack/runs', { type: 'proposed' });
    const runningId = running.body.id as string;
    await call('POST', '/api/v1/worker/lease', { workerId: applier }, tokenA);
    await report(runningId, applier, { state: 'INITIALIZING', started: true });
    for (const id of [preparingId, runningId])
      expect((await call('POST', `/api/v1/runs/${id}/cancel`)).body.stopRequested).not.toBeNull();
    const expired = await store.expireLeases(new Date(clock.getTime() + 24 * 3_600_000));
    const ended = (id: string) => expired.find((r) => r.id === id);
    // No container had started: without the cancel it would go back to the queue; with it, it ends.
    expect(ended(preparingId)).toMatchObject({ state: 'CANCELED', leaseExpiresAt: null });
    expect(ended(runningId)).toMatchObject({ state: 'STOPPED', leaseExpiresAt: null });
    expect(ended(runningId)?.stateReason).toMatch(
      new RegExp(
        `^canceled by \\S+; worker ${applier} did not say that the run stopped before its lease expired at \\S+: whether its job ran on is unknown$`,
      ),
    );
    expect((await call('POST', '/api/v1/worker/lease', { workerId: planner }, tokenA)).status).toBe(
      204,
    );
  });
});
