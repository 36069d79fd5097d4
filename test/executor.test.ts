/**
 * The Docker executor through its contract, on the real engine: phases, exported environment,
 * streaming, interruption, idempotent clean-up and the orphan sweep.
 */
import { execFileSync } from 'node:child_process';
import {
  chmodSync,
  chownSync,
  existsSync,
  mkdirSync,
  readdirSync,
  realpathSync,
  rmSync,
  symlinkSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, inject, it } from 'vitest';
import { DockerExecutor } from '../src/executor/docker/docker-executor.js';
import type { EngineClient } from '../src/executor/docker/engine-client.js';
import {
  LABELS,
  type JobContainerSpec,
  type JobHandle,
  type OutputStream,
} from '../src/executor/executor.js';
import { expectNoBerthContainers } from './harness/cleanup.js';
import { berthContainers, testEngine, touchInContainer } from './harness/engine.js';
import { ensureBuiltImage, imageInspect } from './harness/images.js';
import { ownsLauncher, tempDir, testLauncherId } from './harness/ownership.js';

let engine: EngineClient;
let executor: DockerExecutor;
let busybox: string;
let launcherId: string;
const jobs: JobHandle[] = [];

function spec(overrides: Partial<JobContainerSpec> = {}): JobContainerSpec {
  const dir = tempDir('berth-exec-');
  writeFileSync(path.join(dir, 'input.txt'), 'from the host\n');
  return {
    runId: `t${Date.now()}${Math.floor(Math.random() * 1e6)}`,
    launcherId,
    expiresAt: new Date(Date.now() + 600_000),
    image: busybox,
    imageReference: busybox,
    sourceDir: dir,
    env: {},
    network: 'none',
    pidsLimit: 256,
    ...overrides,
  };
}

async function start(overrides: Partial<JobContainerSpec> = {}): Promise<JobHandle> {
  const job = await executor.startJob(spec(overrides));
  jobs.push(job);
  return job;
}

async function phase(
  job: JobHandle,
  script: string,
  onOutput: (text: string) => void = () => undefined,
): Promise<{ exitCode: number; out: string; events: [OutputStream, string][] }> {
  const events: [OutputStream, string][] = [];
  const { exitCode } = await job.runPhase({ name: 'p', script }, (stream, chunk) => {
    events.push([stream, chunk.toString()]);
    onOutput(events.map(([, t]) => t).join(''));
  });
  return { exitCode, out: events.map(([, t]) => t).join(''), events };
}

/** Resolves once the job's output contains `text`: the job's own word that it is ready. */
function outputSaid(text: string): { see: (output: string) => void; seen: Promise<void> } {
  let resolve: () => void = () => undefined;
  const seen = new Promise<void>((r) => (resolve = r));
  return { see: (output) => (output.includes(text) ? resolve() : undefined), seen };
}

beforeAll(() => {
  engine = testEngine();
  executor = new DockerExecutor(engine);
  busybox = inject('busyboxImage');
  launcherId = testLauncherId('executor');
});

afterEach(async () => {
  for (const job of jobs.splice(0)) await job.destroy();
  await expectNoBerthContainers(engine);
});

afterAll(() => engine.close());

