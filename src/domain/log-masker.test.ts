import { cutAt } from '../../test/harness/chunks.js';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { MASK, SecretMasker, maskAll } from './log-masker.js';

function feed(masker: SecretMasker, chunks: string[]): string {
  return chunks.map((c) => masker.write(c)).join('') + masker.flush();
}

describe('SecretMasker', () => {
  it.each([
    ['whole secret in one chunk', ['token=hunter2\n'], ['hunter2'], 'token=*****\n'],
    ['secret split in two writes', ['token=hun', 'ter2\n'], ['hunter2'], 'token=*****\n'],
    ['secret split one character at a time', [...'xhunter2y'], ['hunter2'], 'x*****y'],
    [
      'prefix that does not become the secret is released',
      ['hunt', 'ing\n'],
      ['hunter2'],
      'hunting\n',
    ],
    ['two secrets, the longer wins where they overlap', ['abcdef'], ['abc', 'abcdef'], MASK],
    ['repeated secret', ['aXaXa'], ['a'], `${MASK}X${MASK}X${MASK}`],
    ['no secrets: text passes unchanged', ['plain'], [], 'plain'],
    ['secret at the very end of the stream', ['end:', 'pw'], ['pw'], `end:${MASK}`],
    ['secret split across three chunks', ['s3', 'cr', 'et!'], ['s3cret'], `${MASK}!`],
  ])('%s', (_name, chunks, secrets, expected) => {
    expect(feed(new SecretMasker(secrets), chunks)).toBe(expected);
  });

  it('holds back only what could still become a secret', () => {
    const masker = new SecretMasker(['hunter2']);
    expect(masker.write('hello hun')).toBe('hello ');
    expect(masker.holding).toBe(true);
    expect(masker.write('gry')).toBe('hungry');
    expect(masker.holding).toBe(false);
  });

  it('ignores empty secrets, which would mask everything', () => {
    expect(maskAll('abc', [''])).toBe('abc');
  });

  it('masks secrets added later from then on', () => {
    const masker = new SecretMasker();
    expect(masker.write('v1 ')).toBe('v1 ');
    masker.addSecret('v1');
    expect(masker.write('v1') + masker.flush()).toBe(MASK);
  });

  it('never lets a secret through however the output is cut (property)', () => {
    fc.assert(
      fc.property(
        fc.string({ minLength: 3, maxLength: 12 }).filter((s) => !s.includes('*')),
        fc.array(fc.string({ maxLength: 20 }), { maxLength: 6 }),
        fc.array(fc.nat({ max: 60 }), { maxLength: 10 }),
        (secret, fillers, cuts) => {
          const text = fillers.join(secret);
          const chunks = cutAt(text, cuts);
          const out = feed(new SecretMasker([secret]), chunks);
          expect(out).not.toContain(secret);
          expect(out).toBe(maskAll(text, [secret]));
        },
      ),
    );
  });
});
