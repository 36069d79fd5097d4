import { describe, expect, it } from 'vitest';
import { BerthError } from '../domain/errors.js';
import { MAX_CONCURRENCY, parseConcurrency } from './concurrency.js';

describe('--concurrency', () => {
  it('takes a whole number from 1 to the bound the server registers', () => {
    expect(parseConcurrency('1')).toBe(1);
    expect(parseConcurrency(String(MAX_CONCURRENCY))).toBe(256);
    for (const bad of ['0', '257', '2.5', 'eight', '']) {
      let error: unknown;
      try {
        parseConcurrency(bad);
      } catch (err) {
        error = err;
      }
      expect(error, bad).toBeInstanceOf(BerthError);
      expect((error as BerthError).message).toBe(
        `--concurrency ${JSON.stringify(bad)}: use a whole number from 1 to 256`,
      );
    }
  });
});
