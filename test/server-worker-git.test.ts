/**
 * Real `berth server` and `berth worker` processes, the real engine, and a real git server
 * (git http-backend behind HTTPS with Basic authentication): a private repository is checked
 * out with the stack's token, the next run fetches only what is new into the worker's cache, a
 * wrong token fails the run with its code, and the token shows nowhere (API, stored log, job
 * environment, process output); over SSH, the deploy key and the pinned host key, a changed host
 * key failing the run. Also the worker's own settings: whitelisted and masked
 * variables, extra mounts, and the warning about an unknown BERTH_ variable.
 */
import { createHash } from 'node:crypto';
import {
  chmodSync,
  existsSync,
  mkdirSync,
  readFileSync,
  readdirSync,
  writeFileSync,
} from 'node:fs';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import type { EngineClient } from '../src/executor/docker/engine-client.js';
import { expectNothingLeftBehind } from './harness/cleanup.js';
import {
  startBerthServer,
  createLocalPool,
  type BerthServer,
  stopWorkers,
} from './harness/berth-server.js';
import { runBerth, spawnBerth, type BerthProcess } from './harness/cli.js';
import { testEngine } from './harness/engine.js';
import {
  commitFiles,
  createRepository,
  makeSshKey,
  startGitHttpServer,
  startSshGitServer,
  type GitHttpServer,
} from './harness/git-server.js';
import { tempDir } from './harness/ownership.js';
import { until } from './harness/until.js';

const TOKEN = 'tok-5e1f0c77a2d94b';
let engine: EngineClient;
let git: GitHttpServer;
let server: BerthServer;
const workers: BerthProcess[] = [];
const api: BerthServer['api'] = (method, route, body) => server.api(method, route, body);

interface RunBody {
  id: string;
  state: string;
  stateReason: string | null;
  commit: string | null;
}

