/**
 * Which images a worker pool may run, decided on the normalised reference (never on the raw
 * string). Public pools are shared by tenants: they run only images from allow-listed registries,
 * and never with registry credentials. Private pools run images from any registry.
 */
import { DOCKER_HUB_ALIASES, parseImageReference, type ImageReference } from './image-reference.js';

export type PoolKind = 'public' | 'private';
export const POOL_KINDS: readonly PoolKind[] = ['public', 'private'];

export type HostRule =
  /** This host (with port when given), case-insensitive. */
  | { kind: 'host'; host: string }
  /** Any host under this domain (`*.azurecr.io`), not the domain itself. */
  | { kind: 'subdomain'; domain: string }
  /** One label ending in this suffix, then the domain (`*-docker.pkg.dev`). */
  | { kind: 'label-suffix'; suffix: string; domain: string }
  /** `<account>.dkr.ecr[-fips].<region>.amazonaws.com[.cn]`, every region and partition. */
  | { kind: 'ecr-private' }
  /** Docker Hub under any of its names. */
  | { kind: 'docker-hub' };

export interface AllowRule {
  /** How the rule is written in settings and shown in decisions: `docker.io`, `*.gcr.io`. */
  pattern: string;
  rule: HostRule;
}

const rule = (pattern: string, hostRule: HostRule): AllowRule => ({ pattern, rule: hostRule });

/** The seed document's list, expressed as host rules. */
export const DEFAULT_PUBLIC_ALLOW_LIST: readonly AllowRule[] = [
  rule('*.azurecr.io', { kind: 'subdomain', domain: 'azurecr.io' }),
  rule('<account>.dkr.ecr.<region>.amazonaws.com', { kind: 'ecr-private' }),
  rule('docker.io', { kind: 'docker-hub' }),
  rule('gcr.io', { kind: 'host', host: 'gcr.io' }),
  rule('*.gcr.io', { kind: 'subdomain', domain: 'gcr.io' }),
  rule('docker.pkg.dev', { kind: 'host', host: 'docker.pkg.dev' }),
  rule('*-docker.pkg.dev', { kind: 'label-suffix', suffix: '-docker', domain: 'pkg.dev' }),
  rule('ghcr.io', { kind: 'host', host: 'ghcr.io' }),
  rule('public.ecr.aws', { kind: 'host', host: 'public.ecr.aws' }),
  rule('quay.io', { kind: 'host', host: 'quay.io' }),
  rule('registry.gitlab.com', { kind: 'host', host: 'registry.gitlab.com' }),
];

export interface EcrRegistry {
  account: string;
  region: string;
  fips: boolean;
  /** `aws`, `aws-cn` or `aws-us-gov`. */
  partition: string;
}

const ECR_HOST =
  /^(\d{12})\.dkr\.ecr(-fips)?\.([a-z]{2}(?:-gov|-iso[a-z]?)?-[a-z]+-\d{1,2})\.amazonaws\.com(\.cn)?$/;

/** Recognises an ECR private registry host; null for anything else (including public.ecr.aws). */
export function parseEcrRegistry(registry: string): EcrRegistry | null {
  const match = ECR_HOST.exec(registry.toLowerCase());
  if (!match) return null;
  const [, account, fips, region, china] = match as unknown as [
    string,
    string,
    string | undefined,
    string,
    string | undefined,
  ];
  const chinaRegion = region.startsWith('cn-');
  // The China partition has its own domain; a mismatch is not an ECR host.
  if (chinaRegion !== Boolean(china)) return null;
  const partition = chinaRegion ? 'aws-cn' : region.includes('-gov-') ? 'aws-us-gov' : 'aws';
  return { account, region, fips: Boolean(fips), partition };
}

/**
 * For a host shaped like an ECR registry that parseEcrRegistry refuses: why (an unknown region
 * name, or a region outside the domain's partition). Null for anything else.
 */
export function ecrHostProblem(registry: string): string | null {
  const match = /^(\d{12})\.dkr\.ecr(?:-fips)?\.([^.]+)\.amazonaws\.com(\.cn)?$/.exec(
    registry.toLowerCase(),
  );
  if (!match || parseEcrRegistry(registry)) return null;
  const region = match[2] as string;
  if (!/^[a-z]{2}(?:-gov|-iso[a-z]?)?-[a-z]+-\d{1,2}$/.test(region)) {
    return `"${region}" in ${registry} is not an AWS region name (e.g. eu-west-1)`;
  }
  return region.startsWith('cn-')
    ? `region ${region} is in the China partition, whose ECR hosts end in .amazonaws.com.cn`
    : `region ${region} is not in the China partition, so its ECR hosts end in .amazonaws.com, not .amazonaws.com.cn`;
}

