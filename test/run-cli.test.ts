/**
 * `berth run` end to end: the real command, the real engine, busybox images built by the tests.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { mkdirSync, readFileSync, readdirSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import type { EngineClient } from '../src/executor/docker/engine-client.js';
import { LABELS } from '../src/executor/executor.js';
import { jobDir } from './harness/files.js';
import { expectNothingLeftBehind } from './harness/cleanup.js';
import { berthContainers, imageExists, removeRepository, testEngine } from './harness/engine.js';
import { ensureBuiltImage } from './harness/images.js';
import {
  finished,
  jobOutput,
  resultOf,
  runBerth,
  spawnBerth,
  testStateDir,
} from './harness/cli.js';
import { tempDir } from './harness/ownership.js';

let engine: EngineClient;
let busybox: string;

/** `berth run` of a new job directory in the test image, which is never pulled; then `rest`. */
function localRun(...rest: string[]): string[] {
  return ['run', jobDir(), '--image', busybox, '--pull', 'never', ...rest];
}
let stateDir: string;

function berth(
  args: string[],
  env: Record<string, string | undefined> = {},
): ReturnType<typeof runBerth> {
  return runBerth(args, { BERTH_STATE_DIR: stateDir, ...env });
}

beforeAll(() => {
  engine = testEngine();
  busybox = inject('busyboxImage');
  stateDir = testStateDir();
});

afterEach(async () => {
  await expectNothingLeftBehind(engine);
});

afterAll(() => engine.close());

describe('berth run: jobs and their containers', () => {
  it('runs the command after -- in a fresh container and exits 0 with a run.finished event', async () => {
    const dir = jobDir();
    const result = await berth([
      'run',
      dir,
      '--image',
      busybox,
      '--pull',
      'never',
      '--json',
      '--',
      'echo hello; ls',
    ]);
    expect(result.code).toBe(0);
    expect(jobOutput(result)).toBe('hello\nmain.tf\n');
    const end = finished(result);
    expect(end.state).toBe('FINISHED');
    expect(end.exitCode).toBe(0);
    expect(end.image.reference).toBe(busybox);
    expect(end.image.id).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(end.containerId).toMatch(/^[0-9a-f]{64}$/);
    expect(end.phases).toEqual([
      { name: 'task', exitCode: 0, durationMs: expect.any(Number) as number },
    ]);
    expect(end.durations.preparingMs).toBeGreaterThan(0);
  });

  it('keeps the stored logs of the newest BERTH_KEEP_RUNS runs, this one included, and refuses a count that is none', async () => {
    const own = testStateDir();
    const old = path.join(own, 'runs', '20250101t000000z-0123abcd');
    mkdirSync(old, { recursive: true });
    writeFileSync(path.join(old, 'output.log'), 'an old run\n');
    const longAgo = new Date('2025-01-01T00:00:00Z');
    utimesSync(path.join(old, 'output.log'), longAgo, longAgo);
    utimesSync(old, longAgo, longAgo);
    // A run refused before it starts (its configuration) removes nothing.
    const badDir = jobDir();
    mkdirSync(path.join(badDir, '.berth'));
    writeFileSync(path.join(badDir, '.berth', 'config.yml'), 'version: [\n');
    const refusedEarly = await runBerth(
      ['run', badDir, '--image', busybox, '--pull', 'never', '--', 'true'],
      { BERTH_STATE_DIR: own, BERTH_KEEP_RUNS: '1' },
    );
    expect(refusedEarly.code).toBe(2);
    expect(refusedEarly.stderr).toContain('BERTH_CONFIG_INVALID');
    expect(readdirSync(path.join(own, 'runs'))).toEqual([path.basename(old)]);
    const result = await runBerth(localRun('--json', '--', 'echo kept'), {
      BERTH_STATE_DIR: own,
      BERTH_KEEP_RUNS: '1',
    });
    expect(result.code).toBe(0);
    expect(readdirSync(path.join(own, 'runs'))).toEqual([finished(result).runId]);
    const refused = await runBerth(localRun('--', 'true'), {
      BERTH_STATE_DIR: own,
      BERTH_KEEP_RUNS: '0',
    });
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain(
      'BERTH_KEEP_RUNS="0" is not a number of runs (1 or more) nor `all` [BERTH_USAGE]',
    );
  });

  it('gives two jobs different containers, and what one writes the other cannot see', async () => {
    const dir = jobDir();
    const first = await berth([
      'run',
      dir,
      '--image',
      busybox,
      '--pull',
      'never',
      '--json',
      '--',
      'echo secret-data > /tmp/left-by-first; echo marker > left.txt; hostname',
    ]);
    const second = await berth([
      'run',
      dir,
      '--image',
      busybox,
      '--pull',
      'never',
      '--json',
      '--',
      'ls /tmp; ls; hostname; cat /tmp/left-by-first || echo absent',
    ]);
    expect(first.code).toBe(0);
    expect(second.code).toBe(0);
    expect(finished(first).containerId).not.toBe(finished(second).containerId);
    expect(jobOutput(second)).toContain('absent');
    expect(jobOutput(second)).not.toContain('left.txt');
    expect(readdirSync(dir)).toEqual(['main.tf']);
  });

  it('leaves the user directory untouched', async () => {
    const dir = jobDir({ 'main.tf': 'original\n', 'sub/file.txt': 'keep\n' });
    const before = execFileSync(
      'sh',
      ['-c', `cd ${dir} && find . -exec stat -c '%n %a %s %Y' {} +`],
      { encoding: 'utf8' },
    );
    const result = await berth([
      'run',
      dir,
      '--image',
      busybox,
      '--pull',
      'never',
      '--',
      'echo changed > main.tf; rm sub/file.txt; touch new; chmod 700 .',
    ]);
    expect(result.code).toBe(0);
    const after = execFileSync(
      'sh',
      ['-c', `cd ${dir} && find . -exec stat -c '%n %a %s %Y' {} +`],
      { encoding: 'utf8' },
    );
    expect(after).toBe(before);
    expect(readFileSync(path.join(dir, 'main.tf'), 'utf8')).toBe('original\n');
  });

  it('exits 1 when the job fails, with the job exit code recorded', async () => {
    const result = await berth([
      'run',
      jobDir(),
      '--image',
      busybox,
      '--pull',
      'never',
      '--json',
      '--',
      'echo before; exit 7',
    ]);
    expect(result.code).toBe(1);
    const end = finished(result);
    expect(end.state).toBe('FAILED');
    expect(end.jobExitCode).toBe(7);
    expect(end.phases[0]?.exitCode).toBe(7);
  });

  it('reads the default task from DIR/.berth/task.sh', async () => {
    const dir = jobDir({ '.berth/task.sh': 'echo "from the task file as $(id -u)"\n' });
    const result = await berth(['run', dir, '--image', busybox, '--pull', 'never', '--json']);
    expect(result.code).toBe(0);
    expect(jobOutput(result)).toBe('from the task file as 1983\n');
  });

  it('passes several words after -- as one command with its arguments kept intact', async () => {
    const result = await berth([
      'run',
      jobDir(),
      '--image',
      busybox,
      '--pull',
      'never',
      '--json',
      '--',
      'printf',
      '%s|',
      'a b',
      '$HOME',
      "it's",
    ]);
    expect(result.code).toBe(0);
    expect(jobOutput(result)).toBe("a b|$HOME|it's|");
  });
});

