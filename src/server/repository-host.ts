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
 * A host as written, the way git, ssh and curl read it: percent-escapes decoded, the port and
 * brackets taken off, lower case, without a trailing dot, and an IPv4 address in any form
 * `inet_aton` takes (`127.1`, `2130706433`, `0x7f.1`, `0`) in dotted form.
 */
function normalHost(written: string): string {
  let host = written;
  try {
    host = decodeURIComponent(host);
  } catch {
    // Not an escape git would decode either: the host as written.
  }
  const bracketed = /^\[([^\]]*)\](?::\d*)?$/.exec(host);
  host = bracketed ? (bracketed[1] as string) : host.replace(/:\d*$/, '');
  host = host.toLowerCase().replace(/\.+$/, '');
  // An IPv6 zone (`fe80::1%eth0`) names the interface, not another address.
  if (host.includes(':')) host = host.replace(/%.*$/, '');
  if (isIP(host) === 6) return host;
  const asUrl = `http://${host}/`;
  return URL.canParse(asUrl) ? new URL(asUrl).hostname.replace(/\.+$/, '') : host;
}

/**
 * The hosts a repository URL may reach: as a URL parser reads it, and as git hands it to ssh
 * (the authority up to the first `/`, after its last `@`: `ssh://a?@127.0.0.1/x` reaches
 * 127.0.0.1). Each is checked.
 */
function hostsOf(url: string): string[] {
  const hosts: string[] = [];
  const scheme = /^[a-z][a-z0-9+.-]*:\/\/([^/]*)/i.exec(url);
  if (scheme) {
    const authority = scheme[1] as string;
    hosts.push(authority.slice(authority.lastIndexOf('@') + 1));
    if (URL.canParse(url)) hosts.push(new URL(url).hostname);
  } else {
    // scp-like `user@host:path`, `user@[::1]:path`.
    const scp = /^(?:[^@/]*@)?(\[[^\]]*\]|[^:/]+):/.exec(url);
    hosts.push(scp ? (scp[1] as string) : sshServerOf(url).host);
  }
  return hosts.map(normalHost);
}

function refusedHost(host: string): boolean {
  if (host === 'localhost' || host.endsWith('.localhost')) return true;
  const family = isIP(host);
  return family !== 0 && NOT_FOR_USERS.check(host, family === 6 ? 'ipv6' : 'ipv4');
}

/**
 * Why a repository URL names a host a user's stack may not: the machine the server or a worker
 * runs on (loopback, `localhost`), a link-local address (a cloud's metadata service) or none
 * (0.0.0.0); null otherwise. Both the server (the branch head, at trigger) and the workers fetch
 * from it, so such a URL would let any user probe their own ports. Other written forms of these
 * addresses count. Not known here: a name that resolves to one of them, or a redirect to one.
 */
export function repositoryHostProblem(url: string): string | null {
  if (repositoryTransport(url) === 'file') return null;
  const host = hostsOf(url).find(refusedHost);
  return host === undefined
    ? null
    : `the repository's host ${host} is this machine's own (loopback), a link-local address or none, where the server and the workers would reach their own services`;
}
