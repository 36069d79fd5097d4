import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { HeadTailLog, cutMarker } from './log-bound.js';

function run(limit: number, chunks: string[]): { head: string; rest: string; cut: number } {
  const log = new HeadTailLog(limit);
  const head = chunks.map((c) => log.append(Buffer.from(c)).toString()).join('');
  return { head, rest: log.finish().toString(), cut: log.bytesCut };
}

describe('HeadTailLog', () => {
  it('keeps everything under the limit, with no marker', () => {
    expect(run(10, ['abc', 'de'])).toEqual({ head: 'abcde', rest: '', cut: 0 });
  });

  it('keeps exactly the limit without a marker', () => {
    expect(run(10, ['0123456789'])).toEqual({ head: '01234', rest: '56789', cut: 0 });
  });

  it('keeps head and tail and marks what was cut between them', () => {
    const result = run(10, ['0123456789', 'abcdefghij']);
    expect(result.head).toBe('01234');
    expect(result.cut).toBe(10);
    expect(result.rest).toBe(`${cutMarker(10)}fghij`);
  });

  it('rolls the tail across many small chunks', () => {
    const chunks = Array.from({ length: 100 }, (_, i) => `${i % 10}`);
    const result = run(8, chunks);
    expect(result.head).toBe('0123');
    expect(result.cut).toBe(92);
    expect(result.rest.endsWith('6789')).toBe(true);
  });

  it('rejects a limit that cannot hold a head and a tail', () => {
    expect(() => new HeadTailLog(1)).toThrow(RangeError);
  });

  it('matches the simple model (first half, marker, last half) however the output is cut', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 2, max: 40 }),
        fc.array(fc.string({ maxLength: 30 }), { maxLength: 12 }),
        (limit, chunks) => {
          const all = chunks.join('');
          const head = Math.ceil(limit / 2);
          const tail = limit - head;
          const result = run(limit, chunks);
          if (all.length <= limit) {
            expect(result.head + result.rest).toBe(all);
            expect(result.cut).toBe(0);
          } else {
            const cut = all.length - limit;
            expect(result).toEqual({
              head: all.slice(0, head),
              rest: cutMarker(cut) + all.slice(all.length - tail),
              cut,
            });
          }
        },
      ),
    );
  });

  it('matches the simple model across hundreds of chunks, the tail copied in turns (property)', () => {
    fc.assert(
      fc.property(
        // A tail longer than 256 chunks of one or two bytes, so that the copying in turns happens.
        fc.integer({ min: 600, max: 2000 }),
        fc.array(fc.string({ minLength: 1, maxLength: 2 }), {
          minLength: 300,
          maxLength: 1500,
          size: 'max',
        }),
        (limit, chunks) => {
          const all = chunks.join('');
          const tail = limit - Math.ceil(limit / 2);
          const log = new HeadTailLog(limit);
          let head = '';
          chunks.forEach((chunk) => {
            head += log.append(Buffer.from(chunk)).toString();
          });
          expect(log.bytesCut).toBe(Math.max(0, all.length - limit));
          const rest = log.finish().toString();
          expect(head + rest).toBe(
            all.length <= limit
              ? all
              : all.slice(0, Math.ceil(limit / 2)) +
                  cutMarker(all.length - limit) +
                  all.slice(all.length - tail),
          );
        },
      ),
      { numRuns: 60 },
    );
  });

  it('keeps byte strings exactly as it keeps the same bytes in Buffers (property)', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 2, max: 40 }),
        fc.array(fc.uint8Array({ maxLength: 30 }), { maxLength: 8 }),
        (limit, chunks) => {
          const buffers = new HeadTailLog(limit);
          const strings = new HeadTailLog(limit);
          for (const chunk of chunks) {
            const bytes = Buffer.from(chunk);
            const head = strings.appendBytes(bytes.toString('latin1'));
            expect(head.equals(buffers.append(bytes))).toBe(true);
          }
          expect(strings.finish().equals(buffers.finish())).toBe(true);
          expect(strings.bytesCut).toBe(buffers.bytesCut);
        },
      ),
    );
  });
});
