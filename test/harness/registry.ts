/**
 * A real OCI registry (Debian's docker-registry) on a loopback port, started by the tests and
 * stopped after them. The engine treats 127.0.0.0/8 registries as plain-HTTP, so no TLS is needed.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';

export const REGISTRY_BINARY = '/usr/bin/docker-registry';
const HTPASSWD_BINARY = '/usr/bin/htpasswd';

/**
 * Every registry the tests start is recorded here with the test process that owns it, so a run
 * that was killed (and could not stop its services) is cleaned up by the next one. Only
 * processes recorded here, whose owner is gone, are ever stopped.
 */
export const OUTER_TMPDIR_ENV = 'BERTH_TEST_OUTER_TMPDIR';
// Outside the run's own temp dir (ownership.ts): the records must outlive a killed run.
const records = (): string =>
  path.join(process.env[OUTER_TMPDIR_ENV] ?? tmpdir(), 'berth-test-services');

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Stops registries left by test runs that died; returns how many. */
export function reapStaleRegistries(): number {
  let reaped = 0;
  let names: string[];
  try {
    names = readdirSync(records());
  } catch {
    return 0;
  }
  for (const name of names) {
    const file = path.join(records(), name);
    try {
      const record = JSON.parse(readFileSync(file, 'utf8')) as { pid: number; owner: number };
      if (alive(record.owner)) continue;
      const command = readFileSync(`/proc/${record.pid}/cmdline`, 'utf8');
      if (alive(record.pid) && command.includes('docker-registry')) {
        process.kill(record.pid, 'SIGTERM');
        reaped += 1;
      }
    } catch {
      // Gone already, or not ours to judge.
    }
    rmSync(file, { force: true });
  }
  return reaped;
}

export interface RunningRegistry {
  address: string;
  stop(): Promise<void>;
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

export interface RegistryOptions {
  /** Require this user (htpasswd, bcrypt), as a private registry does. */
  user?: { name: string; password: string };
  /** Serve TLS with this certificate and key (PEM files). */
  tls?: { certificate: string; key: string };
  /** Listen here instead of a free loopback port. */
  address?: string;
  /** Token authentication through this issuer (see token-issuer.ts) instead of htpasswd. */
  token?: { realm: string; service: string; issuer: string; rootCertBundle: string };
}

/** A bcrypt htpasswd line made by Debian's htpasswd (apache2-utils). */
function htpasswdLine(name: string, password: string): string {
  if (!existsSync(HTPASSWD_BINARY)) {
    throw new Error(
      'the tests need htpasswd for the private registry: apt-get install -y apache2-utils (or run sudo bash .ci/run)',
    );
  }
  return execFileSync(HTPASSWD_BINARY, ['-nbB', name, password], { encoding: 'utf8' }).trim();
}

function canConnect(address: string): Promise<boolean> {
  const colon = address.lastIndexOf(':');
  return new Promise((resolve) => {
    const socket = net.connect(Number(address.slice(colon + 1)), address.slice(0, colon));
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

export async function startRegistry(options: RegistryOptions = {}): Promise<RunningRegistry> {
  if (!existsSync(REGISTRY_BINARY)) {
    throw new Error(
      `the tests need a local registry: install it with \`apt-get install -y docker-registry\` (or run \`sudo bash .ci/run\`)`,
    );
  }
  const dir = await mkdtemp(path.join(tmpdir(), 'berth-registry-'));
  const address = options.address ?? `127.0.0.1:${await freePort()}`;
  const config = path.join(dir, 'config.yml');
  const auth: string[] = [];
  if (options.user) {
    await writeFile(
      path.join(dir, 'htpasswd'),
      `${htpasswdLine(options.user.name, options.user.password)}\n`,
    );
    auth.push(
      'auth:',
      '  htpasswd:',
      '    realm: berth-test',
      `    path: ${path.join(dir, 'htpasswd')}`,
    );
  }
  if (options.token) {
    auth.push(
      'auth:',
      '  token:',
      `    realm: ${options.token.realm}`,
      `    service: ${options.token.service}`,
      `    issuer: ${options.token.issuer}`,
      `    rootcertbundle: ${options.token.rootCertBundle}`,
    );
  }
  const tls = options.tls
    ? ['  tls:', `    certificate: ${options.tls.certificate}`, `    key: ${options.tls.key}`]
    : [];
  await writeFile(
    config,
    [
      'version: 0.1',
      'log:',
      '  level: error',
      'storage:',
      '  filesystem:',
      `    rootdirectory: ${path.join(dir, 'data')}`,
      '  delete:',
      '    enabled: true',
      ...auth,
      'http:',
      `  addr: ${address}`,
      ...tls,
      '',
    ].join('\n'),
  );
  const child: ChildProcess = spawn(REGISTRY_BINARY, ['serve', config], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  mkdirSync(records(), { recursive: true });
  const record = path.join(records(), `${child.pid}.json`);
  writeFileSync(record, JSON.stringify({ pid: child.pid, owner: process.pid }));
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const base = `${options.tls ? 'https' : 'http'}://${address}`;
  const deadline = Date.now() + 15_000;
  for (;;) {
    try {
      if (options.tls) {
        // Its certificate names another host: a TCP connection is proof enough here.
        if (await canConnect(address)) break;
      } else {
        // Any HTTP answer (200, or 401 with auth) means it is serving.
        const res = await fetch(`${base}/v2/`);
        if (res.status === 200 || res.status === 401) break;
      }
    } catch {
      // Not listening yet.
    }
    if (child.exitCode !== null || Date.now() > deadline) {
      child.kill('SIGKILL');
      rmSync(record, { force: true });
      throw new Error(`docker-registry did not start on ${address}: ${stderr}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return {
    address,
    async stop() {
      if (child.exitCode === null) {
        const exited = new Promise((resolve) => child.once('exit', resolve));
        child.kill('SIGTERM');
        await exited;
      }
      await rm(dir, { recursive: true, force: true });
      rmSync(record, { force: true });
    },
  };
}
