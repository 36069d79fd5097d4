/**
 * The worker's repository cache and git credentials against real git servers on loopback:
 * `git http-backend` behind HTTPS with Basic authentication (token), and OpenSSH's sshd (deploy
 * key, pinned host key). Each failure gets its catalogue code; the cache fetches only what is
 * new, survives concurrent checkouts, takes over a dead owner's lock and re-clones when damaged.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BerthError } from '../src/domain/errors.js';
import type { GitCredentials } from '../src/domain/git-source.js';
import { currentLauncherId, isLauncherAlive } from '../src/launcher/launcher-identity.js';
import { openGitAccess } from '../src/git/git-command.js';
import type { AssignmentBody } from '../src/worker/protocol.js';
import { prepareSource } from '../src/worker/source.js';
import { RepositoryCache, type CheckoutRequest } from '../src/worker/repository-cache.js';
import {
  commitFiles,
  createRepository,
  makeSshKey,
  startGitHttpServer,
  startSshGitServer,
  type GitHttpServer,
  type SshGitServer,
} from './harness/git-server.js';
import { tempDir } from './harness/ownership.js';
import { until } from './harness/until.js';

const TOKEN = 'tok-7f3a9c2e51';
let http: GitHttpServer;
let ssh: SshGitServer;
let first = '';
let privateRepo = '';
/** While true, the HTTPS git server answers nothing (a stalled server). */
let holding = false;

beforeAll(async () => {
  http = await startGitHttpServer({ deploy: TOKEN }, { hold: () => holding });
  privateRepo = createRepository(http.root, 'infra');
  first = commitFiles(privateRepo, { 'main.tf': 'one\n', 'envs/dev/x.tf': 'dev\n' });
  ssh = await startSshGitServer();
});

afterAll(async () => {
  await http?.close();
  await ssh?.close();
});

function cache(dir = tempDir('berth-repos-')): RepositoryCache {
  return new RepositoryCache({
    dir,
    checkoutsDir: tempDir('berth-checkouts-'),
    owner: currentLauncherId(),
    isOwnerAlive: isLauncherAlive,
    env: { ...process.env, BERTH_GIT_CA_FILE: http.caFile },
    lockWaitMs: 60_000,
  });
}

function request(overrides: Partial<CheckoutRequest> = {}): CheckoutRequest {
  return {
    repository: `${http.url}infra.git`,
    branch: 'main',
    commit: null,
    credentials: { kind: 'token', username: 'deploy', token: TOKEN },
    allowFileTransport: false,
    into: path.join(tempDir('berth-co-'), 'source'),
    ...overrides,
  };
}

