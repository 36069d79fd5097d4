import { describe, expect, it } from 'vitest';
import { BerthError } from '../domain/errors.js';
import { shellQuote } from '../domain/hook-script.js';
import { checkRunOptions, taskScript, type RawRunOptions } from './run-options.js';

const defaults: RawRunOptions = {
  env: [],
  secretEnv: [],
  timeout: '70m',
  logsTimeout: '7m',
  grace: '30s',
  pullTimeout: '10m',
  pidsLimit: '1024',
  network: 'bridge',
  pull: 'auto',
  pool: 'private',
  logLimit: '4MiB',
};

function problems(raw: Partial<RawRunOptions>): string {
  try {
    checkRunOptions({ ...defaults, ...raw });
  } catch (err) {
    expect(err).toBeInstanceOf(BerthError);
    return (err as BerthError).message;
  }
  throw new Error('expected a usage error');
}

describe('checkRunOptions', () => {
  it('has the documented defaults', () => {
    expect(checkRunOptions(defaults)).toMatchObject({
      timeoutMs: 70 * 60_000,
      logsTimeoutMs: 7 * 60_000,
      graceMs: 30_000,
      pullPolicy: 'auto',
      pool: 'private',
      allowList: null,
      logLimitBytes: 4 * 1024 * 1024,
      network: 'bridge',
      pidsLimit: 1024,
    });
  });

  it('splits NAME=VALUE at the first =', () => {
    expect(checkRunOptions({ ...defaults, env: ['A=b=c'], secretEnv: ['S=x'] })).toMatchObject({
      env: { A: 'b=c' },
      secretEnv: { S: 'x' },
    });
  });

  it.each([
    [{ env: ['1BAD=x'] }, '--env "1BAD"'],
    [{ env: ['HOME=/x'] }, 'berth sets HOME itself'],
    [{ secretEnv: ['S='] }, 'nothing to mask'],
    [{ env: ['S=1'], secretEnv: ['S=2'] }, 'both set S'],
    [{ pull: 'maybe' }, '--pull "maybe"'],
    [{ timeout: '5' }, '--timeout "5"'],
    [{ cpus: 'x' }, '--cpus'],
    [{ memory: '12 parsecs' }, '--memory'],
    [{ pidsLimit: '2' }, '--pids-limit'],
    [{ network: 'bad net' }, '--network'],
    [{ runtime: '$(x)' }, '--runtime'],
    [{ image: 'UPPER/Case' }, 'uppercase'],
    [{ image: 'a;b' }, '";"'],
    [{ logLimit: '10' }, 'at least 1KiB'],
    [{ pool: 'shared' }, '--pool "shared"'],
    [{ allowedRegistries: 'https://x' }, '--allowed-registries'],
  ])('rejects %j naming the option', (raw, text) => {
    expect(problems(raw)).toContain(text);
  });

  it('lists every problem at once', () => {
    expect(problems({ pull: 'x', timeout: 'y' })).toMatch(/^2 problems/);
  });
});

describe('task commands', () => {
  it('takes one word as shell text and several as a quoted command', () => {
    expect(taskScript(['echo $HOME && ls'])).toBe('echo $HOME && ls');
    expect(taskScript(['printf', '%s', "it's", 'a b'])).toBe(`printf %s 'it'\\''s' 'a b'`);
    expect(shellQuote('plain-word_1.2')).toBe('plain-word_1.2');
  });
});
