import { describe, expect, it } from 'vitest';
import type { ApiToken } from '../api/client.js';
import { BerthError } from '../domain/errors.js';
import { tokenToRevoke } from './tokens.js';

const at = '2026-12-01T10:00:00.000Z';
const tokens: ApiToken[] = [
  { id: 'admin', name: 'admin', role: 'admin', createdAt: at },
  { id: '01m8rye9xq4v3k2j1h0g9f8e7d', name: 'alice', role: 'user', createdAt: at },
  { id: '01m8rye9xq4v3k2j1h0g9f8e7e', name: 'ci', role: 'user', createdAt: at },
  { id: '01m8rye9xq4v3k2j1h0g9f8e7f', name: 'ci', role: 'admin', createdAt: at },
];

function refusal(given: string): BerthError {
  try {
    tokenToRevoke(tokens, given);
  } catch (err) {
    if (err instanceof BerthError) return err;
    throw err;
  }
  throw new Error(`${given} was not refused`);
}

describe('tokenToRevoke', () => {
  it('takes an id in any letter case', () => {
    expect(tokenToRevoke(tokens, '01m8rye9xq4v3k2j1h0g9f8e7d')).toBe('01m8rye9xq4v3k2j1h0g9f8e7d');
    expect(tokenToRevoke(tokens, '01M8RYE9XQ4V3K2J1H0G9F8E7D')).toBe('01m8rye9xq4v3k2j1h0g9f8e7d');
    expect(tokenToRevoke(tokens, 'ADMIN')).toBe('admin');
  });

  it('takes the name of exactly one token', () => {
    expect(tokenToRevoke(tokens, 'alice')).toBe('01m8rye9xq4v3k2j1h0g9f8e7d');
  });

  it('refuses a name several tokens have, listing their ids, and says to give the id', () => {
    const err = refusal('ci');
    expect(err.code).toBe('BERTH_USAGE');
    expect(err.message).toBe(
      `2 tokens are named "ci": 01m8rye9xq4v3k2j1h0g9f8e7e (user, created ${at}), 01m8rye9xq4v3k2j1h0g9f8e7f (admin, created ${at})`,
    );
    expect(err.hint).toBe('Give the id of the one to revoke: `berth token revoke ID`.');
  });

  it('refuses what is neither an id nor a name, pointing at the list', () => {
    const err = refusal('bob');
    expect(err.message).toBe('no token has the id or the name "bob"');
    expect(err.hint).toContain('`berth token list`');
    // A name is compared as it is: ALICE is not alice.
    expect(refusal('ALICE').message).toBe('no token has the id or the name "ALICE"');
  });
});