describe('berth run: environment and secrets', () => {
  it('passes --env and masks --secret-env values everywhere, even split across writes', async () => {
    const result = await berth([
      'run',
      jobDir(),
      '--image',
      busybox,
      '--pull',
      'never',
      '--json',
      '--env',
      'GREETING=hi there',
      '--secret-env',
      'TOKEN=s3cr3t-value-42',
      '--',
      'echo "$GREETING"; echo "token=$TOKEN"; printf "s3cr3t-"; sleep 0.3; printf "value-42\\n"; echo "$TOKEN" >&2; exit 3',
    ]);
    expect(result.code).toBe(1);
    expect(result.stdout).not.toContain('s3cr3t-value-42');
    expect(result.stdout).not.toMatch(/s3cr3t-\S*value/);
    expect(jobOutput(result, 'stdout')).toBe('hi there\ntoken=*****\n*****\n');
    expect(jobOutput(result, 'stderr')).toBe('*****\n');
    const log = readFileSync(finished(result).log.path as string, 'utf8');
    expect(log).toContain('token=*****');
    expect(log).not.toContain('s3cr3t');
  });

  it('warns of a secret so short that masking it garbles other words, and masks it all the same', async () => {
    const secrets = ['--secret-env', 'REGION=eu', '--secret-env', 'LONG_ENOUGH=s3cr3t-4711'];
    // `on` is in the warning's own words: the warning is not masked (it holds no value).
    secrets.push('--secret-env', 'MODE=on');
    const result = await berth([
      ...localRun('--json', ...secrets),
      '--',
      'echo "in $REGION: europe"',
    ]);
    expect(result.code, result.stderr).toBe(0);
    expect(jobOutput(result, 'stdout')).toBe('in *****: *****rope\n');
    // One warning per short one (busybox's missing user is warned about as well).
    const warnings = finished(result).warnings.filter((w) => w.startsWith('the secret '));
    expect(warnings).toEqual(
      ['REGION', 'MODE'].map(
        (name) =>
          `the secret ${name} is only 2 characters long: every occurrence of it in the output is masked, inside other words too; if it is not secret, pass it as a plain variable`,
      ),
    );
  });

  it('masks secrets in error hints, in the run and before it', async () => {
    // The hint names the image; here the image's name is the secret.
    const inRun = await berth([
      'run',
      jobDir(),
      '--image',
      'zebra-4711:v1',
      '--pull',
      'never',
      '--secret-env',
      'T=zebra-4711',
      '--',
      'true',
    ]);
    expect(inRun.code).toBe(3);
    expect(inRun.stderr).toContain('fix        Pull or build *****:v1 on this machine first');
    // (The image reference itself is shown as given: berth masks output, messages and hints.)
    const errorLines = inRun.stderr.split('\n').filter((l) => /^\s+(error|fix)\s/.test(l));
    expect(errorLines).toHaveLength(2);
    expect(errorLines.join('\n')).not.toContain('zebra-4711');
    // An error about the options themselves comes before the run, and names the bad value.
    const before = await berth([
      'run',
      jobDir(),
      '--image',
      'Bad Image zebra-4711',
      '--secret-env',
      'T=zebra-4711',
      '--',
      'true',
    ]);
    // An invalid image reference is an image error (exit 3), reported before the run starts.
    expect(before.code).toBe(3);
    expect(before.stderr).toContain('*****');
    expect(before.stderr).not.toContain('zebra-4711');
  });

  it("keeps secrets out of the container's configuration (the engine stores it on disk)", async () => {
    const proc = spawnBerth(
      [
        'run',
        jobDir(),
        '--image',
        busybox,
        '--pull',
        'never',
        '--json',
        '--env',
        'PLAIN=visible-value',
        '--secret-env',
        'TOKEN=kept-out-of-config-77',
        '--',
        'echo "length=${#TOKEN}"; sleep 5',
      ],
      { BERTH_STATE_DIR: stateDir },
    );
    await proc.waitFor('length=');
    const [container] = await berthContainers(engine);
    const config = await engine.json<{ Config: { Env: string[] } }>(
      'GET',
      `/containers/${container?.Id}/json`,
    );
    expect(config.Config.Env).toContain('PLAIN=visible-value');
    expect(JSON.stringify(config)).not.toContain('kept-out-of-config-77');
    proc.child.kill('SIGINT');
    const result = await resultOf(proc, true);
    expect(jobOutput(result)).toBe('length=21\n');
  });

  it('never shows a secret in the human view either', async () => {
    const result = await berth([
      'run',
      jobDir(),
      '--image',
      busybox,
      '--pull',
      'never',
      '--secret-env',
      'PW=hunter2hunter2',
      '--',
      'echo pw=$PW',
    ]);
    expect(result.code).toBe(0);
    expect(result.stdout + result.stderr).not.toContain('hunter2');
    expect(result.stdout).toMatch(/^\d\d:\d\d:\d\d\.\d{3} pw=\*{5}$/m);
  });
});

