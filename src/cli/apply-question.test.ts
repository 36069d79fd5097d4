import { describe, expect, it } from 'vitest';
import { appliesPlan } from './apply-question.js';

describe('appliesPlan', () => {
  it('applies on y or yes in any case, discards on anything else', () => {
    for (const answer of ['y', 'Y', 'yes', 'YES', ' yes \r', 'Yes'])
      expect(appliesPlan(answer), answer).toBe(true);
    for (const answer of ['', 'n', 'no', 'yess', 'y y', 'ok', 'apply'])
      expect(appliesPlan(answer), answer).toBe(false);
  });
});
