import { cutAt } from '../../test/harness/chunks.js';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { fromByteString, textLength, toByteString } from './byte-string.js';

describe('byte strings', () => {
  it('hold the UTF-8 bytes of a text, one per character, and give the text back', () => {
    const bytes = toByteString('é€😀a');
    expect([...bytes].map((c) => c.charCodeAt(0))).toEqual([
      ...Buffer.from('é€😀a', 'utf8').values(),
    ]);
    expect(Buffer.from(bytes, 'latin1').toString('utf8')).toBe('é€😀a');
    expect(fromByteString(bytes)).toBe('é€😀a');
  });

  it('give invalid UTF-8 back as U+FFFD, as decoding the bytes does', () => {
    expect(fromByteString('a\xffb')).toBe('a\ufffdb');
  });

  it('count the length of their text however they were cut (property)', () => {
    fc.assert(
      fc.property(
        fc.string({ unit: 'grapheme', maxLength: 30 }),
        fc.array(fc.nat({ max: 120 }), { maxLength: 6 }),
        (text, cuts) => {
          const pieces = cutAt(toByteString(text), cuts);
          expect(pieces.reduce((sum, piece) => sum + textLength(piece), 0)).toBe(text.length);
        },
      ),
    );
  });
});