describe('berth run: identity and image handling', () => {
  it('runs as 1983:1983 with workspace files owned by 1983 even when the image says USER root', async () => {
    const image = await ensureBuiltImage(engine, 'user-root', `FROM ${busybox}\nUSER root\n`);
    const result = await berth([
      'run',
      jobDir(),
      '--image',
      image,
      '--pull',
      'never',
      '--json',
      '--',
      'id -u; id -g; touch made.txt; stat -c "%u:%g %n" . made.txt main.tf; echo "HOME=$HOME"; touch "$HOME/ok" && echo home-writable',
    ]);
    expect(result.code).toBe(0);
    expect(jobOutput(result)).toBe(
      '1983\n1983\n1983:1983 .\n1983:1983 made.txt\n1983:1983 main.tf\nHOME=/home/berth\nhome-writable\n',
    );
    expect(finished(result).warnings.join('\n')).toMatch(/no passwd entry for UID 1983/);
  });

  it('runs as 1983 when the image names another user, and uses its home when passwd has 1983', async () => {
    const image = await ensureBuiltImage(
      engine,
      'user-other',
      `FROM ${busybox}\nRUN echo 'app:x:1000:1000::/home/app:/bin/sh' >> /etc/passwd && echo 'spacelift:x:1983:1983::/home/spacelift:/bin/sh' >> /etc/passwd\nUSER 1000\n`,
    );
    const result = await berth([
      'run',
      jobDir(),
      '--image',
      image,
      '--pull',
      'never',
      '--json',
      '--',
      'id -u; echo "$HOME"; whoami; touch "$HOME/x" && echo ok',
    ]);
    expect(result.code).toBe(0);
    expect(jobOutput(result)).toBe('1983\n/home/spacelift\nspacelift\nok\n');
    expect(finished(result).warnings).toEqual([]);
  });

  it('ignores the image ENTRYPOINT and CMD (an ENTRYPOINT of false does not stop the job)', async () => {
    const image = await ensureBuiltImage(
      engine,
      'entrypoint-false',
      `FROM ${busybox}\nENTRYPOINT ["/bin/false"]\nCMD ["--nope"]\n`,
    );
    const result = await berth([
      'run',
      jobDir(),
      '--image',
      image,
      '--pull',
      'never',
      '--json',
      '--',
      'echo still-ran',
    ]);
    expect(result.code).toBe(0);
    expect(jobOutput(result)).toBe('still-ran\n');
  });

  it('fails in preparing with a clear error when the image has no /bin/sh', async () => {
    const image = await ensureBuiltImage(engine, 'no-shell', `FROM ${busybox}\nRUN rm /bin/sh\n`);
    const result = await berth([
      'run',
      jobDir(),
      '--image',
      image,
      '--pull',
      'never',
      '--json',
      '--',
      'true',
    ]);
    expect(result.code).toBe(3);
    const end = finished(result);
    expect(end.error?.code).toBe('BERTH_IMAGE_NO_SHELL');
    expect(end.error?.message).toContain(`image ${image} has no /bin/sh`);
    expect(end.phases).toEqual([]);
  });

  it('drops every capability, sets no-new-privileges and a pids limit', async () => {
    const result = await berth([
      'run',
      jobDir(),
      '--image',
      busybox,
      '--pull',
      'never',
      '--json',
      '--pids-limit',
      '64',
      '--',
      'grep -E "^(CapEff|CapBnd|NoNewPrivs)" /proc/self/status; cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max',
    ]);
    expect(result.code).toBe(0);
    const out = jobOutput(result);
    expect(out).toMatch(/CapEff:\s+0000000000000000/);
    expect(out).toMatch(/CapBnd:\s+0000000000000000/);
    expect(out).toMatch(/NoNewPrivs:\s+1/);
    expect(out.trim().split('\n').at(-1)).toBe('64');
  });

  it('applies --memory and --cpus, and refuses limits the engine rejects instead of running without them', async () => {
    const ok = await berth([
      'run',
      jobDir(),
      '--image',
      busybox,
      '--pull',
      'never',
      '--json',
      '--memory',
      '64m',
      '--cpus',
      '0.5',
      '--',
      // cgroup v1 or v2, whichever the engine's machine has: memory, then CPU quota and period.
      'cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max; ' +
        'if [ -e /sys/fs/cgroup/cpu.max ]; then cat /sys/fs/cgroup/cpu.max; ' +
        'else echo "$(cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us) $(cat /sys/fs/cgroup/cpu/cpu.cfs_period_us)"; fi',
    ]);
    expect(ok.code).toBe(0);
    const [memory, cpu] = jobOutput(ok).trim().split('\n');
    expect(memory).toBe(String(64 * 1024 * 1024));
    // Half a CPU: a quota of half the period.
    const [quota, period] = (cpu ?? '').split(' ').map(Number);
    expect(period).toBeGreaterThan(0);
    expect(quota).toBe((period as number) / 2);
    const tooSmall = await berth([
      'run',
      jobDir(),
      '--image',
      busybox,
      '--pull',
      'never',
      '--json',
      '--memory',
      '1k',
      '--',
      'true',
    ]);
    expect(tooSmall.code).toBe(2);
    expect(finished(tooSmall).error?.code).toBe('BERTH_OPTION_REJECTED');
    expect(finished(tooSmall).error?.message).toMatch(/memory/i);
  });

  it('refuses an OCI runtime the engine does not know', async () => {
    const result = await berth([
      'run',
      jobDir(),
      '--image',
      busybox,
      '--pull',
      'never',
      '--json',
      '--runtime',
      // Not runsc: an engine with gVisor installed knows that one.
      'berth-no-such-runtime',
      '--',
      'true',
    ]);
    expect(result.code).toBe(2);
    expect(finished(result).error?.code).toBe('BERTH_OPTION_REJECTED');
    expect(finished(result).error?.message).toContain('berth-no-such-runtime');
  });

  it('uses the network it is given (none: no interface but loopback)', async () => {
    const result = await berth([
      'run',
      jobDir(),
      '--image',
      busybox,
      '--pull',
      'never',
      '--json',
      '--network',
      'none',
      '--',
      'ls /sys/class/net',
    ]);
    expect(result.code).toBe(0);
    expect(jobOutput(result).trim()).toBe('lo');
  });
});

