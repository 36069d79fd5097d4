import { describe, expect, it } from 'vitest';
import { proxyConfigured } from './http-fetch.js';

describe('proxyConfigured', () => {
  it.each([
    [{}, false],
    [{ HTTPS_PROXY: 'http://proxy:3128' }, true],
    [{ http_proxy: 'http://proxy:3128' }, true],
    [{ HTTP_PROXY: '  ' }, false],
    [{ NO_PROXY: '*' }, false],
  ])('%j → %s', (env, expected) => {
    expect(proxyConfigured(env)).toBe(expected);
  });
});
