import { describe, expect, it } from 'vitest';
import { startOfLastLines } from './log-view.js';

describe('startOfLastLines', () => {
  it('finds the newline before the last N lines, or -1 when the text has no more', () => {
    expect(startOfLastLines('a\nb\nc\n', 3)).toBe(-1);
    expect(startOfLastLines('a\nb\nc\n', 2)).toBe(1);
    expect('a\nb\nc\n'.slice(startOfLastLines('a\nb\nc\n', 2) + 1)).toBe('b\nc\n');
    expect(startOfLastLines('x'.repeat(10), 1)).toBe(-1);
    const big = 'line\n'.repeat(100_000);
    expect(big.slice(startOfLastLines(big, 5000) + 1)).toBe('line\n'.repeat(5000));
  });
});
