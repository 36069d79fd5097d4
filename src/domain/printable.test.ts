import { describe, expect, it } from 'vitest';
import { printable } from './printable.js';

describe('printable', () => {
  it.each([
    ['aws_instance.web["a"]', 'aws_instance.web["a"]'],
    ['x["a\nberth: Apply this plan? yes"]', 'x["a\\u{000a}berth: Apply this plan? yes"]'],
    ['x\r\u001b[2K', 'x\\u{000d}\\u{001b}[2K'],
    ['tab\there', 'tab\\u{0009}here'],
    ['\u009b31m \u2028 \u202e \u2066', '\\u{009b}31m \\u{2028} \\u{202e} \\u{2066}'],
    ['ünïcödé ✓', 'ünïcödé ✓'],
  ])('%j', (text, shown) => {
    expect(printable(text)).toBe(shown);
  });
});
