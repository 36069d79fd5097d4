import { describe, expect, it } from 'vitest';
import {
  compareVersions,
  parseConstraint,
  parseVersion,
  resolveVersion,
  type Constraint,
} from './versions.js';

const RELEASES = [
  '0.12.31',
  '0.13.7',
  '1.5.7',
  '1.6.0',
  '1.6.2',
  '1.6.3-rc1',
  '1.7.0-beta1',
  '1.7.0',
  '1.7.1',
  '1.8.5',
  '1.10.0',
  '2.0.0-alpha1',
];

function constraint(text: string): Constraint {
  const parsed = parseConstraint(text);
  if ('error' in parsed) throw new Error(parsed.error);
  return parsed;
}

describe('resolveVersion', () => {
  it.each([
    ['1.6.2', '1.6.2'],
    ['= 1.6.2', '1.6.2'],
    ['v1.6.2', '1.6.2'],
    ['~> 1.6', '1.10.0'],
    ['~> 1.6.0', '1.6.2'],
    ['~> 1.7.0', '1.7.1'],
    ['>= 1.5, < 2.0', '1.10.0'],
    ['>= 1.5, < 1.7', '1.6.2'],
    ['> 1.7.0, != 1.7.1, < 1.9', '1.8.5'],
    ['<= 0.13.7', '0.13.7'],
    ['< 0.13', '0.12.31'],
    ['1.7.0-beta1', '1.7.0-beta1'],
    ['>= 1.6.3-rc1, < 1.7', null],
    ['>= 3.0', null],
    ['~> 0.12', '0.13.7'],
  ])('%s → %s', (text, expected) => {
    expect(resolveVersion(RELEASES, constraint(text))?.text ?? null).toBe(expected);
  });

  it('never picks a pre-release for a range', () => {
    expect(resolveVersion(['1.0.0', '2.0.0-rc1'], constraint('>= 1.0'))?.text).toBe('1.0.0');
  });
});

describe('parseConstraint', () => {
  it.each(['', ' , ', '~> 1', 'latest', '>= one', '1.2.3.4.5', '=> 1.0'])('rejects %j', (text) => {
    expect(parseConstraint(text)).toHaveProperty('error');
  });
});

describe('compareVersions', () => {
  it.each([
    ['1.10.0', '1.9.9', 1],
    ['1.7.0', '1.7.0-rc1', 1],
    ['1.7.0-rc1', '1.7.0-beta2', 1],
    ['1.7.0-beta10', '1.7.0-beta2', 1],
    ['1.0', '1.0.0', 0],
  ])('%s vs %s', (a, b, sign) => {
    expect(Math.sign(compareVersions(parseVersion(a)!, parseVersion(b)!))).toBe(sign);
  });
});
