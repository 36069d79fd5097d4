/**
 * API tokens end to end, with a real `berth server` process on SQLite and the real command line:
 * `berth token create|list|revoke` (a token per person, shown once, revoked at once, what a user
 * token may not do, the refusals with their codes), and `berth server --new-admin-token` for a
 * lost admin token (the old one refused after, the new one works; a revoked one is made again).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnServer, type ServerProcess } from './harness/berth-server.js';
import { runBerth, type BerthResult } from './harness/cli.js';
import { tempDir } from './harness/ownership.js';

let dataDir = '';
let server: ServerProcess;
let admin = '';

/** The command line against the server, as the holder of `token` (no saved login). */
function berth(token: string, args: string[]): Promise<BerthResult> {
  return runBerth(args, {
    BERTH_SERVER: server.url,
    BERTH_TOKEN: token,
    XDG_CONFIG_HOME: tempDir('berth-config-'),
  });
}

interface Listed {
  id: string;
  name: string;
  role: string;
  createdAt: string;
}

async function listed(token: string): Promise<Listed[]> {
  const list = await berth(token, ['token', 'list', '--json']);
  expect(list.code, list.stderr).toBe(0);
  return JSON.parse(list.stdout) as Listed[];
}

/** The token `--new-admin-token` made this start print (once). */
function printedAdminToken(): string {
  const printed = /new admin token \(shown once, keep it; the old one no longer works\): (\S+)/;
  return printed.exec(server.stderr())?.[1] as string;
}

/** Stops the server and starts it again on the same data directory with `args`. */
async function restart(args: string[] = []): Promise<void> {
  await server.stop();
  server = await spawnServer(['--data-dir', dataDir, ...args]);
}

beforeAll(async () => {
  dataDir = tempDir('berth-tokens-');
  server = await spawnServer(['--data-dir', dataDir]);
  admin = server.admin as string;
  expect(admin).toMatch(/^berth_admin_/);
}, 60_000);

afterAll(async () => {
  await server?.stop();
});