async function runToEnd(stack: string, type = 'task'): Promise<RunBody> {
  const created = await api<RunBody>('POST', `/stacks/${stack}/runs`, { type });
  expect(created.status).toBe(201);
  for (;;) {
    const run = (await api<RunBody>('GET', `/runs/${created.body.id}`)).body;
    if (['FINISHED', 'FAILED', 'CANCELED', 'STOPPED'].includes(run.state)) return run;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

async function logOf(id: string): Promise<{ lines: string[]; text: string }> {
  const log = await api<{ chunks: { text: string }[] }>('GET', `/runs/${id}/logs`);
  const lines = log.body.chunks
    .map((c) => c.text)
    .join('')
    .split('\n')
    .filter((l) => l !== '' && !l.startsWith('[berth: warning: '));
  return { lines, text: log.text };
}

async function startWorker(env: Record<string, string>): Promise<BerthProcess> {
  const worker = spawnBerth(['worker', '--server', server.url], env);
  workers.push(worker);
  await worker.waitFor('registered in pool');
  return worker;
}

/** Objects in a bare repository, loose and packed. */
function objectCount(repo: string): number {
  const out = execFileSync('git', ['--git-dir', repo, 'count-objects', '-v'], { encoding: 'utf8' });
  const field = (name: string): number =>
    Number(new RegExp(`^${name}: (\\d+)`, 'm').exec(out)?.[1]);
  return field('count') + field('in-pack');
}

/** While true, the git server answers nothing (a stalled server). */
let holding = false;

beforeAll(async () => {
  engine = testEngine();
  git = await startGitHttpServer({ deploy: TOKEN }, { hold: () => holding });
  // The server reads the branch head with the stack's token too: it trusts the test CA.
  server = await startBerthServer({ BERTH_GIT_CA_FILE: git.caFile });
});

afterEach(async () => {
  await stopWorkers(workers);
  await expectNothingLeftBehind(engine);
});

afterAll(async () => {
  await server?.stop();
  await git?.close();
  engine?.close();
});

describe('a private git repository', () => {
  it('is checked out with the stack token, fetched incrementally, and the token shows nowhere', async () => {
    const repo = createRepository(git.root, 'infra');
    const first = commitFiles(repo, {
      'main.tf': 'one\n',
      '.berth/task.sh':
        'echo "main.tf says $(cat main.tf)"\necho "git variables in the job: $(env | grep -c BERTH_GIT_)"\necho "commit $TF_VAR_berth_commit_sha on $TF_VAR_berth_commit_branch"\n',
    });
    const repository = `${git.url}infra.git`;
    const token = await createLocalPool(server, 'pool-git');
    expect(
      (
        await api('POST', '/stacks', {
          id: 'private-infra',
          repository,
          branch: 'main',
          pool: 'pool-git',
          runnerImage: inject('busyboxImage'),
        })
      ).status,
    ).toBe(201);
    await api('PUT', '/stacks/private-infra/env/BERTH_GIT_TOKEN', { value: TOKEN, secret: true });
    await api('PUT', '/stacks/private-infra/env/BERTH_GIT_USERNAME', { value: 'deploy' });
    const stateDir = tempDir('berth-worker-');
    const worker = await startWorker({
      BERTH_POOL_TOKEN: token,
      BERTH_STATE_DIR: stateDir,
      BERTH_GIT_CA_FILE: git.caFile,
    });

    const one = await runToEnd('private-infra');
    expect(one.state, one.stateReason ?? '').toBe('FINISHED');
    // Bound at trigger to the branch head, which the server read with the stack's token.
    expect(one.commit).toBe(first);
    expect((await logOf(one.id)).lines).toEqual([
      'main.tf says one',
      'git variables in the job: 0',
      // The checkout has no .git: the worker tells the job the commit it checked out.
      `commit ${first} on main`,
    ]);
    // Nothing of the run stays in the worker's state directory (its log is on the server).
    await expect
      .poll(
        () =>
          existsSync(path.join(stateDir, 'runs')) ? readdirSync(path.join(stateDir, 'runs')) : [],
        { timeout: 30_000 },
      )
      .toEqual([]);
    const cache = path.join(
      stateDir,
      'repositories',
      `${createHash('sha256').update(repository).digest('hex').slice(0, 40)}.git`,
    );
    const cachedBefore = objectCount(cache);
    // main.tf, task.sh, the root tree, .berth's tree, the commit.
    expect(cachedBefore).toBe(5);

    const second = commitFiles(repo, { 'main.tf': 'two\n' });
    const two = await runToEnd('private-infra');
    expect(two.state, two.stateReason ?? '').toBe('FINISHED');
    expect(two.commit).toBe(second);
    expect((await logOf(two.id)).lines[0]).toBe('main.tf says two');
    // The second run brought only the new commit, its root tree and the changed file.
    expect(objectCount(cache) - cachedBefore).toBe(3);
    // The token went with every request (no challenge): the server saw its user each time.
    expect(git.requests.length).toBeGreaterThan(0);
    expect(git.requests.every((r) => r.user === 'deploy' && r.status === 200)).toBe(true);

    await api('PUT', '/stacks/private-infra/env/BERTH_GIT_TOKEN', {
      value: 'tok-wrong-0000',
      secret: true,
    });
    const refused = await runToEnd('private-infra');
    expect(refused.state).toBe('FAILED');
    expect(refused.commit).toBeNull();
    expect(refused.stateReason).toBe(
      `${repository} refused the stack's BERTH_GIT_TOKEN (HTTP 401: the server wants other credentials) [BERTH_GIT_AUTH_FAILED]`,
    );

    const seen = [
      (await api('GET', '/stacks/private-infra')).text,
      (await api('GET', '/runs?limit=10')).text,
      ...(await Promise.all([one, two, refused].map(async (r) => (await logOf(r.id)).text))),
      ...(await Promise.all(
        [one, two, refused].map(async (r) => (await api('GET', `/runs/${r.id}`)).text),
      )),
      worker.stderr(),
      worker.stdout(),
      server.output(),
    ].join('\n');
    expect(seen).toContain('private-infra');
    expect(seen).not.toContain(TOKEN);
    expect(seen).not.toContain('tok-wrong-0000');
    expect(seen).not.toContain(Buffer.from(`deploy:${TOKEN}`).toString('base64'));
  });
});

describe('a repository that stops answering', () => {
  it('a cancel ends the checkout under way: CANCELED, its job never started, the worker free for the next run', async () => {
    const repo = createRepository(git.root, 'stalls');
    commitFiles(repo, { '.berth/task.sh': 'echo ran\n' });
    const token = await createLocalPool(server, 'pool-stall');
    const created = await api('POST', '/stacks', {
      id: 'stalls',
      repository: `${git.url}stalls.git`,
      branch: 'main',
      pool: 'pool-stall',
      runnerImage: inject('busyboxImage'),
    });
    expect(created.status).toBe(201);
    await api('PUT', '/stacks/stalls/env/BERTH_GIT_TOKEN', { value: TOKEN, secret: true });
    await api('PUT', '/stacks/stalls/env/BERTH_GIT_USERNAME', { value: 'deploy' });
    // Triggered while the server answers (the trigger reads the branch head); then it stalls.
    const triggered = (await api<RunBody>('POST', '/stacks/stalls/runs', { type: 'task' })).body;
    holding = true;
    try {
      const worker = await startWorker({
        BERTH_POOL_TOKEN: token,
        BERTH_STATE_DIR: tempDir('berth-worker-'),
        BERTH_GIT_CA_FILE: git.caFile,
      });
      await until(() => git.requests.some((r) => r.held), 'the checkout reaches the server');
      expect((await api('POST', `/runs/${triggered.id}/cancel`)).status).toBe(200);
      let run = triggered;
      await until(
        async () => {
          run = (await api<RunBody>('GET', `/runs/${triggered.id}`)).body;
          return run.state !== 'PREPARING';
          // The worker hears of the cancel at its next heartbeat: up to 5 s.
        },
        'the worker stops the checkout',
        60_000,
      );
      expect(run.state).toBe('CANCELED');
      const stopped = 'stopped: canceled, during the checkout of its source; its job never started';
      expect(run.stateReason).toMatch(/^canceled by \S+; worker \S+: /);
      expect(run.stateReason?.endsWith(stopped)).toBe(true);
      expect((await logOf(run.id)).lines).toEqual([`[berth: ${stopped}]`]);
      await until(
        () => worker.stderr().includes(`run ${run.id}: done here, CANCELED`),
        'the worker is done with the run',
      );
    } finally {
      holding = false;
    }
    // The cache's lock was given back and the worker's slot freed: the next run goes through.
    const next = await runToEnd('stalls');
    expect(next.state, next.stateReason ?? '').toBe('FINISHED');
    expect((await logOf(next.id)).lines).toEqual(['ran']);
  });
});

describe('a repository only the worker reads', () => {
  it('refuses a trigger on a branch the repository does not have, read with the stack token', async () => {
    const repo = createRepository(git.root, 'branchless');
    commitFiles(repo, { '.berth/task.sh': 'echo ran\n' });
    await createLocalPool(server, 'pool-branchless');
    const stack = {
      id: 'branchless',
      repository: `${git.url}branchless.git`,
      branch: 'release',
      pool: 'pool-branchless',
      runnerImage: inject('busyboxImage'),
    };
    expect((await api('POST', '/stacks', stack)).status).toBe(201);
    await api('PUT', '/stacks/branchless/env/BERTH_GIT_TOKEN', { value: TOKEN, secret: true });
    await api('PUT', '/stacks/branchless/env/BERTH_GIT_USERNAME', { value: 'deploy' });
    const refused = await api<{ code: string; message: string }>(
      'POST',
      '/stacks/branchless/runs',
      { type: 'task' },
    );
    expect(refused.status).toBe(409);
    expect(refused.body).toMatchObject({
      code: 'BRANCH_NOT_FOUND',
      message: `stack branchless's branch release does not exist in ${stack.repository}`,
    });
    expect((await api<{ runs: unknown[] }>('GET', '/runs?stack=branchless')).body.runs).toEqual([]);
    // The command line names the commands that fix it.
    const cli = await runBerth(['stack', 'trigger', 'branchless'], {
      BERTH_SERVER: server.url,
      BERTH_TOKEN: server.admin,
    });
    expect(cli.code).toBe(2);
    expect(cli.stderr).toContain(
      `stack branchless's branch release does not exist in ${stack.repository}`,
    );
    expect(cli.stderr).toContain('BRANCH_NOT_FOUND');
    expect(cli.stderr).toContain('berth stack update ID --branch NAME');
    // The branch that is there binds the run to its head.
    await api('PATCH', '/stacks/branchless', { branch: 'main' });
    const bound = await api<RunBody>('POST', '/stacks/branchless/runs', { type: 'task' });
    expect(bound.status).toBe(201);
    expect(bound.body.commit).toMatch(/^[0-9a-f]{40}$/);
    await api('POST', `/runs/${bound.body.id}/cancel`);
  });

  it('records the commit the worker checked out when the server could bind the run to none', async () => {
    // file:// is read on the worker's machine; the server does not read paths for a trigger.
    const repo = createRepository(tempDir('berth-git-local-'), 'local');
    const head = commitFiles(repo, { '.berth/task.sh': 'echo "at $TF_VAR_berth_commit_sha"\n' });
    const token = await createLocalPool(server, 'pool-file');
    const created = await api('POST', '/stacks', {
      id: 'file-infra',
      repository: `file://${repo}`,
      pool: 'pool-file',
      runnerImage: inject('busyboxImage'),
    });
    expect(created.status).toBe(201);
    await startWorker({ BERTH_POOL_TOKEN: token, BERTH_STATE_DIR: tempDir('berth-worker-') });
    const triggered = await api<RunBody>('POST', '/stacks/file-infra/runs', { type: 'task' });
    expect(triggered.body.commit).toBeNull();
    let run = triggered.body;
    await until(async () => {
      run = (await api<RunBody>('GET', `/runs/${triggered.body.id}`)).body;
      return ['FINISHED', 'FAILED', 'STOPPED'].includes(run.state);
    }, 'the run ends');
    expect(run.state, run.stateReason ?? '').toBe('FINISHED');
    expect((await logOf(run.id)).lines).toEqual([`at ${head}`]);
    expect(run.commit).toBe(head);
  });
});

describe('a repository over SSH', () => {
  it('is checked out with the deploy key against the pinned host key; a changed host key fails the run', async () => {
    const ssh = await startSshGitServer();
    try {
      const repo = createRepository(ssh.root, 'infra');
      const head = commitFiles(repo, { '.berth/task.sh': 'echo "over ssh as $(id -u)"\n' });
      const token = await createLocalPool(server, 'pool-ssh');
      await api('POST', '/stacks', {
        id: 'ssh-infra',
        repository: ssh.urlOf(repo),
        pool: 'pool-ssh',
        runnerImage: inject('busyboxImage'),
      });
      await api('PUT', '/stacks/ssh-infra/env/BERTH_GIT_SSH_KEY', {
        value: ssh.deployKey,
        secret: true,
      });
      await api('PUT', '/stacks/ssh-infra/env/BERTH_GIT_KNOWN_HOSTS', { value: ssh.knownHosts });
      await startWorker({ BERTH_POOL_TOKEN: token, BERTH_STATE_DIR: tempDir('berth-worker-') });
      const run = await runToEnd('ssh-infra');
      expect(run.state, run.stateReason ?? '').toBe('FINISHED');
      expect(run.commit).toBe(head);
      expect((await logOf(run.id)).lines).toEqual(['over ssh as 1983']);

      const [, impostor] = makeSshKey(tempDir('berth-key-'), 'impostor');
      const pinned = ssh.knownHosts.replace(
        / \S+ \S+$/,
        ` ${impostor.split(' ').slice(0, 2).join(' ')}`,
      );
      await api('PUT', '/stacks/ssh-infra/env/BERTH_GIT_KNOWN_HOSTS', { value: pinned });
      const refused = await runToEnd('ssh-infra');
      expect(refused.state).toBe('FAILED');
      expect(refused.stateReason).toMatch(
        /^the SSH host key of \[127\.0\.0\.1\]:\d+ does not match the stack's BERTH_GIT_KNOWN_HOSTS: .* \[BERTH_GIT_HOST_KEY_MISMATCH\]$/,
      );
    } finally {
      await stopWorkers(workers);
      await ssh.close();
    }
  });
});

describe("the worker's own settings", () => {
  it('passes whitelisted variables (masked ones masked), mounts the extra mounts, and names an unknown BERTH_ variable', async () => {
    const token = await createLocalPool(server, 'pool-settings');
    const stackDir = tempDir('berth-stack-');
    mkdirSync(path.join(stackDir, '.berth'));
    writeFileSync(
      path.join(stackDir, '.berth', 'task.sh'),
      [
        'echo "region=$AWS_REGION vault=$VAULT_TOKEN"',
        'echo "all: $(cat /mnt/all/file)"',
        'touch /mnt/all/new 2>/dev/null || echo "all: read-only"',
        'echo written >/mnt/wo/out && echo "wo: written"',
        'test -e /mnt/ro || echo "ro: not mounted in a write run"',
        '',
      ].join('\n'),
    );
    const hostDir = (name: string, mode: number): string => {
      const dir = tempDir(`berth-mount-${name}-`);
      chmodSync(dir, mode);
      return dir;
    };
    const all = hostDir('all', 0o755);
    writeFileSync(path.join(all, 'file'), 'from the host\n', { mode: 0o644 });
    const ro = hostDir('ro', 0o755);
    const wo = hostDir('wo', 0o777);
    expect(
      (
        await api('POST', '/stacks', {
          id: 'settings',
          localDir: stackDir,
          pool: 'pool-settings',
          runnerImage: inject('busyboxImage'),
        })
      ).status,
    ).toBe(201);
    const worker = await startWorker({
      BERTH_POOL_TOKEN: token,
      BERTH_STATE_DIR: tempDir('berth-worker-'),
      SPACELIFT_WHITELIST_ENVS: 'AWS_REGION,VAULT_TOKEN',
      SPACELIFT_MASK_ENVS: 'VAULT_TOKEN',
      AWS_REGION: 'eu-west-1',
      VAULT_TOKEN: 's.vault-secret-value',
      SPACELIFT_WORKER_EXTRA_MOUNTS: `${all}:/mnt/all:ro`,
      SPACELIFT_WORKER_RO_EXTRA_MOUNTS: `${ro}:/mnt/ro`,
      BERTH_WORKER_WO_EXTRA_MOUNTS: `${wo}:/mnt/wo`,
      BERTH_WORKR_NETWORK: 'bridge',
    });
    expect(worker.stderr()).toContain(
      'berth: warning: berth does not know the variable BERTH_WORKR_NETWORK (did you mean BERTH_WORKER_NETWORK?); it is ignored\n',
    );
    const run = await runToEnd('settings');
    expect(run.state, run.stateReason ?? '').toBe('FINISHED');
    expect((await logOf(run.id)).lines).toEqual([
      'region=eu-west-1 vault=*****',
      'all: from the host',
      'all: read-only',
      'wo: written',
      'ro: not mounted in a write run',
    ]);
    expect(readFileSync(path.join(wo, 'out'), 'utf8')).toBe('written\n');

    // A proposed run only plans: it gets the read-only runs' mounts, not the write runs'.
    writeFileSync(path.join(ro, 'file'), 'read-only runs only\n', { mode: 0o644 });
    const planDir = tempDir('berth-stack-');
    mkdirSync(path.join(planDir, '.berth'));
    writeFileSync(
      path.join(planDir, '.berth', 'workflow.yml'),
      [
        'init: echo init',
        `plan: 'echo "ro: $(cat /mnt/ro/file)"; test -e /mnt/wo || echo "wo: not mounted in a read-only run"; touch "{{ .PlanFileName }}"'`,
        'showPlan: printf \'{"resource_changes":[]}\'',
        'apply: "true"',
        'destroy: "true"',
        '',
      ].join('\n'),
    );
    expect(
      (
        await api('POST', '/stacks', {
          id: 'settings-plan',
          localDir: planDir,
          pool: 'pool-settings',
          tool: 'CUSTOM',
          runnerImage: inject('busyboxImage'),
        })
      ).status,
    ).toBe(201);
    const proposed = await runToEnd('settings-plan', 'proposed');
    expect(proposed.state, proposed.stateReason ?? '').toBe('FINISHED');
    const planLog = (await logOf(proposed.id)).lines;
    expect(planLog).toContain('ro: read-only runs only');
    expect(planLog).toContain('wo: not mounted in a read-only run');

    // The plan of a tracked run that waits for confirmation has a container of its own: read-only.
    const tracked = await api<RunBody>('POST', '/stacks/settings-plan/runs', { type: 'tracked' });
    expect(tracked.status).toBe(201);
    for (;;) {
      const state = (await api<RunBody>('GET', `/runs/${tracked.body.id}`)).body;
      expect(['FAILED', 'FINISHED']).not.toContain(state.state);
      if (state.state === 'UNCONFIRMED') break;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    expect((await logOf(tracked.body.id)).lines).toContain('ro: read-only runs only');
    expect((await api('POST', `/runs/${tracked.body.id}/discard`)).status).toBe(200);
    expect(worker.stderr()).not.toContain('s.vault-secret-value');
  });

  it("takes the reference's names for the network, the default image and both timeouts", async () => {
    const token = await createLocalPool(server, 'pool-limits');
    const stack = async (id: string, task: string): Promise<void> => {
      const dir = tempDir('berth-stack-');
      mkdirSync(path.join(dir, '.berth'));
      writeFileSync(path.join(dir, '.berth', 'task.sh'), task);
      // No runner image: the worker's default (SPACELIFT_DEFAULT_RUNNER_IMAGE) is the run's.
      expect(
        (await api('POST', '/stacks', { id, localDir: dir, pool: 'pool-limits' })).status,
      ).toBe(201);
    };
    await stack('net', 'echo "interfaces: $(ls /sys/class/net | tr "\\n" " ")"\n');
    await stack('silent', 'echo started\nsleep 60\n');
    await stack('endless', 'while true; do echo tick; sleep 0.2; done\n');
    await startWorker({
      BERTH_POOL_TOKEN: token,
      BERTH_STATE_DIR: tempDir('berth-worker-'),
      SPACELIFT_WORKER_NETWORK: 'none',
      SPACELIFT_DEFAULT_RUNNER_IMAGE: inject('busyboxImage'),
      // Both count from before the container starts: long enough for a start on a loaded
      // machine (net finishes, endless prints before the logs time-out), the logs' the shorter.
      SPACELIFT_LAUNCHER_LOGS_TIMEOUT: '5s',
      SPACELIFT_LAUNCHER_RUN_TIMEOUT: '12s',
    });
    const net = await runToEnd('net');
    expect(net.state, net.stateReason ?? '').toBe('FINISHED');
    // Network "none": the loopback interface only.
    expect((await logOf(net.id)).lines).toEqual(['interfaces: lo ']);
    const image = (await api<{ image: { reference: string } | null }>('GET', `/runs/${net.id}`))
      .body.image;
    expect(image?.reference).toContain('busybox');
    const silent = await runToEnd('silent');
    expect(silent.stateReason).toMatch(/^stopped: logs-timeout/);
    const endless = await runToEnd('endless');
    expect(endless.stateReason).toMatch(/^stopped: run-timeout/);
  });
});
