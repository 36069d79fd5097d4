/**
 * Everything that decides whether a job may use an image, before anything is pulled or run:
 * parse and normalise the reference, apply the pool's policy, find the credentials this job may
 * use (none on public pools, except the worker's own AWS identity for ECR), and ask the registry
 * for the manifest with exactly those credentials. The digest the registry answers is the one
 * that runs: a cached image is never a way around the check.
 */
import { BerthError } from '../domain/errors.js';
import {
  formatImageReference,
  parseImageReference,
  repositoryName,
  type ImageReference,
} from '../domain/image-reference.js';
import {
  decideImage,
  ecrHostProblem,
  parseEcrAccounts,
  parseEcrRegistry,
  type AllowRule,
  type PolicyDecision,
  type PoolKind,
} from '../domain/pool-policy.js';
import {
  credentialsFor,
  type DockerConfigDir,
  type HelperRunner,
} from '../registry/docker-config.js';
import type { EcrTokenSource } from '../registry/ecr.js';
import {
  RegistryCheckError,
  checkManifest,
  engineAuthHeader,
  type RegistryCredentials,
} from '../registry/registry-client.js';

export interface ImageAccessSettings {
  pool: PoolKind;
  allowList: readonly AllowRule[];
  dockerConfig: DockerConfigDir | null;
  env: NodeJS.ProcessEnv;
  ecrToken: EcrTokenSource;
  helperRunner?: HelperRunner;
  checkTimeoutMs?: number;
  /** Public pools: AWS accounts whose ECR images the worker's identity may pull (none by default). */
  publicEcrAccounts?: readonly string[];
}

export interface ImageAccess {
  reference: ImageReference;
  /** `registry/repository[:tag][@digest]`. */
  canonical: string;
  decision: PolicyDecision;
  /** Where the credentials came from (or why there are none); never the credentials. */
  credentialSource: string;
  /** X-Registry-Auth for the engine's pull; null: anonymous. */
  engineAuth: string | null;
  /** The manifest digest the registry answered. */
  digest: string;
  /** What to pull and run: `registry/repository@digest`. */
  pinned: string;
}

/** BERTH_PUBLIC_ECR_ACCOUNTS: the accounts a public pool may fetch ECR tokens for. */
export function publicEcrAccountsFrom(env: NodeJS.ProcessEnv): string[] {
  const parsed = parseEcrAccounts(env.BERTH_PUBLIC_ECR_ACCOUNTS ?? '');
  if ('error' in parsed) {
    throw new BerthError('BERTH_USAGE', `BERTH_PUBLIC_ECR_ACCOUNTS: ${parsed.error}`, {
      hint: 'List AWS account ids separated by commas, e.g. BERTH_PUBLIC_ECR_ACCOUNTS=123456789012,210987654321.',
    });
  }
  return parsed.accounts;
}

export function parseReferenceOrThrow(text: string): ImageReference {
  const parsed = parseImageReference(text);
  if (!parsed.ok) throw new BerthError('BERTH_IMAGE_INVALID', parsed.error.message);
  return parsed.reference;
}

/** Policy and credentials only: what `berth image check` shows before it asks the registry. */
export async function decideImageAccess(
  text: string,
  settings: ImageAccessSettings,
): Promise<{
  reference: ImageReference;
  decision: PolicyDecision;
  credentials: RegistryCredentials | null;
  source: string;
}> {
  const reference = parseReferenceOrThrow(text);
  const ecrProblem = ecrHostProblem(reference.registry);
  if (ecrProblem) {
    throw new BerthError(
      'BERTH_ECR_FAILED',
      `image ${text} looks like an ECR image, but ${ecrProblem}`,
    );
  }
  const decision = decideImage(
    reference,
    settings.pool,
    settings.allowList,
    settings.dockerConfig !== null,
    settings.publicEcrAccounts,
  );
  if (!decision.allowed) {
    throw new BerthError(
      decision.refusal === 'ecr-account'
        ? 'BERTH_POLICY_ECR_ACCOUNT_NOT_ALLOWED'
        : 'BERTH_POLICY_REGISTRY_NOT_ALLOWED',
      `image ${text} resolves to registry ${reference.registry}: ${decision.reason}`,
    );
  }
  switch (decision.credentials) {
    case 'none':
      return {
        reference,
        decision,
        credentials: null,
        source:
          settings.pool === 'public'
            ? 'none: public pools pull anonymously'
            : 'none: no Docker config directory is set',
      };
    case 'ecr': {
      const ecr = parseEcrRegistry(reference.registry);
      if (!ecr)
        throw new BerthError(
          'BERTH_INTERNAL',
          `policy chose ECR credentials for ${reference.registry}, which is not an ECR host`,
        );
      const credentials = await settings.ecrToken(ecr, reference.registry);
      return {
        reference,
        decision,
        credentials,
        source: `ECR token for account ${ecr.account} in ${ecr.region}, from this worker's AWS identity`,
      };
    }
    case 'docker-config': {
      const found = await credentialsFor(
        settings.dockerConfig as DockerConfigDir,
        reference.registry,
        settings.env,
        settings.helperRunner,
      );
      return { reference, decision, credentials: found.credentials, source: found.source };
    }
  }
}

/** The full per-job decision, including the registry check. */
export async function resolveImageAccess(
  text: string,
  settings: ImageAccessSettings,
  signal?: AbortSignal,
): Promise<ImageAccess> {
  const { reference, decision, credentials, source } = await decideImageAccess(text, settings);
  let digest: string;
  try {
    ({ digest } = await checkManifest(reference, credentials, {
      timeoutMs: settings.checkTimeoutMs,
      signal,
    }));
  } catch (err) {
    if (!(err instanceof RegistryCheckError)) throw err;
    throw checkFailure(err, text, settings.pool, credentials, source);
  }
  return {
    reference,
    canonical: formatImageReference(reference),
    decision,
    credentialSource: source,
    engineAuth: credentials ? engineAuthHeader(reference.registry, credentials) : null,
    digest,
    pinned: `${repositoryName(reference)}@${digest}`,
  };
}

function checkFailure(
  err: RegistryCheckError,
  text: string,
  pool: PoolKind,
  credentials: RegistryCredentials | null,
  source: string,
): BerthError {
  switch (err.failure) {
    case 'not-found':
      return new BerthError('BERTH_IMAGE_NOT_FOUND', `image ${text} not found: ${err.message}`, {
        cause: err,
      });
    case 'unreachable':
      return new BerthError('BERTH_REGISTRY_UNREACHABLE', err.message, { cause: err });
    case 'unauthorized':
    case 'denied':
      if (pool === 'public') {
        return new BerthError(
          'BERTH_POLICY_PRIVATE_IMAGE',
          `image ${text} cannot be pulled anonymously (${err.message}); private images need a private worker pool`,
          { cause: err },
        );
      }
      if (credentials) {
        return new BerthError(
          'BERTH_REGISTRY_AUTH_FAILED',
          `${err.message}: the registry rejected the credentials from ${source}`,
          { cause: err },
        );
      }
      return new BerthError(
        'BERTH_IMAGE_PULL_DENIED',
        `${err.message}, and berth has no credentials for it (${source})`,
        {
          cause: err,
          hint: 'Point berth at a Docker config directory with credentials for this registry: BERTH_DOCKER_CONFIG_DIR=DIR or --docker-config-dir DIR (log in with `docker --config DIR login REGISTRY`).',
        },
      );
    case 'protocol':
      return new BerthError('BERTH_IMAGE_PULL_FAILED', err.message, { cause: err });
  }
}
