import { describe, expect, it } from 'vitest';
import { formatBytes, formatDuration, parseByteSize, parseCpus, parseDuration } from './units.js';

describe('parseDuration', () => {
  it.each([
    ['70m', 4_200_000],
    ['7m', 420_000],
    ['30s', 30_000],
    ['1h30m', 5_400_000],
    ['250ms', 250],
    ['1.5s', 1500],
    ['7d', 604_800_000],
    ['1d12h', 129_600_000],
  ])('%s is %d ms', (text, ms) => {
    expect(parseDuration(text)).toEqual({ ms });
  });

  it.each(['', '10', 'm', '5 minutes', '-3s', '0s', '1w', '2days'])('rejects %j', (text) => {
    expect(parseDuration(text)).toHaveProperty('error');
  });
});

describe('parseByteSize', () => {
  it.each([
    ['512m', 512 * 1024 ** 2],
    ['4MiB', 4 * 1024 ** 2],
    ['2g', 2 * 1024 ** 3],
    ['1024', 1024],
    ['64KiB', 65536],
  ])('%s is %d bytes', (text, bytes) => {
    expect(parseByteSize(text)).toEqual({ bytes });
  });

  it.each(['lots', '', '5x', '0'])('rejects %j', (text) => {
    expect(parseByteSize(text)).toHaveProperty('error');
  });
});

describe('parseCpus', () => {
  it('turns CPUs into NanoCPUs', () => {
    expect(parseCpus('1.5')).toEqual({ nanoCpus: 1_500_000_000 });
  });
  it.each(['0', '-1', 'two'])('rejects %j', (text) => {
    expect(parseCpus(text)).toHaveProperty('error');
  });
});

describe('formatting', () => {
  it.each([
    [850, '850ms'],
    [12_340, '12.3s'],
    [245_000, '4m05s'],
    [4_200_000, '1h10m'],
  ])('%d ms reads %s', (ms, text) => {
    expect(formatDuration(ms)).toBe(text);
  });
  it.each([
    [512, '512 B'],
    [4 * 1024 * 1024, '4.0 MiB'],
  ])('%d bytes reads %s', (bytes, text) => {
    expect(formatBytes(bytes)).toBe(text);
  });
});
