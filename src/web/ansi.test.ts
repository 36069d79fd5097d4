import { describe, expect, it } from 'vitest';
import { AnsiParser } from './ansi.js';

describe('AnsiParser', () => {
  it("turns Terraform's colours into classes, carried across pieces until reset", () => {
    const parser = new AnsiParser();
    expect(parser.parse('\u001b[1m\u001b[32m+ create\u001b[0m done')).toEqual([
      { text: '+ create', classes: ['fg-2', 'bold'] },
      { text: ' done', classes: [] },
    ]);
    expect(parser.parse('\u001b[31mred')).toEqual([{ text: 'red', classes: ['fg-1'] }]);
    expect(parser.parse('still red\u001b[39m')).toEqual([{ text: 'still red', classes: ['fg-1'] }]);
    expect(parser.parse('\u001b[91;4mbright\u001b[m')).toEqual([
      { text: 'bright', classes: ['fg-9', 'underline'] },
    ]);
  });

  it('keeps markup as text and drops every other escape and control character', () => {
    const parser = new AnsiParser();
    const segments = parser.parse(
      '<script>alert(1)</script>\u001b[2K\u001b]0;title\u0007\u001b]8;;http://x\u001b\\link\u0007\u001b',
    );
    expect(segments.map((s) => s.text).join('')).toBe('<script>alert(1)</script>link');
  });

  it('maps the first 16 of 256 colours and leaves the rest plain', () => {
    const parser = new AnsiParser();
    expect(parser.parse('\u001b[38;5;3ma\u001b[38;5;200mb\u001b[38;2;1;2;3mc\u001b[1md')).toEqual([
      { text: 'a', classes: ['fg-3'] },
      { text: 'b', classes: [] },
      { text: 'c', classes: [] },
      { text: 'd', classes: ['bold'] },
    ]);
  });
});
