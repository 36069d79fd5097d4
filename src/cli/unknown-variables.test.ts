/**
 * A misspelt BERTH_ variable sets nothing: every command says so once, on stderr, with the name
 * it was probably meant to be; a --json stream on stdout stays JSON.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { afterAll, describe, expect, it } from 'vitest';
import { main } from './main.js';

const CONFIG = mkdtempSync(path.join(tmpdir(), 'berth-unknown-vars-'));
afterAll(() => rmSync(CONFIG, { recursive: true, force: true }));

async function berth(
  argv: string[],
  env: Record<string, string>,
): Promise<{ code: number; stdout: string; stderr: string }> {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  let out = '';
  let err = '';
  stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
  stderr.on('data', (chunk: Buffer) => (err += chunk.toString()));
  // No login of the machine's user: the server commands find no server.
  const code = await main(argv, { stdout, stderr }, { XDG_CONFIG_HOME: CONFIG, ...env });
  return { code, stdout: out, stderr: err };
}

const WARNING = (name: string, meant: string): string =>
  `berth: warning: berth does not know the variable ${name} (did you mean ${meant}?); it is ignored\n`;

describe('unknown BERTH_ variables', () => {
  it('are named by berth run, once, before its own error, with stdout left to the JSON stream', async () => {
    const result = await berth(['run', '/nonexistent-berth-dir', '--json'], {
      BERTH_DEFAULT_RUNER_IMAGE: 'alpine:3',
    });
    expect(result.code).toBe(2);
    expect(
      result.stderr.startsWith(WARNING('BERTH_DEFAULT_RUNER_IMAGE', 'BERTH_DEFAULT_RUNNER_IMAGE')),
    ).toBe(true);
    expect(result.stderr.split('warning:').length).toBe(2);
    const events = result.stdout
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as { type: string; error?: { code: string } });
    expect(events.at(-1)?.error?.code).toBe('BERTH_WORKSPACE_UNREADABLE');
    expect(result.stdout).not.toContain('RUNER');
  });

  it('are named by the server commands too: a misspelt BERTH_SERVER is why there is no server', async () => {
    const result = await berth(['stack', 'list'], { BERTH_SEVER: 'http://127.0.0.1:1' });
    expect(result.code).toBe(2);
    expect(result.stderr).toContain(WARNING('BERTH_SEVER', 'BERTH_SERVER'));
    expect(result.stderr).toContain('no berth server to talk to');
  });

  it("are the server's settings when a worker is given them: berth worker says they change nothing there", async () => {
    const env = { BERTH_WORKER_FORGET_AFTER: '7d', BERTH_WORKER_LEASE_TIMEOUT: '2m' };
    const worker = await berth(['worker'], env);
    expect(worker.code).toBe(2);
    expect(worker.stderr).toContain(
      'berth: warning: BERTH_WORKER_LEASE_TIMEOUT, BERTH_WORKER_FORGET_AFTER are settings of `berth server`, which `berth worker` does not read: set them where the server runs\n',
    );
    expect(worker.stderr).toContain('BERTH_USAGE');
    // The same variables for the server's own commands, or the worker list, are no mistake.
    for (const argv of [
      ['worker', 'list'],
      ['stack', 'list'],
    ]) {
      const other = await berth(argv, env);
      expect(other.code).toBe(2);
      expect(other.stderr).not.toContain('warning');
    }
  });

  it('say nothing when every BERTH_ variable is known, or belongs to the test suite', async () => {
    const result = await berth(['stack', 'list'], {
      BERTH_DEFAULT_RUNNER_IMAGE: 'alpine:3',
      BERTH_TEST_ANYTHING: '1',
    });
    expect(result.code).toBe(2);
    expect(result.stderr).not.toContain('warning');
    expect(result.stderr).toContain('no berth server to talk to');
  });

  it('leave out the variable `stack env set STACK NAME` takes its value from (BERTH_GIT_TOKEN, as docs/server.md shows)', async () => {
    const env = { BERTH_GIT_TOKEN: 'a-token', BERTH_SEVER: 'x' };
    const set = await berth(['stack', 'env', 'set', 'infra', 'BERTH_GIT_TOKEN', '--secret'], env);
    expect(set.code).toBe(2);
    expect(set.stderr).toContain(WARNING('BERTH_SEVER', 'BERTH_SERVER'));
    expect(set.stderr).not.toContain('BERTH_GIT_TOKEN');
    // Given as NAME=VALUE, or for another command, it is what it is: a variable berth does not read.
    for (const argv of [
      ['stack', 'env', 'set', 'infra', 'BERTH_GIT_TOKEN=x', '--secret'],
      ['stack', 'list'],
    ]) {
      const other = await berth(argv, { BERTH_GIT_TOKEN: 'a-token' });
      expect(other.stderr).toContain('berth does not know the variable BERTH_GIT_TOKEN');
    }
  });
});
