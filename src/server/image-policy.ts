/**
 * A public pool's allow-list, checked when a run is triggered: a stack whose own runner image
 * comes from a registry the pool refuses would only fail on a worker later, after the queue and
 * the checkout. The worker still decides for the image it resolves (the stack's repository may
 * name one in its runtime configuration); this is the early, clear answer for the common case.
 */
import { parseImageReference } from '../domain/image-reference.js';
import { decideImage, parseAllowList } from '../domain/pool-policy.js';
import type { Pool, Stack } from '../store/store.js';
import { ApiError } from './app.js';

export function checkStackImageAllowed(stack: Stack, pool: Pool | null): void {
  if (!pool || pool.kind !== 'public' || !stack.runnerImage) return;
  const parsed = parseImageReference(stack.runnerImage);
  const rules = parseAllowList(pool.allowList.join(',') || 'default');
  // Malformed references and lists are the worker's to report, with their positions.
  if (!parsed.ok || 'error' in rules) return;
  const decision = decideImage(parsed.reference, 'public', rules.rules, false);
  if (decision.allowed) return;
  throw new ApiError(
    400,
    'IMAGE_NOT_ALLOWED',
    `stack ${stack.id}'s runner image ${stack.runnerImage} cannot run on public pool ${pool.id}: ${decision.reason}`,
    `Use an image from an allow-listed registry (PATCH the stack's runnerImage), move the stack to a private pool, or ask the pool's operator to allow-list ${decision.registry}.`,
  );
}
