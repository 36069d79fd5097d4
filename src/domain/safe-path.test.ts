import { describe, expect, it } from 'vitest';
import { isReleasePlatform } from './platform.js';
import { UnsafePathError, joinInside, pathsOverlap, segmentProblem } from './safe-path.js';

describe('joinInside', () => {
  it('joins checked segments under the root', () => {
    expect(joinInside('/var/cache/berth/', 'terraform', '1.6.2', 'linux_amd64')).toBe(
      '/var/cache/berth/terraform/1.6.2/linux_amd64',
    );
  });

  it.each(['..', '.', '', 'a/b', 'a\\b', 'x\u0000y', 'a'.repeat(129)])(
    'refuses the segment %j',
    (segment) => {
      expect(segmentProblem(segment)).not.toBeNull();
      expect(() => joinInside('/root', 'ok', segment)).toThrow(UnsafePathError);
    },
  );
});

describe('isReleasePlatform', () => {
  it.each([
    ['linux_amd64', true],
    ['darwin_arm64', true],
    ['linux_amd64_v2', false],
    ['linux_../..', false],
    ['linux', false],
  ])('%s: %s', (text, ok) => {
    expect(isReleasePlatform(text)).toBe(ok);
  });
});

describe('pathsOverlap', () => {
  it.each([
    ['/mnt/workspace', '/mnt/workspace', true],
    ['/mnt/workspace/', '/mnt/workspace', true],
    ['/mnt', '/mnt/workspace', true],
    ['/mnt/workspace/x', '/mnt/workspace', true],
    ['/', '/berth', true],
    ['/berth', '/', true],
    ['/berthold', '/berth', false],
    ['/mnt/work', '/mnt/workspace', false],
    ['/home/berth', '/berth', false],
  ])('%s and %s: %s', (a, b, overlap) => {
    expect(pathsOverlap(a, b)).toBe(overlap);
    expect(pathsOverlap(b, a)).toBe(overlap);
  });
});
