/**
 * `--concurrency N` of `berth worker` and `berth up`: how many runs the worker takes at once. One
 * bound for both, the server's (a worker registers with at most 256).
 */
import { BerthError } from '../domain/errors.js';

export const MAX_CONCURRENCY = 256;

export function parseConcurrency(text: string): number {
  const concurrency = Number(text);
  if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > MAX_CONCURRENCY)
    throw new BerthError(
      'BERTH_USAGE',
      `--concurrency ${JSON.stringify(text)}: use a whole number from 1 to ${MAX_CONCURRENCY}`,
    );
  return concurrency;
}