describe('berth token', () => {
  it('creates a token shown once, lists tokens without secrets, and revokes one at once', async () => {
    const created = await berth(admin, ['token', 'create', 'ci-bot']);
    expect(created.code, created.stderr).toBe(0);
    const [head, once, token] = created.stdout.trim().split('\n');
    expect(head).toMatch(/^token [0-9a-z]{26} "ci-bot" \(role user\)$/);
    expect(once).toContain('shown this once');
    expect(token).toMatch(/^berth_user_[A-Za-z0-9_-]{32}$/);
    const id = /^token (\S+)/.exec(head as string)?.[1] as string;

    const human = await berth(admin, ['token', 'list']);
    expect(human.code, human.stderr).toBe(0);
    expect(human.stdout).toMatch(new RegExp(`^${id} {2}user {3}ci-bot {2}created `, 'm'));
    expect(human.stdout).toMatch(/^admin {2}admin {2}admin {2}created /m);
    expect(human.stdout).not.toContain(token);
    const tokens = await listed(admin);
    expect(tokens.map((t) => [t.id, t.name, t.role])).toEqual([
      ['admin', 'admin', 'admin'],
      [id, 'ci-bot', 'user'],
    ]);
    expect(JSON.stringify(tokens)).not.toContain('berth_');

    // The user token reads, but administers nothing.
    const pools = await berth(token as string, ['pool', 'list', '--json']);
    expect(pools.code, pools.stderr).toBe(0);
    for (const args of [
      ['token', 'list'],
      ['token', 'create', 'more', '--role', 'admin'],
      ['pool', 'create', 'mine', '--kind', 'private'],
    ]) {
      const refused = await berth(token as string, args);
      expect(refused.code, args.join(' ')).toBe(2);
      expect(refused.stderr).toContain('BERTH_SERVER_REFUSED');
      expect(refused.stderr).toContain('[FORBIDDEN]');
    }

    // The id in capitals (as run and worker ids are written) is the same token.
    const revoked = await berth(admin, ['token', 'revoke', id.toUpperCase()]);
    expect(revoked.code, revoked.stderr).toBe(0);
    expect(revoked.stdout).toBe(`token ${id} revoked: it no longer works\n`);
    const after = await berth(token as string, ['pool', 'list']);
    expect(after.code).toBe(2);
    expect(after.stderr).toContain('the token is not valid [UNAUTHENTICATED]');
    expect((await listed(admin)).map((t) => t.id)).toEqual(['admin']);
  });

  it('creates an admin token with --json, and says what was refused and the fix', async () => {
    const created = await berth(admin, ['token', 'create', 'ops', '--role', 'admin', '--json']);
    expect(created.code, created.stderr).toBe(0);
    const body = JSON.parse(created.stdout) as { apiToken: Listed; token: string };
    expect(body.apiToken).toMatchObject({ name: 'ops', role: 'admin' });
    expect(body.token).toMatch(/^berth_admin_/);
    expect((await berth(body.token, ['token', 'list'])).code).toBe(0);

    // Each refused with exit code 2 and every text given (the code, the value, the fix).
    const refusals: [string[], string[]][] = [
      [
        ['token', 'create', 'x', '--role', 'root'],
        ['BERTH_USAGE', '--role root'],
      ],
      [
        ['token', 'create', 'a\u0007bell'],
        ['BERTH_SERVER_REFUSED', '[BAD_REQUEST]'],
      ],
      [
        ['token', 'revoke', 'no-such-token'],
        ['no token has the id or the name "no-such-token" [BERTH_USAGE]', '`berth token list`'],
      ],
      [
        ['token', 'create', 'ops'],
        [`a token named "ops" exists already (id ${body.apiToken.id}) [TOKEN_NAME_TAKEN]`],
      ],
      [
        ['token', 'revoke', 'admin'],
        ['[TOKEN_IN_USE]', 'another admin token'],
      ],
    ];
    for (const [args, texts] of refusals) {
      const refused = await berth(admin, args);
      expect(refused.code, args.join(' ')).toBe(2);
      for (const text of texts) expect(refused.stderr).toContain(text);
    }
    // ops may revoke admin; then ops is the last admin token, which admin (gone) cannot touch
    // and ops may not revoke itself.
    const byOps = await berth(body.token, ['token', 'revoke', 'admin', '--json']);
    expect(byOps.code, byOps.stderr).toBe(0);
    expect(JSON.parse(byOps.stdout)).toEqual({ id: 'admin', revoked: true });
    expect((await berth(body.token, ['token', 'revoke', body.apiToken.id])).stderr).toContain(
      '[TOKEN_IN_USE]',
    );
    expect((await listed(body.token)).map((t) => t.name)).toEqual(['ops']);
    // A token is revoked by its name too, when one token has it.
    const alice = await berth(body.token, ['token', 'create', 'alice', '--json']);
    const aliceId = (JSON.parse(alice.stdout) as { apiToken: Listed }).apiToken.id;
    const byName = await berth(body.token, ['token', 'revoke', 'alice']);
    expect(byName.code, byName.stderr).toBe(0);
    expect(byName.stdout).toBe(`token ${aliceId} revoked: it no longer works\n`);
    expect((await listed(body.token)).map((t) => t.name)).toEqual(['ops']);
  });
});

describe('berth server --new-admin-token', () => {
  it("makes the revoked token 'admin' again, then replaces it: the old token is refused, the new works", async () => {
    // The earlier test revoked 'admin': the flag makes it again.
    await restart(['--new-admin-token']);
    const remade = printedAdminToken();
    expect(remade).toMatch(/^berth_admin_/);
    expect(server.admin).toBeNull();
    expect((await listed(remade)).map((t) => t.id)).toContain('admin');

    await restart(['--new-admin-token']);
    const renewed = printedAdminToken();
    expect(renewed).toMatch(/^berth_admin_/);
    expect(renewed).not.toBe(remade);
    const old = await berth(remade, ['token', 'list']);
    expect(old.code).toBe(2);
    expect(old.stderr).toContain('[UNAUTHENTICATED]');
    expect((await listed(renewed)).map((t) => t.name).sort()).toEqual(['admin', 'ops']);
    expect((await berth(admin, ['pool', 'list'])).stderr).toContain('[UNAUTHENTICATED]');

    // Without the flag, a start says no token at all.
    await restart();
    expect(server.stderr()).not.toContain('admin token');
    expect((await listed(renewed)).length).toBe(2);
  }, 180_000);
});
