/**
 * ECR registry tokens from the worker's own AWS identity (the AWS SDK's default credential chain:
 * environment, shared config and SSO, web identity, ECS, EC2 instance role), asked for on every
 * job: tokens live 12 hours, and a job must never depend on a `docker login` done by hand.
 * The SDK is loaded only when an image is in ECR; it costs ~90 ms of start-up otherwise.
 */
import { BerthError } from '../domain/errors.js';
import type { EcrRegistry } from '../domain/pool-policy.js';
import type { RegistryCredentials } from './registry-client.js';

export type EcrTokenSource = (registry: EcrRegistry, host: string) => Promise<RegistryCredentials>;

const PERMISSIONS =
  'ecr:GetAuthorizationToken (on *) and ecr:BatchGetImage, ecr:GetDownloadUrlForLayer, ecr:BatchCheckLayerAvailability (on the repository)';

export const ecrTokenFromSdk: EcrTokenSource = async (registry, host) => {
  const { ECRClient, GetAuthorizationTokenCommand } = await import('@aws-sdk/client-ecr');
  const client = new ECRClient({
    region: registry.region,
    useFipsEndpoint: registry.fips,
    maxAttempts: 2,
  });
  try {
    const answer = await client.send(
      new GetAuthorizationTokenCommand({ registryIds: [registry.account] }),
    );
    const token = answer.authorizationData?.[0]?.authorizationToken;
    const decoded = token ? Buffer.from(token, 'base64').toString('utf8') : '';
    const colon = decoded.indexOf(':');
    if (colon <= 0) {
      throw new BerthError(
        'BERTH_ECR_FAILED',
        `ECR in ${registry.region} answered without a usable authorization token for ${host}`,
      );
    }
    return { username: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
  } catch (err) {
    if (err instanceof BerthError) throw err;
    const name = (err as { name?: string }).name ?? '';
    const status = (err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
    const message = (err as Error).message;
    if (name === 'CredentialsProviderError' || /Could not load credentials/i.test(message)) {
      throw new BerthError(
        'BERTH_ECR_NO_CREDENTIALS',
        `image registry ${host} is ECR, and this worker has no AWS credentials to ask for a registry token (${message})`,
        { cause: err },
      );
    }
    if (
      name === 'AccessDeniedException' ||
      status === 403 ||
      /not authorized|AccessDenied/i.test(message)
    ) {
      throw new BerthError(
        'BERTH_ECR_ACCESS_DENIED',
        `ECR refused a registry token for ${host} to this worker's AWS identity; it needs ${PERMISSIONS}`,
        { cause: err },
      );
    }
    throw new BerthError(
      'BERTH_ECR_FAILED',
      `asking ECR in ${registry.region} (${registry.partition}) for a registry token for ${host} failed: ${name || 'error'}: ${message}`,
      { cause: err },
    );
  } finally {
    client.destroy();
  }
};

export const ECR_PERMISSIONS = PERMISSIONS;
