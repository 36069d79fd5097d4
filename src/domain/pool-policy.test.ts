import { describe, expect, it } from 'vitest';
import { parseImageReference, type ImageReference } from './image-reference.js';
import {
  DEFAULT_PUBLIC_ALLOW_LIST,
  ecrHostProblem,
  decideImage,
  parseAllowList,
  parseEcrAccounts,
  parseEcrRegistry,
  type AllowRule,
} from './pool-policy.js';

function ref(text: string): ImageReference {
  const parsed = parseImageReference(text);
  if (!parsed.ok) throw new Error(parsed.error.message);
  return parsed.reference;
}

function list(text: string): AllowRule[] {
  const parsed = parseAllowList(text);
  if ('error' in parsed) throw new Error(parsed.error);
  return parsed.rules;
}

const EXTENDED = list('default,127.0.0.1:5000,*.corp.example');
const ONLY_LOCAL = list('127.0.0.1:5000');

// reference, allowed on a public pool with the defaults, rule that matched
const DEFAULTS: [string, boolean, string | null][] = [
  // Docker Hub in every spelling, including the ones that trip raw-string globs.
  ['debian', true, 'docker.io'],
  ['debian:bookworm-slim', true, 'docker.io'],
  ['library/debian', true, 'docker.io'],
  ['docker.io/library/debian', true, 'docker.io'],
  ['index.docker.io/library/debian', true, 'docker.io'],
  ['registry-1.docker.io/library/debian', true, 'docker.io'],
  ['registry.hub.docker.com/library/debian', true, 'docker.io'],
  ['org/app', true, 'docker.io'],
  [`org/app@sha256:${'a'.repeat(64)}`, true, 'docker.io'],
  ['repo', true, 'docker.io'],
  // Cloud registries.
  ['myreg.azurecr.io/app:v1', true, '*.azurecr.io'],
  ['a.b.azurecr.io/app', true, '*.azurecr.io'],
  [
    '123456789012.dkr.ecr.us-east-1.amazonaws.com/app',
    true,
    '<account>.dkr.ecr.<region>.amazonaws.com',
  ],
  [
    '123456789012.dkr.ecr.eu-central-1.amazonaws.com/team/app',
    true,
    '<account>.dkr.ecr.<region>.amazonaws.com',
  ],
  [
    '123456789012.dkr.ecr-fips.us-gov-west-1.amazonaws.com/app',
    true,
    '<account>.dkr.ecr.<region>.amazonaws.com',
  ],
  [
    '123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn/app',
    true,
    '<account>.dkr.ecr.<region>.amazonaws.com',
  ],
  [
    '123456789012.dkr.ecr.ap-southeast-4.amazonaws.com/app',
    true,
    '<account>.dkr.ecr.<region>.amazonaws.com',
  ],
  ['gcr.io/project/app', true, 'gcr.io'],
  ['eu.gcr.io/project/app', true, '*.gcr.io'],
  ['us-central1-docker.pkg.dev/project/repo/app', true, '*-docker.pkg.dev'],
  ['europe-west4-docker.pkg.dev/p/r/app', true, '*-docker.pkg.dev'],
  ['docker.pkg.dev/p/r/app', true, 'docker.pkg.dev'],
  ['ghcr.io/org/app', true, 'ghcr.io'],
  ['public.ecr.aws/spacelift/runner-terraform:latest', true, 'public.ecr.aws'],
  ['quay.io/org/app', true, 'quay.io'],
  ['registry.gitlab.com/group/project/app', true, 'registry.gitlab.com'],
  ['GHCR.IO/org/app', true, 'ghcr.io'],
  // Look-alikes and everything else.
  ['azurecr.io/app', false, null],
  ['evilazurecr.io/app', false, null],
  ['azurecr.io.evil.com/app', false, null],
  ['myreg.azurecr.io:5000/app', false, null],
  ['docker.io.evil.com/app', false, null],
  ['evil.com/docker.io/app', false, null],
  ['ghcr.io.evil.com/org/app', false, null],
  ['notgcr.io/app', false, null],
  ['gcr.io:443/app', false, null],
  ['evil-docker.pkg.dev.attacker.com/app', false, null],
  ['a.b-docker.pkg.dev/app', false, null],
  ['12345.dkr.ecr.us-east-1.amazonaws.com/app', false, null],
  ['123456789012.dkr.ecr.us-east-1.amazonaws.com.evil.com/app', false, null],
  ['123456789012.dkr.ecr.cn-north-1.amazonaws.com/app', false, null],
  ['123456789012.dkr.ecr.us-east-1.amazonaws.com.cn/app', false, null],
  ['123456789012.dkr.ecr.useast1.amazonaws.com/app', false, null],
  ['localhost:5000/app', false, null],
  ['localhost/app', false, null],
  ['127.0.0.1:5000/app', false, null],
  ['[::1]:5000/app', false, null],
  ['registry.corp.example/app', false, null],
  ['quay.io:8443/app', false, null],
  ['gitlab.com/app', false, null],
];

