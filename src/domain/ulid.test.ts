import { describe, expect, it } from 'vitest';
import { isUlid, ulidGenerator } from './ulid.js';

describe('ulidGenerator', () => {
  it('encodes time and randomness as the spec does', () => {
    const next = ulidGenerator(
      () => 1469918176385,
      () => new Uint8Array(10),
    );
    expect(next()).toBe('01ARYZ6S410000000000000000');
  });

  it('sorts by time, and stays increasing within one millisecond', () => {
    let time = 1_700_000_000_000;
    const next = ulidGenerator(
      () => time,
      () => new Uint8Array(10).fill(0xff),
    );
    const ids = [next(), next(), next()];
    time += 1;
    ids.push(next());
    expect([...ids].sort()).toEqual(ids);
    expect(new Set(ids).size).toBe(4);
    for (const id of ids) expect(isUlid(id), id).toBe(true);
  });

  it('never goes back when the clock does', () => {
    let time = 2_000_000_000_000;
    let counter = 0;
    const next = ulidGenerator(
      () => time,
      () => new Uint8Array(10).fill(counter++),
    );
    const a = next();
    time -= 5_000;
    const b = next();
    expect(b > a).toBe(true);
  });
});
