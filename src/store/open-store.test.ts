import { describe, expect, it } from 'vitest';
import { redact } from './open-store.js';

describe('redact', () => {
  it.each([
    ['postgres://berth:s3cret@db:5432/berth', 'postgres://berth:*****@db:5432/berth'],
    ['postgres://berth:pa@ss@db/berth', 'postgres://berth:*****@db/berth'],
    ['postgres://berth:ab/cd@db/berth', 'postgres://berth:*****@db/berth'],
    ['postgres://berth@db/berth', 'postgres://berth@db/berth'],
    ['sqlite:///var/lib/berth/berth.db', 'sqlite:///var/lib/berth/berth.db'],
  ])('shows %s as %s', (url, shown) => {
    expect(redact(url)).toBe(shown);
  });
});