describe('berth run: pull policies against a real registry', () => {
  const localRef = (): string =>
    `${inject('registryAddress')}/berth-test/busybox:policy-${Date.now()}`;

  it('--pull never fails for an image the engine does not have, naming it and the fix', async () => {
    const ref = localRef();
    const result = await berth([
      'run',
      jobDir(),
      '--image',
      ref,
      '--pull',
      'never',
      '--json',
      '--',
      'true',
    ]);
    expect(result.code).toBe(3);
    const end = finished(result);
    expect(end.error?.code).toBe('BERTH_IMAGE_NOT_FOUND');
    expect(end.error?.message).toContain(ref);
    expect(end.error?.hint).toContain('--pull if-not-present');
  });

  it('checks with the registry, pulls the digest it answered once (if-not-present), and again with always', async () => {
    const ref = inject('registryImage');
    // Tags and digests: other tests may have pulled this image by digest before.
    await removeRepository(engine, ref.slice(0, ref.lastIndexOf(':')));
    expect(await imageExists(engine, ref)).toBe(false);
    const first = await berth([
      'run',
      jobDir(),
      '--image',
      ref,
      '--pull',
      'if-not-present',
      '--json',
      '--',
      'true',
    ]);
    expect(first.code, first.stderr).toBe(0);
    const checked = first.events.find((e) => e.type === 'image.checked');
    expect(checked).toMatchObject({
      pool: 'private',
      registry: inject('registryAddress'),
      credentials: 'none: no Docker config directory is set',
    });
    expect(first.events.some((e) => e.type === 'image.pull')).toBe(true);
    expect(first.events.find((e) => e.type === 'image.resolved')).toMatchObject({
      source: 'pulled',
    });
    const digest = finished(first).image.digest;
    expect(digest).toMatch(
      new RegExp(`^${inject('registryAddress')}/berth-test/busybox@sha256:[0-9a-f]{64}$`),
    );
    expect(digest?.endsWith((checked as { digest: string }).digest)).toBe(true);

    const second = await berth([
      'run',
      jobDir(),
      '--image',
      ref,
      '--pull',
      'if-not-present',
      '--json',
      '--',
      'true',
    ]);
    expect(second.events.some((e) => e.type === 'image.checked')).toBe(true);
    expect(second.events.some((e) => e.type === 'image.pull')).toBe(false);
    expect(finished(second).image).toMatchObject({ source: 'present', digest });

    // The private pool's default for a tag is always: pulled again (cheap: nothing changed).
    const third = await berth(['run', jobDir(), '--image', ref, '--json', '--', 'true']);
    expect(third.code).toBe(0);
    expect(finished(third).image).toMatchObject({ source: 'pulled', digest });
  });

  it('reports an image missing from the registry as not found', async () => {
    const ref = `${inject('registryAddress')}/berth-test/does-not-exist:v1`;
    const result = await berth(['run', jobDir(), '--image', ref, '--json', '--', 'true']);
    expect(result.code).toBe(3);
    expect(finished(result).error?.code).toBe('BERTH_IMAGE_NOT_FOUND');
    expect(finished(result).error?.message).toContain(ref);
  });

  it('rejects an invalid image reference before touching the engine', async () => {
    const result = await berth(['run', jobDir(), '--image', 'Bad Image;rm -rf', '--', 'true']);
    // An image error, exit 3, as `berth image check` gives for the same reference.
    expect(result.code).toBe(3);
    expect(result.stderr).toContain('--image');
    expect(result.stderr).toContain('BERTH_IMAGE_INVALID');
  });
});

