/**
 * Repository hosts a user's stack may not name: checked by the server, which knows the caller.
 * (Not in the domain: it reads addresses with node:net.)
 */
import { BlockList, isIP } from 'node:net';
import { repositoryTransport, sshServerOf } from '../domain/git-source.js';

/** Addresses a user's repository URL may not name (repositoryHostProblem). */
const NOT_FOR_USERS = new BlockList();
NOT_FOR_USERS.addSubnet('127.0.0.0', 8);
NOT_FOR_USERS.addSubnet('0.0.0.0', 8);
NOT_FOR_USERS.addSubnet('169.254.0.0', 16);
NOT_FOR_USERS.addSubnet('::1', 128, 'ipv6');
NOT_FOR_USERS.addSubnet('::', 128, 'ipv6');
NOT_FOR_USERS.addSubnet('fe80::', 10, 'ipv6');
NOT_FOR_USERS.addSubnet('::ffff:127.0.0.0', 104, 'ipv6');
NOT_FOR_USERS.addSubnet('::ffff:0.0.0.0', 104, 'ipv6');
NOT_FOR_USERS.addSubnet('::ffff:169.254.0.0', 112, 'ipv6');

/**
 * Why a repository URL names a host a user's stack may not: the machine the server or a worker
 * runs on (loopback, `localhost`), a link-local address (a cloud's metadata service) or none
 * (0.0.0.0); null otherwise. Both the server (the branch head, at trigger) and the workers fetch
 * from it, so such a URL would let any user probe their own ports. Written forms an URL parser
 * turns into these (`https://2130706433/`, `0x7f.1`) count. A name that resolves to one of them
 * is not known here.
 */
export function repositoryHostProblem(url: string): string | null {
  const transport = repositoryTransport(url);
  if (transport === 'file') return null;
  // scp-like `user@[::1]:path` too, which git takes for an IPv6 host.
  let host = /^(?:[^@/]*@)?\[([^\]]+)\]:/.exec(url)?.[1] ?? sshServerOf(url).host;
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(url) && URL.canParse(url)) host = new URL(url).hostname;
  host = host
    .toLowerCase()
    .replace(/^\[|\]$/g, '')
    .replace(/\.$/, '');
  const family = isIP(host);
  const refused =
    host === 'localhost' || host.endsWith('.localhost')
      ? true
      : family !== 0 && NOT_FOR_USERS.check(host, family === 6 ? 'ipv6' : 'ipv4');
  return refused
    ? `the repository's host ${host} is this machine's own (loopback), a link-local address or none, where the server and the workers would reach their own services`
    : null;
}
