import { describe, expect, it } from 'vitest';
import { checkImageReference, withDefaultTag } from './image-reference.js';

describe('checkImageReference', () => {
  it.each([
    'busybox',
    'busybox:1.36',
    'debian:bookworm-slim',
    'ghcr.io/org/app:v1',
    'localhost:5000/a/b',
    '127.0.0.1:5000/berth-test/busybox:v1',
    `alpine@sha256:${'a'.repeat(64)}`,
    'MyRegistry.example:5000/lower/case:Tag',
  ])('accepts %s', (ref) => {
    expect(checkImageReference(ref)).toBeNull();
  });

  it.each([
    ['', 'empty'],
    ['a b', 'position 2'],
    ['x;rm -rf /', '";"'],
    ['Upper/repo', 'uppercase'],
    ['a//b', 'empty path component'],
    ['alpine@sha256:xyz', 'digest'],
    ['a\u0007b', '\\u0007'],
    ['x'.repeat(5000), 'at most 4096'],
  ])('rejects %j mentioning %s', (ref, part) => {
    expect(checkImageReference(ref)?.message).toContain(part);
  });
});

describe('withDefaultTag', () => {
  it.each([
    ['busybox', 'busybox:latest'],
    ['busybox:1', 'busybox:1'],
    ['localhost:5000/a', 'localhost:5000/a:latest'],
    ['localhost:5000/a:v', 'localhost:5000/a:v'],
    ['a@sha256:00', 'a@sha256:00'],
  ])('%s → %s', (ref, expected) => {
    expect(withDefaultTag(ref)).toBe(expected);
  });
});
