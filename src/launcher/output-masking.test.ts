import { describe, expect, it } from 'vitest';
import { MASK } from '../domain/log-masker.js';
import type { OutputStream } from '../executor/executor.js';
import { OutputMasking, OutputText } from './output-masking.js';

/** Feeds byte chunks through one phase's pipe; the bytes that came out per stream. */
function pipeThrough(masking: OutputMasking, chunks: [OutputStream, Buffer][]) {
  const out = { stdout: '', stderr: '' };
  const pipe = masking.forPhase((stream, bytes) => (out[stream] += bytes));
  for (const [stream, chunk] of chunks) pipe.write(stream, chunk);
  pipe.end();
  return {
    stdout: Buffer.from(out.stdout, 'latin1'),
    stderr: Buffer.from(out.stderr, 'latin1'),
  };
}

/** Every way to cut `bytes` in two. */
function everyCut(bytes: Buffer): Buffer[][] {
  return Array.from({ length: bytes.length + 1 }, (_, at) => [
    bytes.subarray(0, at),
    bytes.subarray(at),
  ]);
}

describe('OutputMasking: a phase output on bytes', () => {
  it('masks a non-ASCII secret cut anywhere, even inside one of its characters', () => {
    const bytes = Buffer.from('key: pässwörd€ done\n');
    for (const chunks of everyCut(bytes)) {
      const out = pipeThrough(
        new OutputMasking(['pässwörd€']),
        chunks.map((c) => ['stdout', c]),
      );
      expect(out.stdout.toString()).toBe(`key: ${MASK} done\n`);
    }
  });

  it('passes bytes that are not UTF-8 unchanged', () => {
    const chunk = Buffer.from([0x61, 0xff, 0xc3, 0x0a, 0x80, 0x62]);
    const out = pipeThrough(new OutputMasking(['hunter2']), [['stderr', chunk]]);
    expect(out.stderr.equals(chunk)).toBe(true);
  });

  it('masks a value added by ::add-mask (non-ASCII) from then on, on every stream', () => {
    const masking = new OutputMasking([]);
    const out = pipeThrough(masking, [
      ['stdout', Buffer.from('::add-mask jëton\n')],
      ['stderr', Buffer.from('a jë')],
      ['stderr', Buffer.from('ton b\n')],
      ['stdout', Buffer.from('jëton\n')],
    ]);
    expect(out.stdout.toString()).toBe(`::add-mask ${MASK}\n${MASK}\n`);
    expect(out.stderr.toString()).toBe(`a ${MASK} b\n`);
    expect(masking.mask('text jëton')).toBe(`text ${MASK}`);
  });
});

describe('OutputText', () => {
  it('joins a character split between chunks, per stream', () => {
    const texts: [OutputStream, string][] = [];
    const text = new OutputText((stream, t) => texts.push([stream, t]));
    const euro = Buffer.from('€').toString('latin1');
    text.write('stdout', `a${euro.slice(0, 1)}`);
    text.write('stderr', 'b');
    text.write('stdout', euro.slice(1));
    text.write('stdout', '\xc3');
    text.end();
    expect(texts).toEqual([
      ['stdout', 'a'],
      ['stderr', 'b'],
      ['stdout', '€'],
      ['stdout', '\ufffd'],
    ]);
  });
});