export function matchesRule(registry: string, hostRule: HostRule): boolean {
  const host = registry.toLowerCase();
  switch (hostRule.kind) {
    case 'host':
      return host === hostRule.host.toLowerCase();
    case 'subdomain': {
      const suffix = `.${hostRule.domain.toLowerCase()}`;
      return (
        host.endsWith(suffix) &&
        /^[a-z0-9.-]+$/.test(host.slice(0, -suffix.length)) &&
        !host.includes(':')
      );
    }
    case 'label-suffix': {
      const tail = `${hostRule.suffix}.${hostRule.domain}`.toLowerCase();
      return host.endsWith(tail) && /^[a-z0-9][a-z0-9-]*$/.test(host.slice(0, -tail.length));
    }
    case 'ecr-private':
      return parseEcrRegistry(host) !== null;
    case 'docker-hub':
      return DOCKER_HUB_ALIASES.includes(host);
  }
}

export function findAllowRule(registry: string, allowList: readonly AllowRule[]): AllowRule | null {
  return allowList.find((entry) => matchesRule(registry, entry.rule)) ?? null;
}

/**
 * Reads an operator's allow-list: comma-separated entries, each `default` (the whole default
 * list), a host (`registry.example.com`, `127.0.0.1:5000`), `*.domain` or `*-suffix.domain`.
 * Without `default` the list replaces the defaults; with it, it extends them.
 */
export function parseAllowList(text: string): { rules: AllowRule[] } | { error: string } {
  const rules: AllowRule[] = [];
  const entries = text
    .split(',')
    .map((e) => e.trim())
    .filter(Boolean);
  if (entries.length === 0)
    return { error: 'the allow-list is empty; use "default" for the built-in list' };
  for (const entry of entries) {
    if (entry === 'default') {
      rules.push(...DEFAULT_PUBLIC_ALLOW_LIST);
    } else if (/^\*\.[a-z0-9-]+(\.[a-z0-9-]+)+$/i.test(entry)) {
      rules.push(rule(entry, { kind: 'subdomain', domain: entry.slice(2) }));
    } else if (/^\*-[a-z0-9-]+\.[a-z0-9-]+(\.[a-z0-9-]+)+$/i.test(entry)) {
      const dot = entry.indexOf('.');
      rules.push(
        rule(entry, {
          kind: 'label-suffix',
          suffix: entry.slice(1, dot),
          domain: entry.slice(dot + 1),
        }),
      );
    } else if (
      /^(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*|\[[0-9a-f:.]+\])(?::\d{1,5})?$/i.test(
        entry,
      )
    ) {
      rules.push(
        rule(
          entry,
          entry.toLowerCase() === 'docker.io'
            ? { kind: 'docker-hub' }
            : { kind: 'host', host: entry },
        ),
      );
    } else {
      return {
        error: `allow-list entry ${JSON.stringify(entry)} is not a registry host (e.g. quay.io, 127.0.0.1:5000), *.domain, *-suffix.domain or "default"`,
      };
    }
  }
  return { rules };
}

export type CredentialSource = 'none' | 'docker-config' | 'ecr';

export interface PolicyDecision {
  allowed: boolean;
  pool: PoolKind;
  registry: string;
  /** The allow-list entry that matched (public pools), null otherwise. */
  rule: string | null;
  /** Where credentials for the pull and the registry check come from. */
  credentials: CredentialSource;
  /** Why, in a sentence fit for an error message or `berth image check`. */
  reason: string;
  /** What refused the image, when it is refused. */
  refusal?: 'registry' | 'ecr-account';
}

/**
 * Decides whether a pool may run an image and which credentials the pull may use. Pure: the
 * registry check that every job also makes happens elsewhere.
 */
