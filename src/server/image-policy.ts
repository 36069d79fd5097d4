/**
 * A public pool's allow-list against a stack's own runner image, checked when the stack is made
 * or changed and when a run is triggered (the pool's list may have changed since): otherwise the
 * run would only fail on a worker later, after the queue and the checkout. The worker still
 * decides for the image it resolves (the stack's repository may name one in its runtime
 * configuration); this is the early, clear answer for the common case.
 */
import { stackImageRefusal } from '../domain/pool-policy.js';
import type { Pool } from '../store/store.js';
import { ApiError } from './app.js';

export function checkStackImageAllowed(
  stack: { id: string; runnerImage: string | null },
  pool: Pool | null,
): void {
  const refusal = pool ? stackImageRefusal(stack.runnerImage, pool) : null;
  if (!pool || !refusal) return;
  throw new ApiError(
    400,
    'IMAGE_NOT_ALLOWED',
    `stack ${stack.id}'s runner image ${stack.runnerImage} cannot run on public pool ${pool.id}: ${refusal.reason}`,
    `Use an image from an allow-listed registry (the stack's runnerImage), move the stack to a private pool, or ask the pool's operator to allow-list ${refusal.registry}.`,
  );
}
