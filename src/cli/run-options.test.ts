import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { BerthError } from '../domain/errors.js';
import { shellQuote } from '../domain/hook-script.js';
import {
  checkRunOptions,
  envFileEntries,
  secretValuesOf,
  taskScript,
  type RawRunOptions,
} from './run-options.js';

const defaults: RawRunOptions = {
  env: [],
  secretEnv: [],
  timeout: '70m',
  logsTimeout: '7m',
  grace: '30s',
  pullTimeout: '10m',
  pidsLimit: '1024',
  network: 'bridge',
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
    [{ pull: 'auto' }, '--pull "auto": use one of always, if-not-present, never'],
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

  it("takes NAME alone from berth's environment, and refuses a NAME that is not set", () => {
    expect(
      checkRunOptions({ ...defaults, env: ['A'], secretEnv: ['TOKEN'] }, { A: '1', TOKEN: 't' }),
    ).toMatchObject({ env: { A: '1' }, secretEnv: { TOKEN: 't' } });
    let message = '';
    try {
      checkRunOptions({ ...defaults, secretEnv: ['TOKEN'] }, {});
    } catch (err) {
      message = (err as BerthError).message;
    }
    expect(message).toContain(
      "--secret-env TOKEN: TOKEN is not set in berth's environment; set it (export TOKEN=…, or read -rs TOKEN && export TOKEN) or put it in a --secret-env-file",
    );
    // A secret's value is never suggested for the command line, where `ps` sees it.
    expect(message).not.toContain('TOKEN=VALUE');
    try {
      checkRunOptions({ ...defaults, env: ['STAGE'] }, {});
    } catch (err) {
      message = (err as BerthError).message;
    }
    expect(message).toContain(
      "--env STAGE: STAGE is not set in berth's environment; set it (export STAGE=…) or give STAGE=VALUE",
    );
  });

  it('reads Docker env-files, flags over files, and names file:line in problems', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'berth-envfile-'));
    const file = path.join(dir, 'job.env');
    writeFileSync(file, '# comment\n\nA=from file\n  B="quoted"\nFROM_ENV\nC=1\n');
    expect(
      checkRunOptions({ ...defaults, envFile: [file], env: ['C=2'] }, { FROM_ENV: 'e' }),
    ).toMatchObject({ env: { A: 'from file', B: '"quoted"', FROM_ENV: 'e', C: '2' } });
    writeFileSync(file, 'OK=1\nbad name=x\nMISSING\n');
    let message = '';
    try {
      checkRunOptions({ ...defaults, secretEnvFile: [file, path.join(dir, 'none')] }, {});
    } catch (err) {
      message = (err as BerthError).message;
    }
    expect(message).toContain(`${file}:2: "bad name"`);
    expect(message).toContain(`${file}:3: MISSING: MISSING is not set`);
    expect(message).toContain(
      `--secret-env-file ${path.join(dir, 'none')}: cannot be read (ENOENT)`,
    );
  });

  it('finds every secret value to mask: given, from the environment, from env-files', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'berth-envfile-'));
    const file = path.join(dir, 'secrets.env');
    writeFileSync(file, '# c\nFILE_SECRET=in-file\nFROM_ENV_TOO\nbad name=still-masked\n');
    expect(
      secretValuesOf(
        {
          secretEnv: ['GIVEN=on-argv', 'FROM_ENV', 'UNSET', 'not a name'],
          secretEnvFile: [file, path.join(dir, 'missing')],
        },
        { FROM_ENV: 'env-value', FROM_ENV_TOO: 'env-value-2' },
      ).sort(),
    ).toEqual(['env-value', 'env-value-2', 'in-file', 'not a name', 'on-argv', 'still-masked']);
  });

  it('parses env-file lines as Docker does: comments and blank lines skipped', () => {
    expect(envFileEntries('#x\r\n\n  A=b c \r\n\t# y\nB')).toEqual([
      { line: 3, text: 'A=b c ' },
      { line: 5, text: 'B' },
    ]);
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