export function decideImage(
  reference: ImageReference,
  pool: PoolKind,
  allowList: readonly AllowRule[],
  dockerConfigured: boolean,
  /**
   * Public pools: the AWS accounts whose ECR images the worker's own identity may fetch tokens
   * for. None by default: otherwise any tenant could run every private image the worker's role
   * may pull (the worker would be a confused deputy).
   */
  publicEcrAccounts: readonly string[] = [],
): PolicyDecision {
  const { registry } = reference;
  const ecrRegistry = parseEcrRegistry(registry);
  const ecr = ecrRegistry !== null;
  if (pool === 'private') {
    const credentials: CredentialSource = ecr ? 'ecr' : dockerConfigured ? 'docker-config' : 'none';
    return {
      allowed: true,
      pool,
      registry,
      rule: null,
      credentials,
      reason: 'private pools may run images from any registry',
    };
  }
  const match = findAllowRule(registry, allowList);
  if (!match) {
    return {
      allowed: false,
      pool,
      registry,
      rule: null,
      credentials: 'none',
      reason:
        `registry ${registry} is not on this public pool's allow-list (${allowList.map((r) => r.pattern).join(', ')}). ` +
        'Public pools run only public images from allow-listed registries; a private worker pool may use any registry.',
      refusal: 'registry',
    };
  }
  if (ecrRegistry && !publicEcrAccounts.includes(ecrRegistry.account)) {
    return {
      allowed: false,
      pool,
      registry,
      rule: match.pattern,
      credentials: 'none',
      reason:
        `ECR account ${ecrRegistry.account} is not one whose images this public pool fetches with the worker's own AWS identity ` +
        `(BERTH_PUBLIC_ECR_ACCOUNTS: ${publicEcrAccounts.length ? publicEcrAccounts.join(', ') : 'none listed'}). ` +
        "Otherwise any tenant could run every private image the worker's AWS role may pull.",
      refusal: 'ecr-account',
    };
  }
  return {
    allowed: true,
    pool,
    registry,
    rule: match.pattern,
    // On a public pool the only credential ever used is the worker's own AWS identity, for ECR.
    credentials: ecr ? 'ecr' : 'none',
    reason: `registry ${registry} matches allow-list entry ${match.pattern}`,
  };
}

/**
 * Resource limits every job on a public pool gets unless the operator sets others
 * (BERTH_PUBLIC_MEMORY_LIMIT, BERTH_PUBLIC_CPU_LIMIT) or the run asks for its own: one tenant's
 * job must not starve the others on a shared worker. Private pools keep the engine's defaults.
 */
export const PUBLIC_POOL_DEFAULT_LIMITS = { memory: '2g', cpus: '1' } as const;

/** Reads an operator's list of AWS account ids (12 digits each, comma-separated). */
export function parseEcrAccounts(text: string): { accounts: string[] } | { error: string } {
  const accounts = text
    .split(',')
    .map((a) => a.trim())
    .filter(Boolean);
  const bad = accounts.find((a) => !/^\d{12}$/.test(a));
  if (bad !== undefined)
    return { error: `${JSON.stringify(bad)} is not an AWS account id (12 digits)` };
  return { accounts };
}

/**
 * The pull policy when none is given: private pools pull tags every time (`always`: the tag may
 * have moved), digests only when missing; public pools pull when missing. Every job is checked
 * with the registry first either way, and runs the digest the registry answered.
 */
export function defaultPullPolicy(
  pool: PoolKind,
  reference: ImageReference,
): 'always' | 'if-not-present' {
  return pool === 'private' && reference.digest === null ? 'always' : 'if-not-present';
}

/**
 * Why a public pool refuses a stack's own runner image or the pool's default image (its registry
 * is not on the pool's allow-list), or null: a private pool, no image, or one whose registry is
 * allowed (an ECR image's account is the worker's to decide). Malformed references
 * and lists are left to the worker, which reports them with their positions.
 */
export function stackImageRefusal(
  runnerImage: string | null,
  pool: { kind: PoolKind; allowList: readonly string[] },
): { reason: string; registry: string } | null {
  if (pool.kind !== 'public' || !runnerImage) return null;
  const parsed = parseImageReference(runnerImage);
  const rules = parseAllowList(pool.allowList.join(',') || 'default');
  if (!parsed.ok || 'error' in rules) return null;
  const decision = decideImage(parsed.reference, 'public', rules.rules, false);
  // Only the registry is decided here: which ECR accounts a public pool fetches from is each
  // worker's setting (BERTH_PUBLIC_ECR_ACCOUNTS), which the server does not know.
  return decision.refusal === 'registry'
    ? { reason: decision.reason, registry: decision.registry }
    : null;
}
