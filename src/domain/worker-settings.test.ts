import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  KNOWN_BERTH_VARIABLES,
  extraMountsFor,
  jobVariables,
  parseExtraMounts,
  readWorkerJobSettings,
  settingOf,
  unknownVariablesWarning,
} from './worker-settings.js';

describe('unknown BERTH_ variables', () => {
  it('names each one with the known name nearest to it, in one line', () => {
    expect(
      unknownVariablesWarning({
        BERTH_WORKER_NETWRK: 'x',
        BERTH_LAUNCHER_RUN_TIMOUT: '1m',
        BERTH_SERVER: 'http://x',
        PATH: '/bin',
      }),
    ).toBe(
      'warning: berth does not know the variables BERTH_LAUNCHER_RUN_TIMOUT (did you mean BERTH_LAUNCHER_RUN_TIMEOUT?), BERTH_WORKER_NETWRK (did you mean BERTH_WORKER_NETWORK?); they are ignored',
    );
    expect(unknownVariablesWarning({ BERTH_POOL_TOKN: 't' })).toBe(
      'warning: berth does not know the variable BERTH_POOL_TOKN (did you mean BERTH_POOL_TOKEN?); it is ignored',
    );
  });

  it('says nothing when every BERTH_ variable is known (or one of the test suite)', () => {
    expect(
      unknownVariablesWarning({ BERTH_STATE_DIR: '/s', BERTH_TEST_SUITE_DIR: '/t', HOME: '/' }),
    ).toBeNull();
  });

  it('knows every BERTH_ variable the source reads from an environment', () => {
    const read = new Set<string>();
    const walk = (dir: string): void => {
      for (const entry of readdirSync(dir, { withFileTypes: true })) {
        const file = path.join(dir, entry.name);
        if (entry.isDirectory()) walk(file);
        else if (file.endsWith('.ts') && !file.endsWith('.test.ts')) {
          const text = readFileSync(file, 'utf8');
          for (const m of text.matchAll(/env(?:\.|\[')(BERTH_[A-Z0-9_]+)/g))
            read.add(m[1] as string);
          for (const m of text.matchAll(/settingOf\(\s*env,\s*'(BERTH_[A-Z0-9_]+)'/g))
            read.add(m[1] as string);
        }
      }
    };
    walk(path.join(import.meta.dirname, '..'));
    // Where a tool's releases come from: read as a prefix and a name (tool-releases.ts).
    const releases = readFileSync(
      path.join(import.meta.dirname, '..', 'workflow', 'tool-releases.ts'),
      'utf8',
    );
    const names = [...releases.matchAll(/setting\('([A-Z_]+)'\)/g)].map((m) => m[1] as string);
    expect(names).toContain('SIGNATURE_SUFFIX');
    for (const tool of ['TERRAFORM', 'OPENTOFU'])
      for (const name of names) read.add(`BERTH_${tool}_${name}`);
    expect(read.size).toBeGreaterThan(15);
    expect([...read].filter((name) => !KNOWN_BERTH_VARIABLES.includes(name))).toEqual([]);
  });
});

describe('the reference names beside berth names', () => {
  it('takes either, and refuses both set differently', () => {
    expect(
      settingOf(
        { SPACELIFT_WORKER_NETWORK: 'n' },
        'BERTH_WORKER_NETWORK',
        'SPACELIFT_WORKER_NETWORK',
      ),
    ).toBe('n');
    expect(
      settingOf(
        { BERTH_WORKER_NETWORK: 'a', SPACELIFT_WORKER_NETWORK: 'a' },
        'BERTH_WORKER_NETWORK',
        'SPACELIFT_WORKER_NETWORK',
      ),
    ).toBe('a');
    expect(() =>
      settingOf(
        { BERTH_WORKER_NETWORK: 'a', SPACELIFT_WORKER_NETWORK: 'b' },
        'BERTH_WORKER_NETWORK',
        'SPACELIFT_WORKER_NETWORK',
      ),
    ).toThrow(
      expect.objectContaining({
        code: 'BERTH_USAGE',
        message: 'BERTH_WORKER_NETWORK=a and SPACELIFT_WORKER_NETWORK=b disagree; set one of them',
      }),
    );
  });
});

describe('whitelisted and masked variables', () => {
  it('passes the whitelisted ones, the masked among them as secrets, and warns about the rest', () => {
    const settings = readWorkerJobSettings({
      SPACELIFT_WHITELIST_ENVS: 'AWS_REGION, VAULT_TOKEN,MISSING',
      SPACELIFT_MASK_ENVS: 'VAULT_TOKEN,OTHER',
      AWS_REGION: 'eu-west-1',
      VAULT_TOKEN: 's.123',
      OTHER: 'x',
    });
    expect(settings.env).toEqual({ AWS_REGION: 'eu-west-1' });
    expect(settings.secretEnv).toEqual({ VAULT_TOKEN: 's.123' });
    expect(settings.warnings).toEqual([
      'BERTH_WHITELIST_ENVS names MISSING, which is not set here: runs do not get it',
      'BERTH_MASK_ENVS names OTHER, which BERTH_WHITELIST_ENVS does not pass: nothing to mask',
    ]);
  });

  it.each([
    [
      { BERTH_WHITELIST_ENVS: 'BERTH_POOL_TOKEN' },
      /BERTH_WHITELIST_ENVS names BERTH_POOL_TOKEN: berth's own settings/,
    ],
    [
      { BERTH_WHITELIST_ENVS: 'A-B' },
      /BERTH_WHITELIST_ENVS\/SPACELIFT_WHITELIST_ENVS: "A-B" is not an environment variable name/,
    ],
    [
      { SPACELIFT_WORKER_RO_EXTRA_MOUNTS: 'relative:/x' },
      /SPACELIFT_WORKER_RO_EXTRA_MOUNTS: "relative:\/x": both paths must be absolute/,
    ],
  ])('refuses %j (BERTH_USAGE)', (env, message) => {
    expect(() => readWorkerJobSettings(env)).toThrow(message);
    expect(() => readWorkerJobSettings(env)).toThrow(
      expect.objectContaining({ code: 'BERTH_USAGE' }),
    );
  });

  it("lets the stack's variables win over the worker's, plain or masked", () => {
    expect(
      jobVariables({ env: { A: 'worker', B: 'worker' }, secretEnv: { C: 'worker' } }, [
        { name: 'A', value: 'stack', secret: true },
        { name: 'C', value: 'stack', secret: false },
      ]),
    ).toEqual({ env: { B: 'worker', C: 'stack' }, secretEnv: { A: 'stack' } });
  });
});

describe('extra mounts', () => {
  it('parses the reference form, read-write unless :ro', () => {
    expect(
      parseExtraMounts('/etc/ssl/certs:/mnt/certs:ro, /srv/cache:/cache/, /b://berthold//x'),
    ).toEqual({
      mounts: [
        { source: '/etc/ssl/certs', target: '/mnt/certs', readOnly: true },
        { source: '/srv/cache', target: '/cache', readOnly: false },
        { source: '/b', target: '/berthold/x', readOnly: false },
      ],
    });
  });

  it.each([
    ['/a', 'is not /host/path:/container/path[:ro]'],
    ['/a:/b:rx', 'the mode is ro or rw'],
    ['/a:/mnt/workspace/x', "overlaps the job's workspace (/mnt/workspace)"],
    ['/a:/', "overlaps the job's workspace"],
    ['/a:/x/../mnt', 'the container path has . or ..'],
    ['/a:/mnt/./workspace', 'the container path has . or ..'],
    ['/a://mnt//workspace', "overlaps the job's workspace (/mnt/workspace)"],
    ['/a:/mnt', "overlaps the job's workspace"],
    ['/a:/berth', "berth's control directory (/berth)"],
    ['/a:/berth/phases:ro', "berth's control directory (/berth)"],
    ['/a:/berth/', "berth's control directory (/berth)"],
  ])('refuses %s', (text, error) => {
    const parsed = parseExtraMounts(text);
    expect('error' in parsed && parsed.error).toContain(error);
  });

  it('gives read-only runs the read-only list and write runs the write list', () => {
    const m = (target: string) => ({ source: '/s', target, readOnly: false });
    const mounts = { all: [m('/all')], readOnly: [m('/ro')], writeOnly: [m('/wo')] };
    expect(extraMountsFor(true, mounts).map((x) => x.target)).toEqual(['/all', '/ro']);
    expect(extraMountsFor(false, mounts).map((x) => x.target)).toEqual(['/all', '/wo']);
  });
});
