/** The login a remote command uses (loginFrom): the variables over the saved login, and what is missing. */
import { describe, expect, it } from 'vitest';
import { BerthError } from '../domain/errors.js';
import { loginFrom } from './remote.js';

const FILE = '/home/me/.config/berth/login.json';

function refusal(env: NodeJS.ProcessEnv, saved: Record<string, string> = {}): BerthError {
  try {
    loginFrom(env, saved, FILE);
  } catch (err) {
    return err as BerthError;
  }
  throw new Error('a login was made');
}

describe('loginFrom', () => {
  it('reads the server as every client does: the web page’s and the API’s address name it', () => {
    const token = 'berth_api_x';
    expect(loginFrom({ BERTH_SERVER: 'http://h:8080/ui/', BERTH_TOKEN: token }, {}, FILE)).toEqual({
      server: 'http://h:8080',
      token,
    });
    expect(loginFrom({ BERTH_TOKEN: token }, { server: 'http://h:8080/api/v1/' }, FILE)).toEqual({
      server: 'http://h:8080',
      token,
    });
  });

  it('takes the variables over the saved login; never sends the saved token to another server', () => {
    const saved = { server: 'https://a', token: 'saved', caCert: '/ca.pem' };
    expect(loginFrom({ BERTH_TOKEN: 'mine' }, saved, FILE)).toEqual({
      server: 'https://a',
      token: 'mine',
      caCert: '/ca.pem',
    });
    expect(loginFrom({ BERTH_SERVER: 'https://b', BERTH_TOKEN: 'mine' }, saved, FILE)).toEqual({
      server: 'https://b',
      token: 'mine',
    });
    // The saved token goes to its own server only (the same address, however written).
    expect(loginFrom({ BERTH_SERVER: 'https://a/ui/' }, saved, FILE)).toEqual({
      server: 'https://a',
      token: 'saved',
      caCert: '/ca.pem',
    });
    expect(refusal({ BERTH_SERVER: 'https://b' }, saved).message).toBe(
      `no token for the berth server at https://b (the login saved in ${FILE} is for another server)`,
    );
  });

  it('says the token is what is missing when only the server is given, and how to give it', () => {
    const err = refusal({ BERTH_SERVER: 'http://127.0.0.1:8080/' });
    expect(err.code).toBe('BERTH_USAGE');
    expect(err.message).toBe('no token for the berth server at http://127.0.0.1:8080');
    expect(err.hint).toContain('Set BERTH_TOKEN');
    expect(err.hint).toContain('berth login --server http://127.0.0.1:8080');
  });

  it('says the server is missing when only a token is given', () => {
    const err = refusal({ BERTH_TOKEN: 'berth_api_x' });
    expect(err.message).toBe('no berth server to talk to: a token is given, but no server');
    expect(err.hint).toContain('BERTH_SERVER');
  });

  it('says there is no server to talk to when nothing is given (empty variables are unset)', () => {
    expect(refusal({ BERTH_SERVER: ' ', BERTH_TOKEN: '' }).message).toBe(
      'no berth server to talk to',
    );
  });

  it('refuses an address without a scheme, naming where it came from', () => {
    expect(refusal({ BERTH_SERVER: '127.0.0.1:8080', BERTH_TOKEN: 't' }).message).toBe(
      'BERTH_SERVER "127.0.0.1:8080" is not an http:// or https:// URL',
    );
    expect(refusal({}, { server: 'h:1', token: 't' }).message).toBe(
      `the server saved by berth login in ${FILE} "h:1" is not an http:// or https:// URL`,
    );
  });
});
