import { describe, expect, it } from 'vitest';
import { MASK } from './log-masker.js';
import { remaskChunks } from './log-remask.js';

describe('remaskChunks', () => {
  it('masks a value inside one chunk and leaves other chunks as they were', () => {
    expect(remaskChunks(['a hunter2 b\n', 'clean\n'], ['hunter2'])).toEqual([
      `a ${MASK} b\n`,
      'clean\n',
    ]);
  });

  it('masks a value split across chunks where it starts, and drops the rest of it', () => {
    expect(remaskChunks(['token: hun', 'te', 'r2 done\n'], ['hunter2'])).toEqual([
      `token: ${MASK}`,
      '',
      ' done\n',
    ]);
  });

  it('merges overlapping values into one mask, so no part of either shows', () => {
    expect(remaskChunks(['xabcdex'], ['abc', 'cde'])).toEqual([`x${MASK}x`]);
  });

  it('masks every occurrence, also two in one chunk, and keeps the number of chunks', () => {
    const out = remaskChunks(['s3cr3t s3cr3t', '\ns3c', 'r3t'], ['s3cr3t']);
    expect(out).toEqual([`${MASK} ${MASK}`, `\n${MASK}`, '']);
    expect(out.join('')).not.toContain('s3cr3t');
  });

  it('changes nothing without a match or with an empty value', () => {
    const texts = ['one\n', 'two\n'];
    expect(remaskChunks(texts, ['three', ''])).toEqual(texts);
  });
});