describe('DockerExecutor', () => {
  it('runs phases one after another in the same container; exported variables carry over', async () => {
    const job = await start({ env: { BASE: 'from-spec' } });
    const first = await phase(
      job,
      'export CARRIED="value with spaces"; export BASE=changed; echo $BASE > written-by-1; NOT_EXPORTED=1',
    );
    expect(first.exitCode).toBe(0);
    const second = await phase(
      job,
      'echo "$CARRIED|$BASE|${NOT_EXPORTED:-unset}"; cat written-by-1; stat -c %u written-by-1',
    );
    expect(second).toMatchObject({
      exitCode: 0,
      out: 'value with spaces|changed|unset\nchanged\n1983\n',
    });
    const third = await phase(job, 'exit 4');
    expect(third.exitCode).toBe(4);
  });

  it('saves exported variables even when the phase calls exit', async () => {
    const job = await start();
    expect((await phase(job, 'export KEPT=yes; exit 0')).exitCode).toBe(0);
    expect((await phase(job, 'echo $KEPT')).out).toBe('yes\n');
  });

  it('streams output as it comes, separating stdout and stderr', async () => {
    const job = await start();
    // The phase cannot end before the test has seen its first line: it waits for a file the test
    // creates only then, so the first chunk must have been delivered while the phase ran.
    const first = outputSaid('a\n');
    const running = phase(
      job,
      'echo a; while [ ! -e go ]; do sleep 0.05; done; echo b >&2',
      first.see,
    );
    await first.seen;
    await touchInContainer(engine, job.containerId, '/mnt/workspace/source/go');
    const streamed = await running;
    expect(streamed.events).toEqual([
      ['stdout', 'a\n'],
      ['stderr', 'b\n'],
    ]);
    const result = await phase(job, 'echo out; echo err >&2');
    expect(result.events.sort()).toEqual([
      ['stderr', 'err\n'],
      ['stdout', 'out\n'],
    ]);
  });

  it('copies the source directory in, owned by 1983, and keeps berth scripts out of reach', async () => {
    const job = await start();
    const result = await phase(
      job,
      'cat input.txt; stat -c "%u:%g" /mnt/workspace /mnt/workspace/source input.txt; stat -c "%u %a" /berth /berth/phase.sh; (echo x > /berth/phase.sh) 2>/dev/null || echo cannot-write-berth',
    );
    expect(result.out).toBe(
      'from the host\n1983:1983\n1983:1983\n1983:1983\n0 755\n0 644\ncannot-write-berth\n',
    );
  });

  it('interrupt delivers SIGINT to the running phase; kill ends what ignores it', async () => {
    const job = await start();
    const trapped = outputSaid('go');
    const running = phase(
      job,
      'trap "echo interrupted; exit 3" INT; echo go; while :; do sleep 0.1; done',
      trapped.see,
    );
    await trapped.seen;
    await job.interrupt();
    const ended = await running;
    expect(ended.out).toBe('go\ninterrupted\n');
    // The job's own INT trap decides the exit code, as it would in a terminal.
    expect(ended.exitCode).toBe(3);
    const started = outputSaid('go');
    const plain = phase(job, 'echo go; sleep 30; echo never', started.see);
    await started.seen;
    await job.interrupt();
    expect(await plain).toMatchObject({ exitCode: 130, out: 'go\n' });

    const trapSet = outputSaid('trap-set');
    const stubborn = phase(
      job,
      "trap '' INT; echo trap-set; while :; do sleep 0.1; done",
      trapSet.see,
    );
    await trapSet.seen;
    await job.interrupt();
    await job.kill();
    const killed = await stubborn;
    // 128 + 9: SIGKILL ended it, not the interrupt (ignored) nor anything else.
    expect(killed).toMatchObject({ exitCode: 137, out: 'trap-set\n' });
  });

  it('runs a sole phase as the container process: same workspace, env, HOME and identity', async () => {
    const sole = {
      name: 'task',
      script:
        'echo "ppid=$PPID uid=$(id -u) home=$HOME $A/$B"; cat input.txt; stat -c %u input.txt; exit 5',
      env: { B: 'from-phase' },
    };
    const job = await start({ env: { A: 'from-spec' }, solePhase: sole });
    // Created, not started: nothing of the job runs before runPhase.
    const before = await engine.json<{ State: { Status: string } }>(
      'GET',
      `/containers/${job.containerId}/json`,
    );
    expect(before.State.Status).toBe('created');
    const result = await phase(job, sole.script).catch((err: Error) => err);
    expect(result).toBeInstanceOf(Error);
    expect((result as Error).message).toMatch(/runs only its phase task; phase p cannot run/);
    const events: string[] = [];
    const order: string[] = [];
    const ran = await job.runPhase(
      sole,
      (_stream, chunk) => {
        events.push(chunk.toString());
        order.push('output');
      },
      () => order.push('started'),
    );
    expect(ran.exitCode).toBe(5);
    // onStarted marks the container's start: once, before any output.
    expect(order[0]).toBe('started');
    expect(order.filter((o) => o === 'started')).toHaveLength(1);
    // PID 1 is the engine's init and the phase its child: no exec (an exec's parent is outside).
    expect(events.join('')).toBe(
      'ppid=1 uid=1983 home=/home/berth from-spec/from-phase\nfrom the host\n1983\n',
    );
    await expect(job.runPhase(sole, () => undefined)).rejects.toThrow(/cannot run/);
    // Files stay readable after the process ended.
    expect((await job.readFile('/mnt/workspace/source/input.txt'))?.toString()).toBe(
      'from the host\n',
    );
  });

  it('interrupt reaches a sole phase, which ends with the shell status of SIGINT', async () => {
    const sole = { name: 'task', script: 'echo go; sleep 30; echo never' };
    const job = await start({ solePhase: sole });
    const events: string[] = [];
    const started = outputSaid('go');
    const running = job.runPhase(sole, (_stream, chunk) => {
      events.push(chunk.toString());
      started.see(events.join(''));
    });
    await started.seen;
    await job.interrupt();
    expect((await running).exitCode).toBe(130);
    expect(events.join('')).toBe('go\n');
  });

  it('interrupt while a phase is being started reaches its process once it runs, and once', async () => {
    // Counts the SIGINTs it gets over 3 s (sleep is interrupted too; the loop goes on).
    const script =
      'n=0; trap \'n=$((n+1))\' INT; echo up; i=0; while [ $i -lt 30 ]; do sleep 0.1; i=$((i+1)); done; echo "interrupts: $n"';
    const sole = { name: 'task', script };
    for (const job of [await start(), await start({ solePhase: sole })]) {
      let out = '';
      const running = job.runPhase(sole, (_stream, chunk) => {
        out += chunk.toString();
      });
      // Asked before the phase's process exists (its exec or its container not yet started).
      await job.interrupt();
      const { exitCode } = await running;
      // Once its process runs, it gets the SIGINT: counted by its trap, or, if it came before
      // the trap was set, as the shell's own end by SIGINT (130). Never lost, never twice.
      if (exitCode === 130) expect(out).not.toContain('interrupts:');
      else expect({ exitCode, out }).toEqual({ exitCode: 0, out: 'up\ninterrupts: 1\n' });
    }
  });

  it('says the engine is not on this machine when a file it should mount is not there', async () => {
    const error = await executor
      .startJob(
        spec({
          mounts: [{ source: '/nonexistent/berth/tofu', target: '/bin/tofu', readOnly: true }],
        }),
      )
      .catch((err: unknown) => err);
    expect(error).toMatchObject({ code: 'BERTH_ENGINE_NOT_LOCAL' });
    expect((error as Error).message).toContain('/nonexistent/berth/tofu');
  });

  it('reports copy progress at the interval it is given, growing up to the workspace size', async () => {
    // An interval of 1 ms instead of a copy that must last longer than the default second.
    const reporting = new DockerExecutor(engine, { copyProgressIntervalMs: 1 });
    const job = spec();
    const size = 16 * 1024 * 1024;
    writeFileSync(path.join(job.sourceDir, 'big.bin'), Buffer.alloc(size, 7));
    const seen: number[] = [];
    jobs.push(await reporting.startJob(job, (bytes) => seen.push(bytes)));
    expect(seen.length).toBeGreaterThan(0);
    expect([...seen].sort((a, b) => a - b)).toEqual(seen);
    expect(seen.at(-1)).toBeLessThanOrEqual(size + 1024 * 1024);
  });

  it('destroy is idempotent and removes the container', async () => {
    const job = await start();
    await job.destroy();
    await job.destroy();
    await job.interrupt();
    await job.kill();
    const left = await berthContainers(engine);
    expect(left.map((c) => c.Id)).not.toContain(job.containerId);
  });

  it('removes orphans by expiry and by dead launcher, and spares live ones', async () => {
    const alive = testLauncherId('alive');
    const expired = await start({ launcherId: alive, expiresAt: new Date(Date.now() - 1000) });
    const deadLauncher = await start({ launcherId: testLauncherId('dead') });
    const live = await start({ launcherId: alive });
    // Launchers that are not this test's count as alive: other users' jobs stay untouched.
    const removed = await executor.removeOrphans(
      (id) => !ownsLauncher(id) || id === alive,
      new Date(),
    );
    expect(removed.sort()).toEqual([expired.containerName, deadLauncher.containerName].sort());
    const left = (await berthContainers(engine)).map((c) => c.Id);
    expect(left).toEqual([live.containerId]);
  });
});