describe('berth run: logs', () => {
  it('copies a large workspace in; the progress it shows only grows', async () => {
    const dir = jobDir({ 'small.txt': 'x\n' });
    // Sparse on the host; copying 768 MiB through the engine takes seconds on any machine.
    execFileSync('truncate', ['-s', '768M', path.join(dir, 'big.bin')]);
    const result = await berth([
      'run',
      dir,
      '--image',
      busybox,
      '--pull',
      'never',
      '--json',
      '--',
      'stat -c %s big.bin; rm big.bin',
    ]);
    expect(result.code, result.stderr).toBe(0);
    expect(jobOutput(result)).toBe(`${768 * 1024 * 1024}\n`);
    const progress = result.events.flatMap((e) =>
      e.type === 'workspace.copying' ? [e.bytes] : [],
    );
    // Whether a copy lasts past the first report is the machine's speed: the executor test
    // 'reports copy progress at the interval it is given' proves the reports themselves.
    expect([...progress].sort((a, b) => a - b)).toEqual(progress);
    expect(progress.at(-1)).toBeLessThanOrEqual(768 * 1024 * 1024 + 1024 * 1024);
  });

  it('keeps head and tail of a large output in the stored log with a visible marker, and the job still succeeds', async () => {
    const result = await berth([
      'run',
      jobDir(),
      '--image',
      busybox,
      '--pull',
      'never',
      '--json',
      '--log-limit',
      '64KiB',
      '--',
      'echo FIRST-LINE; i=0; while [ $i -lt 4000 ]; do echo "line $i padding padding padding padding"; i=$((i+1)); done; echo LAST-LINE',
    ]);
    expect(result.code).toBe(0);
    const end = finished(result);
    expect(end.log.bytesCut).toBeGreaterThan(0);
    const log = readFileSync(end.log.path as string);
    expect(log.length).toBeLessThanOrEqual(64 * 1024 + 200);
    const text = log.toString('utf8');
    expect(text.startsWith('FIRST-LINE\n')).toBe(true);
    expect(text.endsWith('LAST-LINE\n')).toBe(true);
    expect(text).toContain(`[berth: ${end.log.bytesCut} bytes of output cut here`);
    // The live stream was not cut: every line reached the caller.
    expect(jobOutput(result).split('\n').length).toBe(4003);
    expect(statSync(end.log.path as string).mode & 0o777).toBe(0o600);
  });
});

describe('berth run: output bytes', () => {
  // berth's pipeline works on the job's bytes (issue 8's throughput): a character cut between two
  // writes, and bytes that are not UTF-8, must come out as the job wrote them.
  const job = "printf 'caf\\303'; sleep 0.3; printf '\\251 \\377 hunter2 ok\\n'";
  const stored = Buffer.from([
    ...Buffer.from('caf'),
    0xc3,
    0xa9,
    0x20,
    0xff,
    ...Buffer.from(' ***** ok\n'),
  ]);
  const runArgs = (...rest: string[]): string[] => {
    const image = ['--image', busybox, '--pull', 'never'];
    return ['run', jobDir(), ...image, '--secret-env', 'PW=hunter2', ...rest];
  };

  it('keeps a character cut between writes and bytes that are not UTF-8 (human view, stored log)', async () => {
    const result = await berth(runArgs('--', job));
    expect(result.code).toBe(0);
    // The harness reads stdout as UTF-8: the lone 0xff shows as U+FFFD there.
    expect(result.stdout).toMatch(/^\d\d:\d\d:\d\d\.\d{3} café \ufffd \*{5} ok$/m);
    const logPath = /log\s+(\S+output\.log)/.exec(result.stderr)?.[1] as string;
    expect(readFileSync(logPath).equals(stored)).toBe(true);
  });

  it('gives the same output as text in --json events', async () => {
    const result = await berth(runArgs('--json', '--', job));
    expect(result.code).toBe(0);
    expect(jobOutput(result, 'stdout')).toBe('café \ufffd ***** ok\n');
    expect(readFileSync(finished(result).log.path as string).equals(stored)).toBe(true);
  });
});