async function failure(promise: Promise<unknown>): Promise<BerthError> {
  const err = await promise.then(
    () => null,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(BerthError);
  return err as BerthError;
}

/** Objects in a bare repository: loose ones and packed ones (git count-objects -v). */
function objects(repo: string): { loose: number; packed: number } {
  const out = execFileSync('git', ['--git-dir', repo, 'count-objects', '-v'], { encoding: 'utf8' });
  const field = (name: string): number =>
    Number(new RegExp(`^${name}: (\\d+)`, 'm').exec(out)?.[1]);
  return { loose: field('count'), packed: field('in-pack') };
}

describe('git over HTTPS with a token', () => {
  it('checks the commit out of a cache that fetches only what is new on the next run', async () => {
    const repos = cache();
    const one = request({ commit: first });
    const done = await repos.checkout(one);
    expect(done).toEqual({ commit: first, warnings: [] });
    expect(readFileSync(path.join(one.into, 'envs/dev/x.tf'), 'utf8')).toBe('dev\n');
    // The job gets the files, not a repository.
    expect(existsSync(path.join(one.into, '.git'))).toBe(false);
    const cached = repos.pathOf(one.repository);
    expect(path.basename(cached)).toMatch(/^[0-9a-f]{40}\.git$/);
    const before = objects(cached);
    // first commit: 2 blobs, 3 trees (root, envs, envs/dev), 1 commit.
    expect(before.loose + before.packed).toBe(6);

    const second = commitFiles(privateRepo, { 'main.tf': 'two\n' });
    const two = request({ commit: second });
    expect((await repos.checkout(two)).commit).toBe(second);
    expect(readFileSync(path.join(two.into, 'main.tf'), 'utf8')).toBe('two\n');
    // Only the new commit, its root tree and the changed file came over.
    const after = objects(cached);
    expect(after.loose + after.packed - (before.loose + before.packed)).toBe(3);
    expect(readdirSync(path.dirname(cached)).filter((f) => f.endsWith('.lock'))).toEqual([]);
  });

  it('takes the branch head when the run has no commit, and an older commit that is no head', async () => {
    const repos = cache();
    const head = execFileSync('git', ['--git-dir', privateRepo, 'rev-parse', 'main'], {
      encoding: 'utf8',
    }).trim();
    expect((await repos.checkout(request())).commit).toBe(head);
    const old = request({ commit: first });
    expect((await repos.checkout(old)).commit).toBe(first);
    expect(readFileSync(path.join(old.into, 'main.tf'), 'utf8')).toBe('one\n');
  });

  it('BERTH_GIT_AUTH_FAILED: a wrong token, or none, even when the cache already has the commit', async () => {
    const repos = cache();
    await repos.checkout(request({ commit: first }));
    const wrong = await failure(
      repos.checkout(
        request({
          commit: first,
          credentials: { kind: 'token', username: 'deploy', token: 'not-the-token' },
        }),
      ),
    );
    expect(wrong.code).toBe('BERTH_GIT_AUTH_FAILED');
    expect(wrong.message).toContain(`${http.url}infra.git refused the stack's BERTH_GIT_TOKEN`);
    expect(wrong.hint).toContain('BERTH_GIT_TOKEN');
    expect(wrong.message).not.toContain('not-the-token');
    const none = await failure(repos.checkout(request({ credentials: { kind: 'none' } })));
    expect(none.code).toBe('BERTH_GIT_AUTH_FAILED');
    expect(none.message).toContain('asked for credentials and the stack has none');
  });

  it('BERTH_GIT_REPOSITORY_NOT_FOUND and BERTH_GIT_COMMIT_NOT_FOUND name the value', async () => {
    const repos = cache();
    const missing = await failure(
      repos.checkout(request({ repository: `${http.url}nothing-here.git` })),
    );
    expect(missing.code).toBe('BERTH_GIT_REPOSITORY_NOT_FOUND');
    expect(missing.message).toContain(`${http.url}nothing-here.git`);
    const sha = 'f'.repeat(40);
    const commit = await failure(repos.checkout(request({ commit: sha })));
    expect(commit.code).toBe('BERTH_GIT_COMMIT_NOT_FOUND');
    expect(commit.message).toContain(sha);
    const branch = await failure(repos.checkout(request({ branch: 'no-such-branch' })));
    expect(branch.code).toBe('BERTH_GIT_COMMIT_NOT_FOUND');
    expect(branch.message).toContain('no-such-branch');
  });

  it('never puts the token on a command line or in the cache', async () => {
    const credentials: GitCredentials = { kind: 'token', username: 'deploy', token: TOKEN };
    const access = await openGitAccess(`${http.url}infra.git`, credentials, { env: process.env });
    // git's options are its command line; the token goes through git's environment only, as a
    // header scoped to the repository's host.
    expect(access.options.join(' ')).not.toContain(TOKEN);
    expect(access.env.GIT_CONFIG_KEY_0).toBe(`http.${http.url}.extraHeader`);
    await access.close();
    const repos = cache();
    const one = request();
    await repos.checkout(one);
    const grep = spawnSync('grep', ['-r', '-l', TOKEN, repos.pathOf(one.repository), one.into]);
    expect(grep.status).toBe(1);
    expect(grep.stdout.toString()).toBe('');
  });

  it('serialises concurrent checkouts of one repository, across caches sharing a directory', async () => {
    const dir = tempDir('berth-repos-');
    const [a, b] = [cache(dir), cache(dir)];
    const requests = [request(), request({ commit: first }), request(), request({ commit: first })];
    const results = await Promise.all(requests.map((r, i) => (i % 2 ? a : b).checkout(r)));
    expect(results[1]?.commit).toBe(first);
    for (const r of requests) expect(existsSync(path.join(r.into, 'main.tf'))).toBe(true);
    expect(readdirSync(dir).filter((f) => f.endsWith('.lock'))).toEqual([]);
  });

  it("takes over a lock whose owner is gone, and waits for a live owner's", async () => {
    const repos = cache();
    const one = request();
    const lock = `${repos.pathOf(one.repository)}.lock`;
    await repos.checkout(request());
    writeFileSync(lock, 'local/nowhere-host-that-is-this/999999999/1');
    // Another host's lock counts as alive: only the owner of this machine can be judged.
    const stale = new RepositoryCache({
      dir: path.dirname(lock),
      checkoutsDir: tempDir('berth-checkouts-'),
      owner: currentLauncherId(),
      isOwnerAlive: (owner) => owner !== 'local/nowhere-host-that-is-this/999999999/1',
      env: { ...process.env, BERTH_GIT_CA_FILE: http.caFile },
    });
    await stale.checkout(one);
    expect(existsSync(lock)).toBe(false);
    // An empty lock (berth links a lock into place only once written: left by something else).
    writeFileSync(lock, '');
    await stale.checkout(request());
    expect(existsSync(lock)).toBe(false);
    writeFileSync(lock, currentLauncherId());
    const blocked = new RepositoryCache({
      dir: path.dirname(lock),
      checkoutsDir: tempDir('berth-checkouts-'),
      owner: currentLauncherId(),
      isOwnerAlive: () => true,
      env: { ...process.env, BERTH_GIT_CA_FILE: http.caFile },
      lockWaitMs: 300,
    });
    const waited = await failure(blocked.checkout(request()));
    expect(waited.code).toBe('BERTH_GIT_FAILED');
    expect(waited.message).toContain('stayed locked');
    rmSync(lock);
  });

  it('stops a checkout under way, and one waiting for its turn, when their signal aborts: git and its helpers ended, the lock given back', async () => {
    const repos = cache();
    const repository = `${http.url}infra.git`;
    // git's helper for HTTPS (git-remote-https) has the repository's URL on its command line.
    const helpers = (): string[] =>
      readdirSync('/proc')
        .filter((pid) => /^\d+$/.test(pid))
        .map((pid) => {
          try {
            return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ');
          } catch {
            return '';
          }
        })
        .filter((line) => line.includes('remote-https') && line.includes(repository));
    holding = true;
    try {
      const running = new AbortController();
      const waiting = new AbortController();
      const ahead = repos.checkout(request({ signal: running.signal }));
      const behind = repos.checkout(request({ signal: waiting.signal }));
      await until(() => http.requests.some((r) => r.held), 'git reaches the stalled server');
      await until(() => helpers().length > 0, "git's HTTPS helper runs");
      // The checkout waiting for its turn ends now, not once the one ahead of it is done.
      const queued = new Error('stopped while waiting for its turn');
      waiting.abort(queued);
      await expect(behind).rejects.toBe(queued);
      const stopped = new Error('stopped during the fetch');
      running.abort(stopped);
      await expect(ahead).rejects.toBe(stopped);
      expect(helpers()).toEqual([]);
      expect(existsSync(`${repos.pathOf(repository)}.lock`)).toBe(false);
    } finally {
      holding = false;
    }
    // Nothing of the stopped fetch is in the way: the next checkout of the repository works.
    expect((await repos.checkout(request({ commit: first }))).commit).toBe(first);
  });

  it('removes a damaged cache, clones again and says so', async () => {
    const repos = cache();
    const one = request({ commit: first });
    await repos.checkout(one);
    const cached = repos.pathOf(one.repository);
    // Damage every object file of the cache (loose and packed).
    const damage = (dir: string): void => {
      for (const entry of readdirSync(dir)) {
        const file = path.join(dir, entry);
        if (statSync(file).isDirectory()) damage(file);
        else if (/objects\/(pack\/.*\.pack|[0-9a-f]{2}\/)/.test(file)) {
          rmSync(file, { force: true });
          writeFileSync(file, 'garbage');
        }
      }
    };
    damage(path.join(cached, 'objects'));
    const again = request({ commit: first });
    const result = await repos.checkout(again);
    expect(result.commit).toBe(first);
    expect(result.warnings).toHaveLength(1);
    expect(result.warnings[0]).toMatch(
      new RegExp(
        `^the worker's cache of ${http.url}infra\\.git was damaged \\(git: .+\\); it was removed and the repository cloned again$`,
      ),
    );
    expect(readFileSync(path.join(again.into, 'main.tf'), 'utf8')).toBe('one\n');
  });

  it('checks out a branch named under a deleted one (release, then release/1.0) from the same cache', async () => {
    const repo = createRepository(http.root, 'renamed-branches');
    const before = commitFiles(repo, { 'a.tf': 'release\n' }, 'release', 'release');
    const repos = cache();
    const repository = `${http.url}renamed-branches.git`;
    expect((await repos.checkout(request({ repository, branch: 'release' }))).commit).toBe(before);
    // The repository moves on: release is gone, release/1.0 (a name under it) is made.
    execFileSync('git', ['--git-dir', repo, 'update-ref', '-d', 'refs/heads/release']);
    const after = commitFiles(repo, { 'a.tf': 'release/1.0\n' }, 'release/1.0', 'release/1.0');
    const next = request({ repository, branch: 'release/1.0' });
    const result = await repos.checkout(next);
    expect(result).toEqual({ commit: after, warnings: [] });
    expect(readFileSync(path.join(next.into, 'a.tf'), 'utf8')).toBe('release/1.0\n');
  });

  it("takes a ref's lock file left in the cache (by a git that was killed) as damage: cloned again", async () => {
    const repo = createRepository(http.root, 'left-lock');
    commitFiles(repo, { 'a.tf': 'one\n' });
    const repos = cache();
    const repository = `${http.url}left-lock.git`;
    await repos.checkout(request({ repository }));
    const ref = path.join('refs', 'berth', 'branches', Buffer.from('main').toString('hex'));
    writeFileSync(path.join(repos.pathOf(repository), `${ref}.lock`), '');
    // A new commit: the fetch must move the branch, which takes the ref's lock.
    const second = commitFiles(repo, { 'a.tf': 'two\n' });
    const again = request({ repository });
    const result = await repos.checkout(again);
    expect(result.commit).toBe(second);
    expect(result.warnings).toHaveLength(1);
    expect(result.warnings[0]).toMatch(
      new RegExp(`was damaged \\(git: .*${ref}\\.lock': File exists.*\\); it was removed`),
    );
    expect(readFileSync(path.join(again.into, 'a.tf'), 'utf8')).toBe('two\n');
  });
});

describe('git over SSH with a deploy key', () => {
  let url = '';
  let sshFirst = '';
  const key = (
    overrides: Partial<Extract<GitCredentials, { kind: 'ssh-key' }>> = {},
  ): GitCredentials => ({
    kind: 'ssh-key',
    privateKey: ssh.deployKey,
    knownHosts: ssh.knownHosts,
    ...overrides,
  });

  beforeAll(() => {
    const repo = createRepository(ssh.root, 'infra');
    sshFirst = commitFiles(repo, { 'main.tf': 'over ssh\n' });
    url = ssh.urlOf(repo);
  });

  it('checks out with the deploy key and the pinned host key, and leaves no key file behind', async () => {
    const before = readdirSync(tmpdir()).filter((f) => f.startsWith('berth-git-ssh-'));
    const one = request({ repository: url, credentials: key() });
    expect((await cache().checkout(one)).commit).toBe(sshFirst);
    expect(readFileSync(path.join(one.into, 'main.tf'), 'utf8')).toBe('over ssh\n');
    const after = readdirSync(tmpdir()).filter((f) => f.startsWith('berth-git-ssh-'));
    expect(after).toEqual(before);
  });

  it('keeps the key in a 0600 file of a 0700 directory only while git runs, never on its command line', async () => {
    const access = await openGitAccess(url, key(), { env: process.env });
    const keyFile = /IdentityFile='([^']+)'/.exec(access.env.GIT_SSH_COMMAND ?? '')?.[1] as string;
    expect(statSync(keyFile).mode & 0o777).toBe(0o600);
    expect(statSync(path.dirname(keyFile)).mode & 0o777).toBe(0o700);
    expect(readFileSync(keyFile, 'utf8')).toBe(ssh.deployKey);
    expect(access.options.join(' ') + access.env.GIT_SSH_COMMAND).not.toContain('PRIVATE KEY');
    await access.close();
    expect(existsSync(path.dirname(keyFile))).toBe(false);
  });

  it("gives the cache's lock back when the key cannot be set up", async () => {
    const dir = tempDir('berth-repos-');
    const repos = new RepositoryCache({
      dir,
      checkoutsDir: tempDir('berth-checkouts-'),
      owner: currentLauncherId(),
      isOwnerAlive: isLauncherAlive,
      env: process.env,
      lockWaitMs: 2_000,
    });
    const first = request({ repository: url, credentials: key() });
    const saved = process.env.TMPDIR;
    // The key's directory cannot be made: a temporary directory that does not exist.
    process.env.TMPDIR = path.join(dir, 'no-such-directory');
    try {
      await expect(repos.checkout(first)).rejects.toThrow(/no-such-directory/);
    } finally {
      if (saved === undefined) delete process.env.TMPDIR;
      else process.env.TMPDIR = saved;
    }
    expect(readdirSync(dir).filter((f) => f.endsWith('.lock'))).toEqual([]);
    const one = request({ repository: url, credentials: key() });
    expect((await repos.checkout(one)).commit).toBe(sshFirst);
  });

  it('BERTH_GIT_AUTH_FAILED: a key the server does not know', async () => {
    const [other] = makeSshKey(tempDir('berth-key-'), 'other');
    const err = await failure(
      cache().checkout(request({ repository: url, credentials: key({ privateKey: other }) })),
    );
    expect(err.code).toBe('BERTH_GIT_AUTH_FAILED');
    expect(err.message).toContain("refused the stack's BERTH_GIT_SSH_KEY");
    expect(err.message).not.toContain('PRIVATE KEY');
  });

  it('BERTH_GIT_HOST_KEY_MISMATCH: another key pinned for the host', async () => {
    const [, otherPublic] = makeSshKey(tempDir('berth-key-'), 'impostor');
    const [type, body] = otherPublic.split(' ');
    const pinned = ssh.knownHosts.replace(/ \S+ \S+$/, ` ${type} ${body}`);
    const err = await failure(
      cache().checkout(request({ repository: url, credentials: key({ knownHosts: pinned }) })),
    );
    expect(err.code).toBe('BERTH_GIT_HOST_KEY_MISMATCH');
    expect(err.message).toMatch(/^the SSH host key of \[127\.0\.0\.1\]:\d+ does not match/);
    expect(err.hint).toMatch(/ssh-keyscan -p \d+ 127\.0\.0\.1/);
  });

  it('BERTH_GIT_HOST_KEY_UNKNOWN: no pinned host key, never accepted silently', async () => {
    const err = await failure(
      cache().checkout(request({ repository: url, credentials: key({ knownHosts: null }) })),
    );
    expect(err.code).toBe('BERTH_GIT_HOST_KEY_UNKNOWN');
    expect(err.hint).toContain('BERTH_GIT_KNOWN_HOSTS');
  });
});

