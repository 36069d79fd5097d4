import { describe, expect, it } from 'vitest';
import { repositoryHostProblem } from './repository-host.js';

describe("the hosts a user's repository URL may not name", () => {
  it.each([
    ['https://127.0.0.1:9/x.git', '127.0.0.1'],
    ['https://127.8.9.10/x.git', '127.8.9.10'],
    ['https://localhost:8080/x.git', 'localhost'],
    ['https://LOCALHOST./x.git', 'localhost'],
    ['https://git.localhost/x.git', 'git.localhost'],
    ['https://[::1]:2376/x.git', '::1'],
    ['https://[::ffff:127.0.0.1]/x.git', '::ffff:127.0.0.1'],
    ['https://[fe80::1]/x.git', 'fe80::1'],
    ['https://169.254.169.254/latest', '169.254.169.254'],
    ['https://0.0.0.0/x.git', '0.0.0.0'],
    // Written forms the URL parser reads as loopback.
    ['https://2130706433/x.git', '127.0.0.1'],
    ['https://0x7f.1/x.git', '127.0.0.1'],
    ['ssh://git@127.0.0.1:2222/x.git', '127.0.0.1'],
    ['git@localhost:team/x.git', 'localhost'],
    ['git@[::1]:team/x.git', '::1'],
    // As git and ssh read them, not only as a URL parser does.
    ['ssh://git@127.1/x.git', '127.0.0.1'],
    ['ssh://2130706433/x.git', '127.0.0.1'],
    ['ssh://0/x.git', '0.0.0.0'],
    ['git@127.1:x.git', '127.0.0.1'],
    ['ssh://127%2e0%2e0%2e1/x.git', '127.0.0.1'],
    ['ssh://%6cocalhost/x.git', 'localhost'],
    ['ssh://example.com?@127.0.0.1/x.git', '127.0.0.1'],
    ['ssh://example.com#@127.0.0.1/x.git', '127.0.0.1'],
    ['https://[::1%25lo]/x.git', '::1'],
  ])('%s: refused, naming %s', (url, host) => {
    expect(repositoryHostProblem(url)).toContain(
      `the repository's host ${host} is this machine's own`,
    );
  });

  it.each([
    'https://git.example.com/team/x.git',
    'https://10.0.0.5/team/x.git',
    'https://192.168.1.20:8443/x.git',
    'https://[2001:db8::1]/x.git',
    'ssh://git@git.example.com:2222/x.git',
    'git@git.example.com:team/x.git',
    'https://localhost.example.com/x.git',
    'file:///srv/git/x.git',
  ])(
    '%s: not refused (a git server on the network, or file://, which is admin-only anyway)',
    (url) => {
      expect(repositoryHostProblem(url)).toBeNull();
    },
  );
});
