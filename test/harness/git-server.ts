/**
 * Real git servers on loopback for the tests: Debian's `git http-backend` behind a small Node
 * HTTPS server with Basic authentication (the token style of the forges, with a test CA), and
 * OpenSSH's sshd on its own port with its own configuration (deploy keys). Repositories are bare
 * repositories in a temporary directory; commits are made with git's plumbing.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import { createServer as createNetServer, connect } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { issueCertificate, makeCa } from './certs.js';
import { tempDir } from './ownership.js';

const GIT_ID = ['-c', 'user.name=berth test', '-c', 'user.email=test@berth.invalid'];

/** A bare repository `NAME.git` under `root`; returns its path. */
export function createRepository(root: string, name: string): string {
  const dir = path.join(root, `${name}.git`);
  execFileSync('git', ['init', '--quiet', '--bare', '--initial-branch=main', dir]);
  return dir;
}

/** Commits `files` (path → content, null deletes) on `branch` of a bare repository; the new sha. */
export function commitFiles(
  bare: string,
  files: Record<string, string | null>,
  message = 'change',
  branch = 'main',
): string {
  const work = mkdtempSync(path.join(tmpdir(), 'berth-git-work-'));
  const index = path.join(work, '.index');
  const env = { ...process.env, GIT_INDEX_FILE: index, GIT_DIR: bare, GIT_WORK_TREE: work };
  const git = (args: string[]): string =>
    execFileSync('git', [...GIT_ID, ...args], { env, encoding: 'utf8' }).trim();
  try {
    const parent = (() => {
      try {
        return git(['rev-parse', '--verify', '--quiet', `refs/heads/${branch}`]);
      } catch {
        return null;
      }
    })();
    if (parent) git(['read-tree', parent]);
    for (const [file, content] of Object.entries(files)) {
      if (content === null) {
        git(['rm', '--cached', '--quiet', '--', file]);
        continue;
      }
      mkdirSync(path.dirname(path.join(work, file)), { recursive: true });
      writeFileSync(path.join(work, file), content);
      git(['add', '--', file]);
    }
    const tree = git(['write-tree']);
    const commit = git(['commit-tree', tree, '-m', message, ...(parent ? ['-p', parent] : [])]);
    git(['update-ref', `refs/heads/${branch}`, commit]);
    return commit;
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

export interface GitRequest {
  method: string;
  path: string;
  user: string | null;
  status: number;
  /** Never answered (the server's `hold` said so): a stalled server. */
  held?: true;
}

export interface GitHttpServer {
  /** `https://127.0.0.1:PORT/` */
  url: string;
  root: string;
  /** The test CA's certificate (PEM file): the worker's BERTH_GIT_CA_FILE. */
  caFile: string;
  /** Every request, in order (the fetch log). */
  requests: GitRequest[];
  close(): Promise<void>;
}

/**
 * `git http-backend` (CGI) behind HTTPS with Basic authentication: `users` maps a user name to
 * its token; a request without them, or with a wrong one, gets 401 as from a forge. While
 * `hold()` is true, requests get no answer at all (a stalled server) until the server closes.
 */
export async function startGitHttpServer(
  users: Record<string, string>,
  options: { hold?: () => boolean } = {},
): Promise<GitHttpServer> {
  const root = tempDir('berth-git-root-');
  const ca = makeCa(tempDir('berth-git-ca-'), 'berth git test CA');
  const cert = issueCertificate(ca, 'git server', { server: 'IP:127.0.0.1' });
  const requests: GitRequest[] = [];
  const server: Server = createServer(
    { cert: readFileSync(cert.cert), key: readFileSync(cert.key) },
    (req, res) => {
      const url = new URL(req.url ?? '/', 'https://127.0.0.1');
      const [scheme, encoded] = (req.headers.authorization ?? '').split(' ');
      const [user, ...rest] = Buffer.from(encoded ?? '', 'base64')
        .toString()
        .split(':');
      const ok = scheme === 'Basic' && user !== undefined && users[user] === rest.join(':');
      const record: GitRequest = {
        method: req.method ?? '',
        path: url.pathname,
        user: ok ? user : null,
        status: 0,
      };
      requests.push(record);
      if (options.hold?.()) {
        record.held = true;
        req.resume();
        return;
      }
      if (!ok) {
        record.status = 401;
        res.writeHead(401, { 'www-authenticate': 'Basic realm="git"' }).end();
        req.resume();
        return;
      }
      const cgi = spawn('git', ['http-backend'], {
        env: {
          PATH: process.env.PATH,
          GIT_PROJECT_ROOT: root,
          GIT_HTTP_EXPORT_ALL: '1',
          PATH_INFO: decodeURIComponent(url.pathname),
          QUERY_STRING: url.search.slice(1),
          REQUEST_METHOD: req.method ?? 'GET',
          CONTENT_TYPE: req.headers['content-type'] ?? '',
          REMOTE_USER: user,
          REMOTE_ADDR: '127.0.0.1',
          ...(req.headers['git-protocol']
            ? { GIT_PROTOCOL: String(req.headers['git-protocol']) }
            : {}),
          ...(req.headers['content-encoding']
            ? { HTTP_CONTENT_ENCODING: String(req.headers['content-encoding']) }
            : {}),
        },
        stdio: ['pipe', 'pipe', 'ignore'],
      });
      req.pipe(cgi.stdin);
      let head = Buffer.alloc(0);
      let headersDone = false;
      cgi.stdout.on('data', (chunk: Buffer) => {
        if (headersDone) {
          res.write(chunk);
          return;
        }
        head = Buffer.concat([head, chunk]);
        const end = head.indexOf('\r\n\r\n');
        if (end < 0) return;
        headersDone = true;
        let status = 200;
        for (const line of head.subarray(0, end).toString().split('\r\n')) {
          const colon = line.indexOf(':');
          const name = line.slice(0, colon).trim();
          const value = line.slice(colon + 1).trim();
          if (name.toLowerCase() === 'status') status = Number(value.split(' ')[0]);
          else res.setHeader(name, value);
        }
        record.status = status;
        res.writeHead(status);
        res.write(head.subarray(end + 4));
      });
      cgi.on('close', () => res.end());
    },
  );
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  return {
    url: `https://127.0.0.1:${port}/`,
    root,
    caFile: ca.cert,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

export interface SshGitServer {
  /** `ssh://root@127.0.0.1:PORT` + the repository's absolute path. */
  urlOf(repository: string): string;
  root: string;
  /** The server's host key as a known_hosts line (`[127.0.0.1]:PORT ssh-ed25519 …`). */
  knownHosts: string;
  /** A deploy key the server accepts (OpenSSH private key text). */
  deployKey: string;
  close(): Promise<void>;
}

/** A fresh ed25519 key pair: [private key text, public key line]. */
export function makeSshKey(dir: string, name: string): [string, string] {
  const file = path.join(dir, name);
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', name, '-f', file]);
  return [readFileSync(file, 'utf8'), readFileSync(`${file}.pub`, 'utf8').trim()];
}

async function freePort(): Promise<number> {
  const probe = createNetServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const port = (probe.address() as { port: number }).port;
  await new Promise((resolve) => probe.close(resolve));
  return port;
}

/**
 * OpenSSH's sshd (Debian's openssh-server, installed by .ci/run) on a loopback port with a
 * configuration of its own in a temporary directory: one host key, one authorized deploy key,
 * nothing of the machine's own sshd setup.
 */
export async function startSshGitServer(): Promise<SshGitServer> {
  const dir = tempDir('berth-sshd-');
  const root = path.join(dir, 'repositories');
  mkdirSync(root);
  const [, hostPublic] = makeSshKey(dir, 'host_key');
  const [deployKey, deployPublic] = makeSshKey(dir, 'deploy_key');
  writeFileSync(path.join(dir, 'authorized_keys'), `${deployPublic}\n`, { mode: 0o600 });
  // sshd's privilege separation directory (the package's service would make it).
  mkdirSync('/run/sshd', { recursive: true, mode: 0o755 });
  const port = await freePort();
  const config = path.join(dir, 'sshd_config');
  writeFileSync(
    config,
    [
      `Port ${port}`,
      'ListenAddress 127.0.0.1',
      `HostKey ${path.join(dir, 'host_key')}`,
      `AuthorizedKeysFile ${path.join(dir, 'authorized_keys')}`,
      `PidFile ${path.join(dir, 'sshd.pid')}`,
      'PasswordAuthentication no',
      'KbdInteractiveAuthentication no',
      'PubkeyAuthentication yes',
      'PermitRootLogin prohibit-password',
      'StrictModes no',
      'UsePAM no',
      'AllowAgentForwarding no',
      'AllowTcpForwarding no',
      'X11Forwarding no',
      'LogLevel ERROR',
      '',
    ].join('\n'),
  );
  const sshd: ChildProcess = spawn('/usr/sbin/sshd', ['-D', '-e', '-f', config], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let said = '';
  sshd.stderr?.on('data', (chunk: Buffer) => (said += chunk.toString()));
  const exited = new Promise((resolve) => sshd.on('exit', resolve));
  // Ready once the port accepts a connection.
  for (let attempt = 0; ; attempt += 1) {
    const open = await new Promise<boolean>((resolve) => {
      const socket = connect(port, '127.0.0.1');
      socket.on('connect', () => {
        socket.destroy();
        resolve(true);
      });
      socket.on('error', () => resolve(false));
    });
    if (open) break;
    if (sshd.exitCode !== null || attempt > 200) throw new Error(`sshd did not start: ${said}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  const [type, key] = hostPublic.split(' ');
  return {
    urlOf: (repository) => `ssh://root@127.0.0.1:${port}${repository}`,
    root,
    knownHosts: `[127.0.0.1]:${port} ${type} ${key}`,
    deployKey,
    close: async () => {
      if (sshd.exitCode === null) {
        sshd.kill('SIGTERM');
        await exited;
      }
    },
  };
}