describe('berth run: stopping and clean-up', () => {
  it('ends a job that exceeds --timeout with SIGINT, exit 124, FAILED, and leaves nothing', async () => {
    const result = await berth([
      'run',
      jobDir(),
      '--image',
      busybox,
      '--pull',
      'never',
      '--json',
      '--timeout',
      '2s',
      '--grace',
      '5s',
      '--',
      // Ends on SIGINT whether the timeout comes before or after the job started: the exact
      // SIGINT/grace/SIGKILL sequence is unit-tested with a clock (src/launcher/run-job.test.ts).
      'echo started; sleep 60; echo never',
    ]);
    expect(result.code).toBe(124);
    const end = finished(result);
    expect(end.state).toBe('FAILED');
    expect(end.stop).toEqual({ reason: 'run-timeout', endedBy: 'SIGINT', graceMs: 5000 });
    expect(jobOutput(result)).not.toContain('never');
    expect((await berthContainers(engine)).length).toBe(0);
  });

  it('kills a job that ignores SIGINT once the grace period is over', async () => {
    const proc = spawnBerth(
      [
        'run',
        jobDir(),
        '--image',
        busybox,
        '--pull',
        'never',
        '--json',
        '--grace',
        '1s',
        '--',
        "trap '' INT; echo ready; while :; do sleep 0.1; done",
      ],
      { BERTH_STATE_DIR: stateDir },
    );
    // The job says when its trap is set; only then is it stopped.
    await proc.waitFor('ready');
    proc.child.kill('SIGINT');
    const result = await resultOf(proc, true);
    expect(result.code).toBe(130);
    expect(finished(result)).toMatchObject({
      state: 'STOPPED',
      jobExitCode: 137,
      stop: { reason: 'canceled', endedBy: 'SIGKILL', graceMs: 1000 },
    });
  });

  it('stops a job that is silent for longer than --logs-timeout', async () => {
    const result = await berth([
      'run',
      jobDir(),
      '--image',
      busybox,
      '--pull',
      'never',
      '--json',
      '--logs-timeout',
      // Counted from before the container starts: room for a slow start on a loaded machine.
      '5s',
      '--',
      // Re-arming by output is unit-tested with a clock (src/launcher/run-job.test.ts).
      'echo one; echo two; sleep 60; echo never',
    ]);
    expect(result.code).toBe(124);
    const end = finished(result);
    expect(end.state).toBe('FAILED');
    expect(end.stop?.reason).toBe('logs-timeout');
    expect(jobOutput(result)).toBe('one\ntwo\n');
  });

  it('cancels on SIGINT: the job gets SIGINT, berth exits 130 and leaves nothing', async () => {
    const proc = spawnBerth(
      [
        'run',
        jobDir(),
        '--image',
        busybox,
        '--pull',
        'never',
        '--json',
        '--',
        'trap "echo job-saw-int; exit 5" INT; echo ready; while :; do sleep 0.1; done',
      ],
      { BERTH_STATE_DIR: stateDir },
    );
    await proc.waitFor('ready');
    proc.child.kill('SIGINT');
    const { code } = await proc.exited;
    expect(code).toBe(130);
    expect(proc.stdout()).toContain('job-saw-int');
    const end = JSON.parse(proc.stdout().trim().split('\n').at(-1) as string) as {
      state: string;
      stop: unknown;
    };
    // The job had started: STOPPED, as the reference calls a run stopped while it runs.
    expect(end.state).toBe('STOPPED');
    expect(end.stop).toEqual({ reason: 'canceled', endedBy: 'SIGINT', graceMs: 30000 });
  });

  it('is CANCELED when stopped before anything of the job ran', async () => {
    // A registry that accepts connections and never answers keeps the run in PREPARING.
    let connected: () => void = () => undefined;
    const asked = new Promise<void>((resolve) => (connected = resolve));
    const silent = net.createServer(() => connected());
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const port = (silent.address() as net.AddressInfo).port;
    try {
      const proc = spawnBerth(
        [
          'run',
          jobDir(),
          '--image',
          `127.0.0.1:${port}/team/app:1`,
          '--pull',
          'always',
          '--json',
        ].concat(['--', 'echo never']),
        { BERTH_STATE_DIR: stateDir },
      );
      // berth is waiting for the registry's answer: stopped while preparing.
      await asked;
      proc.child.kill('SIGINT');
      const result = await resultOf(proc, true);
      expect(result.code).toBe(130);
      expect(finished(result)).toMatchObject({ state: 'CANCELED', phases: [], containerId: null });
    } finally {
      silent.close();
    }
  });

  it('a second SIGINT skips the grace period', async () => {
    const proc = spawnBerth(
      [
        'run',
        jobDir(),
        '--image',
        busybox,
        '--pull',
        'never',
        '--json',
        '--grace',
        '60s',
        '--',
        "trap '' INT; echo ready; while :; do sleep 0.1; done",
      ],
      { BERTH_STATE_DIR: stateDir },
    );
    await proc.waitFor('ready');
    proc.child.kill('SIGINT');
    await proc.waitFor('"signal":"SIGINT"');
    proc.child.kill('SIGINT');
    const { code } = await proc.exited;
    expect(code).toBe(130);
    const end = JSON.parse(proc.stdout().trim().split('\n').at(-1) as string) as {
      stop: { endedBy: string };
    };
    expect(end.stop.endedBy).toBe('SIGKILL');
  });

  it('removes the container of a berth killed with SIGKILL at the next start, and nothing else', async () => {
    const bystander = await engine.json<{ Id: string }>('POST', '/containers/create', {
      query: { name: `not-berth-${Date.now()}` },
      body: { Image: busybox, Cmd: ['true'], Labels: { 'dev.example.other': 'true' } },
    });
    try {
      const proc = spawnBerth(
        [
          'run',
          jobDir(),
          '--image',
          busybox,
          '--pull',
          'never',
          '--json',
          '--',
          'echo ready; sleep 600',
        ],
        { BERTH_STATE_DIR: stateDir },
      );
      await proc.waitFor('ready');
      proc.child.kill('SIGKILL');
      await proc.exited;
      const orphans = await berthContainers(engine);
      expect(orphans).toHaveLength(1);
      expect(orphans[0]?.Labels[LABELS.launcherId]).toContain(`/${proc.child.pid}/`);

      const next = await berth([
        'run',
        jobDir(),
        '--image',
        busybox,
        '--pull',
        'never',
        '--',
        'true',
      ]);
      expect(next.code).toBe(0);
      expect(next.stderr).toContain(
        `removed 1 container(s) left by berth processes that are gone: ${orphans[0]?.Names[0]?.slice(1)}`,
      );
      expect(await berthContainers(engine)).toEqual([]);
      const still = await engine.json<{ Id: string }>('GET', `/containers/${bystander.Id}/json`);
      expect(still.Id).toBe(bystander.Id);
    } finally {
      await engine.json('DELETE', `/containers/${bystander.Id}`, { query: { force: 1 } });
    }
  });
});