describe("the worker's run source", () => {
  /** An assignment as the server sends it, with only what prepareSource reads filled in. */
  function assignment(
    stack: { repository: string | null; localDir: string | null },
    environment: { name: string; value: string; secret: boolean }[],
  ): AssignmentBody {
    return {
      run: { commit: first } as AssignmentBody['run'],
      stack: {
        id: 'infra',
        branch: 'main',
        projectRoot: '',
        tool: null,
        toolVersion: null,
        runnerImage: null,
        labels: [],
        ...stack,
      },
      environment,
      pool: { kind: 'private' } as AssignmentBody['pool'],
      logNext: 1,
    };
  }

  it('checks the commit out and keeps the BERTH_GIT_ variables from the job', async () => {
    const checkouts = tempDir('berth-checkouts-');
    const repos = new RepositoryCache({
      dir: tempDir('berth-repos-'),
      checkoutsDir: checkouts,
      owner: currentLauncherId(),
      isOwnerAlive: isLauncherAlive,
      env: { ...process.env, BERTH_GIT_CA_FILE: http.caFile },
    });
    const source = await prepareSource(
      assignment({ repository: `${http.url}infra.git`, localDir: null }, [
        { name: 'BERTH_GIT_TOKEN', value: TOKEN, secret: true },
        { name: 'BERTH_GIT_USERNAME', value: 'deploy', secret: false },
        { name: 'TF_LOG', value: 'info', secret: false },
      ]),
      repos,
    );
    expect(readFileSync(path.join(source.dir, 'main.tf'), 'utf8')).toBe('one\n');
    expect(source.environment).toEqual([{ name: 'TF_LOG', value: 'info', secret: false }]);
    // In the worker's own directory for checkouts, which its next start clears.
    expect(path.dirname(path.dirname(source.dir))).toBe(checkouts);
    const second = await prepareSource(
      assignment({ repository: `${http.url}infra.git`, localDir: null }, [
        { name: 'BERTH_GIT_TOKEN', value: TOKEN, secret: true },
        { name: 'BERTH_GIT_USERNAME', value: 'deploy', secret: false },
      ]),
      repos,
    );
    await source.cleanup();
    expect(existsSync(source.dir)).toBe(false);
    expect(await repos.clearCheckouts()).toBe(1);
    expect(existsSync(second.dir)).toBe(false);
    expect(readdirSync(checkouts)).toEqual([]);
  });

  it('BERTH_GIT_CREDENTIALS_INVALID: a token for an SSH URL, before any git runs', async () => {
    const err = await failure(
      prepareSource(
        assignment({ repository: 'ssh://git@127.0.0.1:1/infra.git', localDir: null }, [
          { name: 'BERTH_GIT_TOKEN', value: TOKEN, secret: true },
        ]),
        cache(),
      ),
    );
    expect(err.code).toBe('BERTH_GIT_CREDENTIALS_INVALID');
    expect(err.message).toBe(
      'BERTH_GIT_TOKEN is set but ssh://***@127.0.0.1:1/infra.git is not an https:// URL',
    );
  });
});
