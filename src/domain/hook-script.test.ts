import { cutAt } from '../../test/harness/chunks.js';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { toByteString } from './byte-string.js';
import {
  ADD_MASK_LINE_LIMIT,
  AddMaskFilter,
  BYTE_LINES,
  phaseScript,
  type LineForm,
} from './hook-script.js';

describe('phaseScript', () => {
  it('chains hooks and command with && in { } blocks', () => {
    expect(
      phaseScript({
        before: ['echo a', 'echo b # comment'],
        command: 'run',
        after: ['echo c'],
        strict: false,
      }),
    ).toBe('{\necho a\n} &&\n{\necho b # comment\n} &&\n{\nrun\n} &&\n{\necho c\n}\n');
  });

  it('runs strict hooks at the top level under set -eu, and stops after a failing command', () => {
    expect(
      phaseScript({ before: ['false\ntrue'], command: 'run', after: ['echo done'], strict: true }),
    ).toBe(
      'set -eu\nfalse\ntrue\nset +eu\n{\nrun\n}\nberth_status=$?\n[ "$berth_status" -eq 0 ] || exit "$berth_status"\nset -eu\necho done\nset +eu\n',
    );
    expect(phaseScript({ before: [], command: 'run', after: [], strict: true })).toBe(
      '{\nrun\n}\n',
    );
  });
});

function run(
  chunks: string[],
  form?: LineForm,
): { out: string; masked: string[]; overlong: number } {
  const masked: string[] = [];
  let overlong = 0;
  const filter = new AddMaskFilter(
    {
      mask: (v) => masked.push(v),
      overlong: () => (overlong += 1),
    },
    form,
  );
  const out = chunks.map((c) => filter.write(c)).join('') + filter.flush();
  return { out, masked, overlong };
}

const LONG_VALUE = 'v'.repeat(ADD_MASK_LINE_LIMIT);

describe('AddMaskFilter', () => {
  it.each<[string[], string, string[]]>([
    [['::add-mask s3cret\n', 'next\n'], '::add-mask *****\nnext\n', ['s3cret']],
    [['::add', '-mask s3', 'cret\nafter'], '::add-mask *****\nafter', ['s3cret']],
    [['text ::add-mask not-a-directive\n'], 'text ::add-mask not-a-directive\n', []],
    [[':: other\n'], ':: other\n', []],
    [['::add-mask \n'], '::add-mask \n', []],
    [['a\n::add-mask v1\r\nb'], 'a\n::add-mask *****\r\nb', ['v1']],
    [['::add-mask at-the-end'], '::add-mask *****', ['at-the-end']],
    [
      ['partial line', ' continues\n::add-mask x\n'],
      'partial line continues\n::add-mask *****\n',
      ['x'],
    ],
  ])('%j', (chunks, out, masked) => {
    expect(run(chunks)).toEqual({ out, masked, overlong: 0 });
  });

  it.each<[string, string[], string]>([
    ['in one piece', [`::add-mask ${LONG_VALUE}\r\nnext\n`], '::add-mask *****\nnext\n'],
    ['in pieces', ['::add-mask ', LONG_VALUE, '\r', '\nnext\n'], '::add-mask *****\nnext\n'],
    ['unterminated', ['::add-mask ', LONG_VALUE], '::add-mask *****'],
  ])('hides an overlong directive line without reading its value (%s)', (_n, chunks, out) => {
    expect(run(chunks)).toEqual({ out, masked: [], overlong: 1 });
  });

  it('does not buffer an endless ::add-mask line', () => {
    // The attack: a 600 MB unterminated directive line was held whole (695 MB RSS).
    const filter = new AddMaskFilter({ mask: () => {}, overlong: () => {} });
    const megabyte = 'x'.repeat(1 << 20);
    let out = filter.write('::add-mask ');
    for (let i = 0; i < 64; i += 1) {
      out += filter.write(megabyte);
      expect(filter.held).toBeLessThanOrEqual(ADD_MASK_LINE_LIMIT + 1);
    }
    out += filter.write('\nafter\n');
    expect(out).toBe('::add-mask *****\nafter\n');
  });

  it('gives the same result however the output is cut (property)', () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.constantFrom(
            'plain line',
            '::add-mask secret-1',
            '::add-mas',
            '',
            ':: x',
            `::add-mask ${LONG_VALUE}\r`,
            `::add-mask ${LONG_VALUE.slice('::add-mask '.length)}\r`,
          ),
          { maxLength: 6 },
        ),
        fc.array(fc.nat(3 * ADD_MASK_LINE_LIMIT), { maxLength: 6 }),
        (lines, cuts) => {
          const text = lines.join('\n');
          const whole = run([text]);
          const chunks = cutAt(text, cuts);
          expect(run(chunks)).toEqual(whole);
        },
      ),
    );
  });

  describe('on byte strings (the output pipeline)', () => {
    it('reports the value as text, cut anywhere, a byte that is also a space in Latin-1 kept', () => {
      // 'à' is C3 A0 in UTF-8; A0 alone is a no-break space, which trim() would have cut.
      const bytes = toByteString('::add-mask pässwörd-à\nnext\n');
      for (let cut = 0; cut <= bytes.length; cut += 1) {
        expect(run([bytes.slice(0, cut), bytes.slice(cut)], BYTE_LINES)).toEqual({
          out: '::add-mask *****\nnext\n',
          masked: ['pässwörd-à'],
          overlong: 0,
        });
      }
    });

    it('counts the line limit in characters, not bytes', () => {
      // Each 'é' is two bytes: this line has more bytes than the limit, but fewer characters.
      const within = 'é'.repeat(5000);
      const bytes = toByteString(`::add-mask ${within}\n`);
      expect(bytes.length).toBeGreaterThan(ADD_MASK_LINE_LIMIT);
      const chunks = [bytes.slice(0, 9000), bytes.slice(9000)];
      expect(run(chunks, BYTE_LINES)).toEqual({
        out: '::add-mask *****\n',
        masked: [within],
        overlong: 0,
      });
      const over = toByteString(`::add-mask ${'é'.repeat(ADD_MASK_LINE_LIMIT)}\n`);
      expect(run([over.slice(0, 9000), over.slice(9000)], BYTE_LINES)).toEqual({
        out: '::add-mask *****\n',
        masked: [],
        overlong: 1,
      });
    });
  });
});