describe('public pool with the default allow-list', () => {
  it.each(DEFAULTS)('%s → allowed %s (%s)', (text, allowed, pattern) => {
    const ecr = parseEcrRegistry(ref(text).registry);
    const decision = decideImage(
      ref(text),
      'public',
      DEFAULT_PUBLIC_ALLOW_LIST,
      true,
      ecr ? [ecr.account] : [],
    );
    expect(decision.allowed).toBe(allowed);
    expect(decision.rule).toBe(pattern);
    if (!allowed) {
      expect(decision.reason).toContain(
        `registry ${ref(text).registry} is not on this public pool's allow-list`,
      );
      expect(decision.reason).toContain('a private worker pool may use any registry');
    }
  });

  it('never uses docker-config credentials on a public pool, only the worker identity for listed ECR accounts', () => {
    for (const [text, allowed] of DEFAULTS) {
      const ecr = parseEcrRegistry(ref(text).registry);
      const decision = decideImage(
        ref(text),
        'public',
        DEFAULT_PUBLIC_ALLOW_LIST,
        true,
        ecr ? [ecr.account] : [],
      );
      const expected = allowed && ecr ? 'ecr' : 'none';
      expect(decision.credentials, text).toBe(expected);
    }
  });

  it("refuses ECR images of accounts the operator did not list: the worker's AWS identity is not the tenant's", () => {
    const image = ref('123456789012.dkr.ecr.eu-west-1.amazonaws.com/team/app:v1');
    const unlisted = decideImage(image, 'public', DEFAULT_PUBLIC_ALLOW_LIST, false);
    expect(unlisted).toMatchObject({ allowed: false, refusal: 'ecr-account', credentials: 'none' });
    expect(unlisted.reason).toContain('ECR account 123456789012 is not one whose images');
    expect(unlisted.reason).toContain('BERTH_PUBLIC_ECR_ACCOUNTS: none listed');
    const other = decideImage(image, 'public', DEFAULT_PUBLIC_ALLOW_LIST, false, ['210987654321']);
    expect(other.allowed).toBe(false);
    expect(other.reason).toContain('BERTH_PUBLIC_ECR_ACCOUNTS: 210987654321');
    const listed = decideImage(image, 'public', DEFAULT_PUBLIC_ALLOW_LIST, false, ['123456789012']);
    expect(listed).toMatchObject({ allowed: true, credentials: 'ecr' });
    // Private pools are one tenant's: its own worker identity is its own business.
    expect(decideImage(image, 'private', [], false).credentials).toBe('ecr');
  });

  it.each([
    ['123456789012, 210987654321', ['123456789012', '210987654321']],
    ['', []],
  ])('reads the account list %j', (text, accounts) => {
    expect(parseEcrAccounts(text)).toEqual({ accounts });
  });

  it('refuses an account list with something that is not an account id', () => {
    expect(parseEcrAccounts('12345,123456789012')).toEqual({
      error: '"12345" is not an AWS account id (12 digits)',
    });
  });
});