describe('berth run: clear errors', () => {
  it('names the socket it tried when the engine is unreachable, and how to fix it', async () => {
    const result = await berth(
      ['run', jobDir(), '--image', busybox, '--pull', 'never', '--', 'true'],
      {
        DOCKER_HOST: 'unix:///tmp/berth-no-such.sock',
      },
    );
    expect(result.code).toBe(4);
    expect(result.stderr).toContain(
      'cannot reach the Docker engine at unix:///tmp/berth-no-such.sock',
    );
    expect(result.stderr).toContain('BERTH_DOCKER_UNREACHABLE');
    expect(result.stderr).toMatch(/fix: Start the Docker engine/);
  });

  it('finishes the job on a full disk and says the stored log is incomplete', async () => {
    if (process.getuid?.() !== 0) throw new Error('this test mounts a small tmpfs: run it as root');
    const full = tempDir('berth-full-');
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=256k', 'berth-test-full', full]);
    try {
      const result = await berth(
        [
          'run',
          jobDir(),
          '--image',
          busybox,
          '--pull',
          'never',
          '--json',
          '--',
          'yes 0123456789 | head -c 1000000',
        ],
        { BERTH_STATE_DIR: full },
      );
      expect(result.code).toBe(0);
      expect(finished(result).state).toBe('FINISHED');
      // Nothing of the job's output is lost on the way to the user.
      expect(jobOutput(result)).toBe('0123456789\n'.repeat(100_000).slice(0, 1_000_000));
      expect(finished(result).warnings.join('\n')).toMatch(
        /the stored log \S+output\.log is incomplete \(ENOSPC: no space left on device/,
      );
    } finally {
      execFileSync('umount', [full]);
    }
  });

  it('mounts the workspace as root; a HOME the image lacks from the second run of the image on', async () => {
    if (process.getuid?.() !== 0) throw new Error('mounted workspaces need root: run it as root');
    const own = tempDir('berth-mounting-state-');
    const script =
      'grep -c " /mnt/workspace " /proc/mounts; grep -c " $HOME " /proc/mounts || true; stat -c "%u %a" "$HOME"; touch "$HOME/x" made';
    const outputs: string[] = [];
    for (let i = 0; i < 2; i += 1) {
      const result = await berth(localRun('--json', '--', script), { BERTH_STATE_DIR: own });
      expect(result.code, result.stderr).toBe(0);
      outputs.push(jobOutput(result));
    }
    // The first run learns that the image has no HOME (the engine makes one); the next mounts one.
    expect(outputs).toEqual(['1\n0\n1983 700\n', '1\n1\n1983 700\n']);
    expect(readdirSync(path.join(own, 'workspaces'))).toEqual([]);
    // A state directory given relative to where berth runs is the same directory.
    const relative = await runBerth(
      localRun('--json', '--', 'grep -c " /mnt/workspace " /proc/mounts'),
      { BERTH_STATE_DIR: 'state' },
      { cwd: own },
    );
    expect(relative.code, relative.stderr).toBe(0);
    expect(jobOutput(relative)).toBe('1\n');
    expect(readdirSync(path.join(own, 'state', 'workspaces'))).toEqual([]);
  });

  it('copies the workspace in when the engine does not see the state directory, and says so', async () => {
    if (process.getuid?.() !== 0)
      throw new Error('this test makes a mount namespace: run it as root');
    // berth in a container of its own with the host's engine socket: its state directory is on a
    // file system the engine does not see (here a tmpfs in berth's own mount namespace).
    const unseen = tempDir('berth-unseen-state-');
    const result = await resultOf(
      spawnBerth(
        localRun(
          '--json',
          '--',
          'touch made && stat -c %u made; grep -c " /mnt/workspace " /proc/mounts || true',
        ),
        { BERTH_STATE_DIR: unseen },
        {
          through: [
            'unshare',
            '--mount',
            '--propagation',
            'private',
            'sh',
            '-c',
            'mount -t tmpfs berth-test-unseen "$0" && exec "$@"',
            unseen,
          ],
        },
      ),
      true,
    );
    expect(result.code).toBe(0);
    expect(jobOutput(result)).toBe('1983\n0\n');
    expect(finished(result).warnings.join('\n')).toContain(
      `the Docker engine does not see ${unseen}/workspaces, where berth keeps mounted workspaces, so berth copies the workspace in (slower)`,
    );
  });

  it('refuses a state directory it cannot make before anything starts (it hung under /proc)', async () => {
    const file = path.join(tempDir('berth-state-file-'), 'file');
    writeFileSync(file, '');
    for (const [stateDir, why] of [
      [file, `${file} is a file`],
      [path.join(file, 'below'), `${file} is a file`],
      ['/proc/berth-test-nope', 'this file system does not let berth create it'],
    ] as const) {
      const result = await berth(
        ['run', jobDir(), '--image', busybox, '--pull', 'never', '--json', '--', 'echo ran'],
        { BERTH_STATE_DIR: stateDir },
      );
      expect(result.code, result.stderr).toBe(2);
      const last = result.events.at(-1);
      expect(last).toMatchObject({ type: 'error', error: { code: 'BERTH_USAGE' } });
      expect(JSON.stringify(last)).toContain(
        `cannot create the state directory ${stateDir}: ${why}`,
      );
      expect(JSON.stringify(last)).toContain('in BERTH_STATE_DIR');
      expect(result.stdout).not.toContain('ran');
    }
    // One that is there but read-only: its run logs, tools and caches could not be kept.
    if (process.getuid?.() !== 0) throw new Error('this test mounts a tmpfs: run it as root');
    const readOnly = tempDir('berth-state-ro-');
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'ro,size=64k', 'berth-test-ro', readOnly]);
    try {
      const result = await berth(
        ['run', jobDir(), '--image', busybox, '--pull', 'never', '--', 'echo ran'],
        { BERTH_STATE_DIR: readOnly },
      );
      expect(result.code).toBe(2);
      expect(result.stderr).toContain(
        `the state directory ${readOnly} is there, but this user (uid 0) may not write in it (EROFS) [BERTH_USAGE]`,
      );
      expect(result.stderr).toContain(
        `in BERTH_STATE_DIR: ${readOnly} is on a read-only file system.`,
      );
    } finally {
      execFileSync('umount', [readOnly]);
    }
  });

  it('refuses an image this engine lacks under the pull policy never, naming the policy, not a flag the user did not give', async () => {
    const missing = `berth-test/not-here:${randomBytes(6).toString('hex')}`;
    const result = await berth([
      'run',
      jobDir(),
      '--image',
      missing,
      '--pull',
      'never',
      '--',
      'true',
    ]);
    expect(result.code).toBe(3);
    expect(result.stderr).toContain(
      `image ${missing} is not in the local Docker engine, and the pull policy "never" forbids pulling it [BERTH_IMAGE_NOT_FOUND]`,
    );
    expect(result.stderr).toContain('--pull if-not-present for berth run');
  });

  it('reports a configuration error before an unreachable engine', async () => {
    const dir = jobDir({ '.berth/config.yml': 'version: 3\n' });
    const result = await berth(['run', dir, '--image', busybox, '--pull', 'never', '--', 'true'], {
      DOCKER_HOST: 'unix:///tmp/berth-no-such.sock',
    });
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('BERTH_CONFIG_INVALID');
    expect(result.stderr).not.toContain('BERTH_DOCKER_UNREACHABLE');
  });

  it('says permission denied on the socket and what to do', async () => {
    const dir = tempDir('berth-sock-');
    execFileSync('chmod', ['755', dir]);
    const sock = path.join(dir, 'docker.sock');
    const server = (await import('node:net')).createServer().listen(sock);
    await new Promise((resolve) => server.once('listening', resolve));
    try {
      execFileSync('chmod', ['600', sock]);
      // Root may open any socket: run berth as an unprivileged user, as most users run it.
      const asUser = process.getuid?.() === 0 ? { uid: 65534, gid: 65534 } : {};
      // A state directory that user may write in (berth run refuses one it may not).
      const ownState = tempDir('berth-sock-state-');
      if (process.getuid?.() === 0) execFileSync('chown', ['65534:65534', ownState]);
      const proc = spawnBerth(
        ['run', dir, '--image', busybox, '--pull', 'never', '--', 'true'],
        { DOCKER_HOST: `unix://${sock}`, BERTH_STATE_DIR: ownState },
        asUser,
      );
      const { code } = await proc.exited;
      expect(code).toBe(4);
      expect(proc.stderr()).toContain(`permission denied on the Docker socket unix://${sock}`);
      expect(proc.stderr()).toContain('BERTH_DOCKER_PERMISSION');
      expect(proc.stderr()).toContain('docker` group');
    } finally {
      server.close();
    }
  });

  it('reports every bad option at once, naming each option and value', async () => {
    const result = await berth([
      'run',
      jobDir(),
      '--timeout',
      '10',
      '--pull',
      'sometimes',
      '--env',
      'NOEQUALS',
      '--memory',
      'lots',
      '--',
      'true',
    ]);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('4 problems');
    expect(result.stderr).toContain('--timeout "10"');
    expect(result.stderr).toContain('--pull "sometimes"');
    expect(result.stderr).toContain("--env NOEQUALS: NOEQUALS is not set in berth's environment");
    expect(result.stderr).toContain('--memory');
  });

  it('says what to do when there is no command', async () => {
    const result = await berth(['run', jobDir(), '--image', busybox]);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('no command to run');
    expect(result.stderr).toContain('.berth/task.sh');
  });

  it('says so when the directory does not exist', async () => {
    const result = await berth([
      'run',
      '/nonexistent/berth-dir',
      '--image',
      busybox,
      '--pull',
      'never',
      '--',
      'true',
    ]);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('/nonexistent/berth-dir does not exist');
  });
});
