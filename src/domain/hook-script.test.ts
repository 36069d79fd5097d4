import { cutAt } from '../../test/harness/chunks.js';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ADD_MASK_LINE_LIMIT, AddMaskFilter, phaseScript } from './hook-script.js';

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

function run(chunks: string[]): { out: string; masked: string[]; overlong: number } {
  const masked: string[] = [];
  let overlong = 0;
  const filter = new AddMaskFilter({
    mask: (v) => masked.push(v),
    overlong: () => (overlong += 1),
  });
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
});