describe('private pools run any registry', () => {
  it.each(DEFAULTS.map(([text]) => text))('%s', (text) => {
    const decision = decideImage(ref(text), 'private', DEFAULT_PUBLIC_ALLOW_LIST, true);
    expect(decision.allowed).toBe(true);
    expect(decision.credentials).toBe(
      parseEcrRegistry(ref(text).registry) ? 'ecr' : 'docker-config',
    );
  });

  it('uses no credentials when no Docker config directory is set', () => {
    expect(decideImage(ref('ghcr.io/o/a'), 'private', [], false).credentials).toBe('none');
  });
});

describe('operator allow-lists', () => {
  it.each<[string, AllowRule[], boolean]>([
    ['127.0.0.1:5000/app', EXTENDED, true],
    ['127.0.0.1:5001/app', EXTENDED, false],
    ['127.0.0.1/app', EXTENDED, false],
    ['debian', EXTENDED, true],
    ['registry.corp.example/app', EXTENDED, true],
    ['deep.registry.corp.example/app', EXTENDED, true],
    ['corp.example/app', EXTENDED, false],
    ['debian', ONLY_LOCAL, false],
    ['ghcr.io/org/app', ONLY_LOCAL, false],
    ['127.0.0.1:5000/app', ONLY_LOCAL, true],
  ])('%s → %s', (text, rules, allowed) => {
    expect(decideImage(ref(text), 'public', rules, false).allowed).toBe(allowed);
  });

  it('reads docker.io as Docker Hub with all its aliases', () => {
    const rules = list('docker.io');
    expect(
      decideImage(ref('registry.hub.docker.com/library/x'), 'public', rules, false).allowed,
    ).toBe(true);
  });

  it('reads *-suffix entries', () => {
    const rules = list('*-registry.example.com');
    expect(decideImage(ref('eu-registry.example.com/app'), 'public', rules, false).allowed).toBe(
      true,
    );
    expect(decideImage(ref('registry.example.com/app'), 'public', rules, false).allowed).toBe(
      false,
    );
  });

  it.each(['', ' , ', 'https://ghcr.io', 'ghcr.io/org', '*.', '*', 'regex:.*', 'a b'])(
    'rejects %j with a message',
    (text) => {
      const parsed = parseAllowList(text);
      expect('error' in parsed).toBe(true);
    },
  );
});

describe('parseEcrRegistry', () => {
  it.each([
    [
      '123456789012.dkr.ecr.us-east-1.amazonaws.com',
      { account: '123456789012', region: 'us-east-1', fips: false, partition: 'aws' },
    ],
    [
      '123456789012.dkr.ecr-fips.us-gov-east-1.amazonaws.com',
      { account: '123456789012', region: 'us-gov-east-1', fips: true, partition: 'aws-us-gov' },
    ],
    [
      '123456789012.dkr.ecr.cn-northwest-1.amazonaws.com.cn',
      { account: '123456789012', region: 'cn-northwest-1', fips: false, partition: 'aws-cn' },
    ],
  ])('%s', (host, expected) => {
    expect(parseEcrRegistry(host)).toEqual(expected);
  });
  it.each([
    'public.ecr.aws',
    'dkr.ecr.us-east-1.amazonaws.com',
    '123456789012.dkr.ecr.us-east-1.amazonaws.com:443',
  ])('%s is not ECR private', (host) => {
    expect(parseEcrRegistry(host)).toBeNull();
  });
});

describe('ecrHostProblem', () => {
  it.each([
    [
      '123456789012.dkr.ecr.cn-north-1.amazonaws.com',
      'China partition, whose ECR hosts end in .amazonaws.com.cn',
    ],
    ['123456789012.dkr.ecr.us-east-1.amazonaws.com.cn', 'not in the China partition'],
    [
      '123456789012.dkr.ecr.useast1.amazonaws.com',
      '"useast1" in 123456789012.dkr.ecr.useast1.amazonaws.com is not an AWS region name',
    ],
  ])('%s', (host, words) => {
    expect(ecrHostProblem(host)).toContain(words);
  });
  it.each(['123456789012.dkr.ecr.us-east-1.amazonaws.com', 'ghcr.io', 'public.ecr.aws'])(
    '%s has none',
    (host) => {
      expect(ecrHostProblem(host)).toBeNull();
    },
  );
});
