/**
 * The image a run uses: the pool's policy and the registry check (unless skipped), then the pull
 * policy on the exact digest the registry answered; for the standard runner image, the copy
 * berth built here, or a build from the bundled Dockerfile, when the default cannot be had.
 */
import { BerthError } from '../domain/errors.js';
import type { RunEventInput } from '../domain/run-events.js';
import type { Executor, PullPolicy, ResolvedImage } from '../executor/executor.js';
import {
  parseReferenceOrThrow,
  resolveImageAccess,
  type ImageAccessSettings,
} from './image-access.js';

export type ImageSource = 'present' | 'pulled' | 'built';

export interface PrepareImageInput {
  image: string;
  pullPolicy: PullPolicy;
  pullTimeoutMs: number;
  imageAccess: ImageAccessSettings | null;
  buildMissingImage?: (onLine: (line: string) => void) => Promise<ResolvedImage>;
  executor: Executor;
  emit: (event: RunEventInput) => void;
  warn: (message: string) => void;
  signal: AbortSignal;
  stopped: () => boolean;
}

/** Errors after which the standard runner image may be used from here or built. */
const MISSING = [
  'BERTH_IMAGE_NOT_FOUND',
  'BERTH_IMAGE_PULL_DENIED',
  'BERTH_IMAGE_PULL_FAILED',
  'BERTH_REGISTRY_UNREACHABLE',
];

export async function prepareRunImage(
  input: PrepareImageInput,
): Promise<{ image: ResolvedImage; source: ImageSource }> {
  let image: ResolvedImage;
  let source: ImageSource;
  try {
    image = (await localOnly(input)) ?? (await pullChecked(input));
    source = image.pulled ? 'pulled' : 'present';
  } catch (err) {
    const build = input.buildMissingImage;
    const missing = err instanceof BerthError && MISSING.includes(err.code);
    if (!build || !missing || input.stopped()) throw err;
    const local = await input.executor.localRunnerImage?.(input.image);
    if (local) {
      input.warn(
        `${input.image} cannot be checked with its registry (${err.message}); using the standard runner image berth built here from its bundled Dockerfile`,
      );
      image = local;
      source = 'present';
    } else if (await input.executor.hasImage?.(input.image)) {
      // Present, but its registry could not confirm it: the run fails as for any other image.
      // Building would put berth's runner image under a tag that names another image.
      throw err;
    } else {
      input.warn(
        `${input.image} is neither present nor pullable (${err.message}); building it from berth's bundled runner/Dockerfile`,
      );
      image = await build((line) => input.emit({ type: 'image.build', line }));
      source = 'built';
    }
  }
  input.emit({
    type: 'image.resolved',
    reference: image.reference,
    id: image.id,
    digest: image.digest,
    source,
  });
  return { image, source };
}

/**
 * An image built or loaded on this machine has no registry to check. A private pool runs it
 * and says so (`warning`); a public pool refuses it (it runs only what a registry confirms as
 * public). Null: not such an image, or no registry check was asked for anyway. Shared by runs
 * and `berth image check`, so both decide alike.
 */
export async function findLocalOnlyImage(input: {
  image: string;
  imageAccess: ImageAccessSettings | null;
  executor: Pick<Executor, 'localOnlyImage' | 'localRunnerImage'>;
  /** The run may fall back on berth's own build of its default runner image (see prepareRunImage). */
  runnerImageFallback: boolean;
}): Promise<{ image: ResolvedImage; warning: string } | null> {
  const settings = input.imageAccess;
  if (!settings || !input.executor.localOnlyImage) return null;
  parseReferenceOrThrow(input.image);
  // The standard runner image berth built here has its own way (see prepareRunImage): the
  // registry first, then this copy, on public pools too.
  if (input.runnerImageFallback && (await input.executor.localRunnerImage?.(input.image)))
    return null;
  const local = await input.executor.localOnlyImage(input.image);
  if (!local) return null;
  if (settings.pool === 'public') {
    throw new BerthError(
      'BERTH_POLICY_PRIVATE_IMAGE',
      `image ${input.image} exists only on this machine (built or loaded here, never pulled from a registry); public pools run only images their registry confirms as public`,
      {
        hint: "Push the image to a public registry on the pool's allow-list and use that reference, or run the job on a private worker pool, which runs local images.",
      },
    );
  }
  return {
    image: local,
    warning: `${input.image} is a local image (built or loaded on this machine, never pulled): used without a registry check`,
  };
}

async function localOnly(input: PrepareImageInput): Promise<ResolvedImage | null> {
  const local = await findLocalOnlyImage({
    image: input.image,
    imageAccess: input.imageAccess,
    executor: input.executor,
    runnerImageFallback: Boolean(input.buildMissingImage),
  });
  if (!local) return null;
  input.warn(local.warning);
  return local.image;
}

async function pullChecked(input: PrepareImageInput): Promise<ResolvedImage> {
  const settings = input.imageAccess;
  let reference = input.image;
  let registryAuth: string | null = null;
  if (settings) {
    const access = await resolveImageAccess(input.image, settings, input.signal);
    input.emit({
      type: 'image.checked',
      pool: access.decision.pool,
      registry: access.reference.registry,
      rule: access.decision.rule,
      credentials: access.credentialSource,
      digest: access.digest,
    });
    reference = access.pinned;
    registryAuth = access.engineAuth;
  } else {
    parseReferenceOrThrow(input.image);
  }
  const image = await input.executor.prepareImage(
    { reference, pullPolicy: input.pullPolicy, pullTimeoutMs: input.pullTimeoutMs, registryAuth },
    (p) =>
      input.emit(
        p.kind === 'layer'
          ? {
              type: 'image.pull',
              layer: p.layer,
              status: p.status,
              current: p.current,
              total: p.total,
            }
          : { type: 'image.pull', layer: null, status: p.message },
      ),
    input.signal,
  );
  // Show the reference the user gave; the digest says exactly what ran.
  return {
    ...image,
    reference: input.image,
    digest: image.digest ?? (settings ? reference : null),
  };
}
