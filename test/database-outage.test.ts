/**
 * `berth server` and its PostgreSQL database when the database is not there: a start against a
 * database it cannot use is refused with the URL (no password) and a fix, not reported as a bug;
 * while serving, a connection PostgreSQL drops does not end the process, an outage is answered
 * 503 with a stable code, and the server goes on once the database is back. On a real private
 * cluster (test/harness/postgres.ts), stopped and started again by the test.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runBerth } from './harness/cli.js';
import { apiClient, startServerProcess, type ServerProcess } from './harness/berth-server.js';
import { tempDir } from './harness/ownership.js';
import { until } from './harness/until.js';
import { startPostgres, type RunningPostgres } from './harness/postgres.js';

let postgres: RunningPostgres;
const servers: ServerProcess[] = [];

beforeAll(() => {
  postgres = startPostgres();
  postgres.createDatabase('outage');
}, 120_000);

afterAll(async () => {
  for (const server of servers.splice(0)) await server.stop();
  postgres?.stop();
});

describe('berth server without its database', () => {
  it('refuses to start against a database it cannot reach or that does not exist, saying which and how to fix it', async () => {
    const refused = await runBerth(
      ['server', '--listen', '127.0.0.1:0', '--data-dir', tempDir('berth-server-')],
      { BERTH_DATABASE_URL: 'postgres://berth:hunter2@127.0.0.1:1/berth' },
    );
    expect(refused.code).toBe(4);
    expect(refused.stderr).toContain('BERTH_DATABASE_UNAVAILABLE');
    expect(refused.stderr).toContain(
      'berth server cannot use the database at postgres://berth:*****@127.0.0.1:1/berth: connect ECONNREFUSED 127.0.0.1:1',
    );
    expect(refused.stderr).toContain('fix: Check that PostgreSQL runs');
    expect(refused.stderr).not.toContain('hunter2');
    expect(refused.stderr).not.toMatch(/^\s+at /m);

    const missing = await runBerth(
      ['server', '--listen', '127.0.0.1:0', '--data-dir', tempDir('berth-server-')],
      { BERTH_DATABASE_URL: postgres.url('nosuchdb') },
    );
    expect(missing.code).toBe(4);
    expect(missing.stderr).toContain('database "nosuchdb" does not exist');
    expect(missing.stderr).toContain('[BERTH_DATABASE_UNAVAILABLE]');
    expect(missing.stderr).toContain('fix: Create the database');
    expect(missing.stderr).not.toContain('admin token');
  });

  it('survives PostgreSQL dropping its connections and being stopped, answers 503 meanwhile, and goes on once it is back', async () => {
    const server = await startServerProcess(tempDir('berth-server-'), {
      BERTH_DATABASE_URL: postgres.url('outage'),
    });
    servers.push(server);
    const { api } = apiClient(() => server.url, server.admin as string);
    expect((await api('POST', '/pools', { id: 'before', kind: 'private' })).status).toBe(201);
    // Every connection of the server's pool dropped by the database (an administrator, a proxy's
    // idle timeout): the process lives on, says so, and opens new ones.
    postgres.sql(
      "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = 'outage' AND pid <> pg_backend_pid()",
    );
    await until(
      () => server.stderr().includes('lost an idle connection to the database'),
      'the server says it lost a connection',
    );
    expect(server.child.exitCode).toBeNull();
    // The database ends its backends one by one: a request may still meet one on its way out
    // (503), until every connection of the pool is a new one.
    await until(
      async () => (await api('GET', '/pools')).status === 200,
      'the server answers on new connections',
    );
    expect(server.child.exitCode).toBeNull();

    postgres.halt();
    try {
      const down = await api<{ code: string; message: string }>('GET', '/pools');
      expect(down.status).toBe(503);
      expect(down.body.code).toBe('DATABASE_UNAVAILABLE');
      expect(down.body.message).toBe(
        'the berth server cannot use its database now (unreachable); nothing was changed',
      );
      // Where the database is stays in the operator's log, not in an answer to any caller.
      expect(JSON.stringify(down.body)).not.toMatch(/PGSQL|berth-postgres-|ECONNREFUSED|ENOENT/);
      expect(server.stderr()).toContain('failed: the database cannot be used now (');
      expect(server.child.exitCode).toBeNull();
      // The command line: a server's own trouble, worth another try (exit 4), not a usage error.
      const listed = await runBerth(['pool', 'list'], {
        BERTH_SERVER: server.url,
        BERTH_TOKEN: server.admin as string,
      });
      expect(listed.code).toBe(4);
      expect(listed.stderr).toContain('BERTH_SERVER_UNAVAILABLE');
      expect(listed.stderr).toContain(
        'the berth server cannot use its database now (unreachable); nothing was changed [DATABASE_UNAVAILABLE] [BERTH_SERVER_UNAVAILABLE]',
      );
      expect(listed.stderr).toContain('fix: Try again shortly');
    } finally {
      postgres.resume();
    }
    await until(
      async () => (await api('GET', '/pools')).status === 200,
      'the server answers again',
    );
    const pools = (await api<{ pools: { id: string }[] }>('GET', '/pools')).body.pools;
    expect(pools.map((p) => p.id)).toContain('before');
    expect(server.stderr()).not.toMatch(/Unhandled 'error' event/);
  });
});