/**
 * BERTH_WORKSPACE=mount (the default for root on a local engine): the workspace, berth's scripts
 * and (when the image has none) the job's HOME are directories under the launcher's state
 * directory, bind-mounted, instead of an archive the engine unpacks.
 */
describe('DockerExecutor with mounted workspaces', () => {
  let root: string;
  let mounting: DockerExecutor;
  let busyboxId: string;

  beforeAll(async () => {
    if (process.getuid?.() !== 0)
      throw new Error(
        'mounted workspaces need root (the files are given to UID 1983): run as root',
      );
    busyboxId = (await imageInspect(engine, busybox))?.Id ?? '';
    expect(busyboxId).toMatch(/^sha256:/);
  });

  beforeEach(() => {
    root = path.join(tempDir('berth-mounted-'), 'workspaces');
    mounting = new DockerExecutor(engine, { workspaceRoot: root, workspace: 'mount' });
  });

  async function startMounted(overrides: Partial<JobContainerSpec> = {}): Promise<JobHandle> {
    const job = await mounting.startJob(spec(overrides));
    jobs.push(job);
    return job;
  }

  it('mounts the workspace and the scripts with the same owners and modes as a copy, and removes them with the container', async () => {
    expect(await mounting.workspaceDelivery()).toEqual({
      mount: true,
      root: realpathSync(root),
      reason: null,
    });
    const job = await startMounted({ image: busyboxId });
    expect(readdirSync(root)).toHaveLength(1);
    const result = await phase(
      job,
      'cat input.txt; stat -c "%u:%g %a" /mnt/workspace /mnt/workspace/source input.txt /mnt/workspace/.berth; stat -c "%u %a" /berth /berth/phase.sh; (echo x > /berth/phase.sh) 2>/dev/null || echo cannot-write-berth; touch /berth/new 2>/dev/null || echo cannot-add-to-berth; grep -c " /mnt/workspace " /proc/mounts; echo made > made-by-job',
    );
    expect(result.out).toBe(
      'from the host\n1983:1983 755\n1983:1983 700\n1983:1983 644\n1983:1983 700\n0 755\n0 644\ncannot-write-berth\ncannot-add-to-berth\n1\n',
    );
    const [dir] = readdirSync(root);
    expect(
      readdirSync(path.join(root, dir as string, 'mnt', 'workspace', 'source')).sort(),
    ).toEqual(['input.txt', 'made-by-job']);
    await job.destroy();
    expect(readdirSync(root)).toEqual([]);
    expect((await berthContainers(engine)).map((c) => c.Id)).not.toContain(job.containerId);
  });

  it("mounts the job's HOME once it knows the image has none, and leaves an image's own HOME as it is", async () => {
    // The first job of an image learns what its HOME is like (the engine makes it); the next
    // mounts an empty one of its own.
    const script =
      'echo "$HOME"; stat -c "%u %a" "$HOME"; grep -c " $HOME " /proc/mounts; ls -A "$HOME"';
    const first = await startMounted({ image: busyboxId });
    expect((await phase(first, script)).out).toBe('/home/berth\n1983 700\n0\n');
    const second = await startMounted({ image: busyboxId });
    expect((await phase(second, script)).out).toBe('/home/berth\n1983 700\n1\n');
    // An image whose user 1983 has its own HOME, with a file in it: kept, not hidden.
    const own = await ensureBuiltImage(
      engine,
      'own-home',
      `FROM ${busybox}\nUSER root\nRUN echo 'berth:x:1983:1983::/home/own:/bin/sh' >> /etc/passwd && mkdir -p /home/own && echo from-image > /home/own/.profile && chown -R 1983:1983 /home/own && chmod 700 /home/own\n`,
    );
    const ownId = (await imageInspect(engine, own))?.Id ?? '';
    for (let i = 0; i < 2; i += 1) {
      const job = await startMounted({ image: ownId, imageReference: own });
      expect((await phase(job, script)).out).toBe('/home/own\n1983 700\n0\n.profile\n');
    }
    // One the image has but that is root's: given to the job through the engine, kept too.
    const rootHome = await ensureBuiltImage(
      engine,
      'root-home',
      `FROM ${busybox}\nUSER root\nRUN echo 'berth:x:1983:1983::/home/theirs:/bin/sh' >> /etc/passwd && mkdir -p /home/theirs && echo from-image > /home/theirs/.profile && chmod 755 /home/theirs\n`,
    );
    const rootHomeId = (await imageInspect(engine, rootHome))?.Id ?? '';
    for (let i = 0; i < 2; i += 1) {
      const job = await startMounted({ image: rootHomeId, imageReference: rootHome });
      expect((await phase(job, script)).out).toBe('/home/theirs\n1983 700\n0\n.profile\n');
    }
  });

  it('never makes a HOME outside the container: a passwd entry with .. in it gets /home/berth', async () => {
    const outside = tempDir('berth-escape-');
    const escaping = await ensureBuiltImage(
      engine,
      'escaping-home',
      `FROM ${busybox}\nUSER root\nRUN echo 'berth:x:1983:1983::${'/..'.repeat(20)}${outside}/made:/bin/sh' >> /etc/passwd\n`,
    );
    const escapingId = (await imageInspect(engine, escaping))?.Id ?? '';
    for (let i = 0; i < 2; i += 1) {
      const job = await startMounted({ image: escapingId, imageReference: escaping });
      expect((await phase(job, 'echo "$HOME"; stat -c "%u %a" "$HOME"')).out).toBe(
        '/home/berth\n1983 700\n',
      );
    }
    expect(readdirSync(outside)).toEqual([]);
  });

  it('says a full state directory as BERTH_DISK_FULL, naming it, and leaves nothing there', async () => {
    const small = tempDir('berth-small-');
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=256k', 'berth-test-small', small]);
    try {
      const full = new DockerExecutor(engine, {
        workspaceRoot: path.join(small, 'workspaces'),
        workspace: 'mount',
      });
      const job = spec();
      writeFileSync(path.join(job.sourceDir, 'big.bin'), Buffer.alloc(1024 * 1024, 1));
      const error = await full.startJob(job).catch((err: unknown) => err);
      expect(error).toMatchObject({
        code: 'BERTH_DISK_FULL',
        message: expect.stringContaining(
          `no space left while writing the workspace to ${small}/workspaces/berth-`,
        ) as string,
      });
      expect(readdirSync(path.join(small, 'workspaces'))).toEqual([]);
    } finally {
      execFileSync('umount', [small]);
    }
  });

  it('copies when another user could change the path to the workspaces (a directory writable by all)', async () => {
    const open = tempDir('berth-open-');
    chmodSync(open, 0o777);
    const workspaces = path.join(open, 'state', 'workspaces');
    const auto = new DockerExecutor(engine, { workspaceRoot: workspaces });
    expect(await auto.workspaceDelivery()).toEqual({
      mount: false,
      reason: `${realpathSync(open)} is not root's alone (owner 0, mode 0777), so another user could redirect what root writes there`,
    });
    expect(existsSync(workspaces)).toBe(false);
    // Sticky, as /tmp is, it is safe: no one else can move root's entries.
    chmodSync(open, 0o1777);
    expect(
      await new DockerExecutor(engine, { workspaceRoot: workspaces }).workspaceDelivery(),
    ).toEqual({ mount: true, root: realpathSync(workspaces), reason: null });
    // The workspaces directory itself may not be open, sticky or not.
    chmodSync(workspaces, 0o1777);
    expect(
      await new DockerExecutor(engine, { workspaceRoot: workspaces }).workspaceDelivery(),
    ).toMatchObject({ mount: false, reason: expect.stringContaining('mode 1777') as string });
  });

  it('keeps to the real workspaces directory it checked: a link on the way changed later changes nothing', async () => {
    const open = tempDir('berth-open-link-');
    chmodSync(open, 0o1777);
    const checked = tempDir('berth-checked-');
    const elsewhere = tempDir('berth-elsewhere-');
    symlinkSync(checked, path.join(open, 'state'));
    const linked = new DockerExecutor(engine, {
      workspaceRoot: path.join(open, 'state', 'workspaces'),
      workspace: 'mount',
    });
    expect(await linked.workspaceDelivery()).toMatchObject({
      mount: true,
      root: path.join(realpathSync(checked), 'workspaces'),
    });
    // Another user with a say in the open directory points the link elsewhere.
    rmSync(path.join(open, 'state'));
    symlinkSync(elsewhere, path.join(open, 'state'));
    const job = await linked.startJob(spec());
    jobs.push(job);
    expect((await phase(job, 'cat input.txt')).out).toBe('from the host\n');
    expect(readdirSync(path.join(checked, 'workspaces'))).toHaveLength(1);
    expect(readdirSync(elsewhere)).toEqual([]);
  });

  it('refuses BERTH_WORKSPACE=mount where it cannot mount, and copies with BERTH_WORKSPACE=copy', async () => {
    const remote = new DockerExecutor(engine, { workspace: 'mount' });
    await expect(remote.startJob(spec())).rejects.toMatchObject({
      code: 'BERTH_CONFIG_INVALID',
      message: expect.stringContaining('no state directory was given') as string,
    });
    const copying = new DockerExecutor(engine, { workspaceRoot: root, workspace: 'copy' });
    expect(await copying.workspaceDelivery()).toEqual({
      mount: false,
      reason: 'BERTH_WORKSPACE=copy',
    });
    const job = await copying.startJob(spec());
    jobs.push(job);
    expect((await phase(job, 'grep -c " /mnt/workspace " /proc/mounts; cat input.txt')).out).toBe(
      '0\nfrom the host\n',
    );
    expect(existsSync(root)).toBe(false);
  });

  it('copies when the state directory is on a noexec file system (a bind mount keeps noexec)', async () => {
    const noexec = tempDir('berth-noexec-');
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'noexec,size=1m', 'berth-test-noexec', noexec]);
    try {
      const workspaces = path.join(noexec, 'state', 'workspaces');
      const auto = new DockerExecutor(engine, { workspaceRoot: workspaces });
      expect(await auto.workspaceDelivery()).toEqual({
        mount: false,
        reason: `${workspaces} is on a file system mounted noexec, so the job could not run what it downloads into its workspace`,
      });
      const job = await auto.startJob(spec());
      jobs.push(job);
      expect((await phase(job, 'cp /bin/busybox . && ./busybox echo ran')).out).toBe('ran\n');
      await job.destroy();
      const forced = new DockerExecutor(engine, { workspaceRoot: workspaces, workspace: 'mount' });
      await expect(forced.startJob(spec())).rejects.toMatchObject({
        code: 'BERTH_CONFIG_INVALID',
        message: expect.stringContaining('mounted noexec') as string,
      });
    } finally {
      execFileSync('umount', [noexec]);
    }
  });

  it("the orphan sweep removes the directories of the containers it removes and of jobs that died before theirs, and no other's", async () => {
    const alive = testLauncherId('alive');
    const orphan = await startMounted({ launcherId: testLauncherId('dead') });
    const live = await startMounted({ launcherId: alive });
    const dirs = readdirSync(root);
    expect(dirs).toHaveLength(2);
    // A job that died between making its directory and its container: one made long ago goes,
    // one just made (perhaps another berth's, making its container now) stays.
    const old = path.join(root, 'berth-died-before-its-container-1a2b3c4d');
    mkdirSync(path.join(old, 'mnt', 'workspace'), { recursive: true });
    utimesSync(old, new Date(Date.now() - 3_600_000), new Date(Date.now() - 3_600_000));
    const young = path.join(root, 'berth-being-made-5e6f7a8b');
    mkdirSync(young);
    const unrelated = path.join(root, 'not-a-job');
    mkdirSync(unrelated);
    utimesSync(unrelated, new Date(0), new Date(0));
    // One named as berth's but not root's: not made by berth, left alone.
    const planted = path.join(root, 'berth-planted-9f8e7d6c');
    mkdirSync(planted);
    chownSync(planted, 1983, 1983);
    utimesSync(planted, new Date(0), new Date(0));
    // The live job's directory is as old as a stale one: its container naming it keeps it.
    for (const dir of dirs) {
      utimesSync(
        path.join(root, dir),
        new Date(Date.now() - 3_600_000),
        new Date(Date.now() - 3_600_000),
      );
    }
    // An orphan whose label names a job directory it does not mount (a label can come from an
    // image): its directory, just made, stays.
    const labelled = path.join(root, 'berth-labelled-0a0b0c0d');
    mkdirSync(labelled);
    const impostorName = `berth-impostor-${Date.now()}`;
    await engine.json('POST', '/containers/create', {
      query: { name: impostorName },
      body: {
        Image: busybox,
        Cmd: ['true'],
        Labels: {
          [LABELS.managed]: 'true',
          [LABELS.launcherId]: testLauncherId('dead-impostor'),
          [LABELS.expiresAt]: new Date(Date.now() + 600_000).toISOString(),
          [LABELS.hostDir]: 'berth-labelled-0a0b0c0d',
        },
      },
    });
    const removed = await mounting.removeOrphans(
      (id) => !ownsLauncher(id) || id === alive,
      new Date(),
    );
    expect(removed.sort()).toEqual([orphan.containerName, impostorName].sort());
    const left = readdirSync(root).sort();
    expect(left).toHaveLength(5);
    expect(left).toContain('berth-labelled-0a0b0c0d');
    expect(left).toContain('berth-being-made-5e6f7a8b');
    expect(left).toContain('berth-planted-9f8e7d6c');
    expect(left).toContain('not-a-job');
    // The live job's directory is the one its container names, and it still works.
    expect((await phase(live, 'cat input.txt')).out).toBe('from the host\n');
    expect(left.filter((d) => dirs.includes(d))).toHaveLength(1);
  });
});
