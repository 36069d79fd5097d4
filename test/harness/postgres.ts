/**
 * A private PostgreSQL cluster for the tests: initdb into a temporary directory, listening only on
 * a Unix socket in that directory (no TCP, never the machine's default cluster), stopped and
 * removed by `stop`. Debian's server binaries are found on PATH or under /usr/lib/postgresql.
 * PostgreSQL refuses to run as root, so as root the cluster runs as the `postgres` user.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, readdirSync, realpathSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

export interface RunningPostgres {
  /** A connection URL for database `name` (created by createDatabase). */
  url(name: string): string;
  createDatabase(name: string): void;
  /** Runs SQL as the cluster's superuser (in database `postgres`). */
  sql(text: string): void;
  /** Stops the cluster, keeping its data (`resume` starts it again on the same port). */
  halt(): void;
  resume(): void;
  stop(): void;
}

function findBinaries(): string {
  const onPath = spawnSync('sh', ['-c', 'command -v initdb'], { encoding: 'utf8' }).stdout.trim();
  // Debian links only some programs onto PATH; the rest (psql) sit beside the real initdb.
  if (onPath) return path.dirname(realpathSync(onPath));
  const root = '/usr/lib/postgresql';
  const versions = existsSync(root) ? readdirSync(root).sort() : [];
  const newest = versions.at(-1);
  if (newest && existsSync(path.join(root, newest, 'bin', 'initdb')))
    return path.join(root, newest, 'bin');
  throw new Error(
    'the store tests need PostgreSQL server binaries (initdb, pg_ctl): install them with `apt-get install -y postgresql` (or run `sudo bash .ci/run`, which does)',
  );
}

export function startPostgres(): RunningPostgres {
  const bin = findBinaries();
  const dir = mkdtempSync(path.join(tmpdir(), 'berth-postgres-'));
  const asRoot = process.getuid?.() === 0;
  if (asRoot) {
    const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim());
    const gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim());
    chownSync(dir, uid, gid);
  }
  const run = (command: string, args: string[]): string => {
    const [file, argv] = asRoot
      ? ['runuser', ['-u', 'postgres', '--', path.join(bin, command), ...args]]
      : [path.join(bin, command), args];
    return execFileSync(file, argv, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  };
  const data = path.join(dir, 'data');
  const port = 20000 + Math.floor(Math.random() * 20000);
  const user = asRoot ? 'postgres' : (process.env.USER ?? 'postgres');
  run('initdb', ['-D', data, '-A', 'trust', '-U', user, '--no-sync', '-E', 'UTF8']);
  const start = (): void => {
    run('pg_ctl', [
      '-D',
      data,
      '-l',
      path.join(dir, 'server.log'),
      '-w',
      '-o',
      `-k ${dir} -p ${port} -c listen_addresses= -c fsync=off -c full_page_writes=off -c max_connections=200`,
      'start',
    ]);
  };
  start();
  const psql = (sqlText: string): void => {
    run('psql', [
      '-h',
      dir,
      '-p',
      String(port),
      '-U',
      user,
      '-d',
      'postgres',
      '-v',
      'ON_ERROR_STOP=1',
      '-c',
      sqlText,
    ]);
  };
  return {
    url: (name) =>
      `postgres://${user}@localhost/${name}?host=${encodeURIComponent(dir)}&port=${port}`,
    createDatabase: (name) => psql(`CREATE DATABASE "${name}"`),
    sql: psql,
    halt: () => {
      run('pg_ctl', ['-D', data, '-m', 'fast', '-w', 'stop']);
    },
    resume: start,
    stop: () => {
      try {
        run('pg_ctl', ['-D', data, '-m', 'immediate', '-w', 'stop']);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  };
}
