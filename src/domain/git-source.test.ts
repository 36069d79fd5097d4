import { describe, expect, it } from 'vitest';
import {
  classifyGitFailure,
  displayRepository,
  gitCredentialsFrom,
  gitFailure,
  gitVariableTypo,
  repositoryUrlProblem,
  lastGitLine,
  httpCredentialScope,
  repositoryTransport,
  sshServerOf,
} from './git-source.js';

const KEY = '-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n-----END OPENSSH PRIVATE KEY-----\n';
const v = (name: string, value: string, secret = true) => ({ name, value, secret });

describe("a stack's git credentials", () => {
  it('takes a token for https:// and keeps it (and its user name) out of the job', () => {
    expect(
      gitCredentialsFrom('https://git.example.com/infra.git', [
        v('BERTH_GIT_TOKEN', ' t0k \n'.trim()),
        v('BERTH_GIT_USERNAME', 'ci', false),
        v('TF_LOG', 'info', false),
      ]),
    ).toEqual({
      credentials: { kind: 'token', username: 'ci', token: 't0k' },
      jobVariables: [v('TF_LOG', 'info', false)],
    });
    expect(
      gitCredentialsFrom('https://git.example.com/x', [v('BERTH_GIT_TOKEN', 't')]).credentials,
    ).toEqual({ kind: 'token', username: 'x-access-token', token: 't' });
  });

  it('takes a deploy key and the pinned host keys for SSH URLs, scp-like ones too', () => {
    for (const url of ['ssh://git@git.example.com:2222/infra.git', 'git@git.example.com:infra.git'])
      expect(
        gitCredentialsFrom(url, [
          v('BERTH_GIT_SSH_KEY', KEY),
          v('BERTH_GIT_KNOWN_HOSTS', 'git.example.com ssh-ed25519 AAAA', false),
        ]).credentials,
      ).toEqual({
        kind: 'ssh-key',
        privateKey: KEY,
        knownHosts: 'git.example.com ssh-ed25519 AAAA',
      });
  });

  it('has none without the variables (a public repository)', () => {
    expect(gitCredentialsFrom('https://x/y', [v('A', 'b')]).credentials).toEqual({ kind: 'none' });
  });

  it.each([
    [[v('BERTH_GIT_TOKEN', 't', false)], 'https://x/y', 'BERTH_GIT_TOKEN is a plain variable'],
    [[v('BERTH_GIT_TOKEN', 't')], 'ssh://git@x/y', 'is not an https:// URL'],
    [[v('BERTH_GIT_SSH_KEY', KEY)], 'https://x/y', 'is not an SSH URL'],
    [[v('BERTH_GIT_SSH_KEY', 'ssh-ed25519 AAAA public')], 'ssh://x/y', 'is not a private key'],
    [[v('BERTH_GIT_TOKEN', 't'), v('BERTH_GIT_SSH_KEY', KEY)], 'https://x/y', 'has both'],
    [
      [v('BERTH_GIT_TOKEN', 't'), v('BERTH_GIT_USERNAME', 'a:b', false)],
      'https://x/y',
      'has a colon',
    ],
  ])('BERTH_GIT_CREDENTIALS_INVALID: %j for %s', (variables, url, message) => {
    expect(() => gitCredentialsFrom(url, variables)).toThrow(message);
    expect(() => gitCredentialsFrom(url, variables)).toThrow(
      expect.objectContaining({ code: 'BERTH_GIT_CREDENTIALS_INVALID' }),
    );
  });
});

describe('repository URLs', () => {
  it('knows the transport, hides user info in messages, and scopes a token to the host', () => {
    expect(repositoryTransport('https://h/r')).toBe('http');
    expect(repositoryTransport('git@h:r.git')).toBe('ssh');
    expect(repositoryTransport('file:///srv/r')).toBe('file');
    expect(displayRepository('https://user:pw@h/r.git')).toBe('https://***@h/r.git');
    expect(httpCredentialScope('https://user@h:8443/org/r.git')).toBe('https://h:8443/');
  });

  it('takes user info up to its last @ (a password written with an @ in it)', () => {
    const url = 'https://deploy:pa@ss@h:8443/org/r.git';
    expect(displayRepository(url)).toBe('https://***@h:8443/org/r.git');
    expect(httpCredentialScope(url)).toBe('https://h:8443/');
    expect(sshServerOf('ssh://git:pa@ss@h:2222/r.git')).toEqual({ host: 'h', port: '2222' });
    expect(sshServerOf('me@corp@h:org/r.git')).toEqual({ host: 'h', port: null });
    expect(displayRepository('git@h:org/r.git')).toBe('git@h:org/r.git');
    // One that does not parse (a / in the password) shows nothing but its scheme.
    expect(displayRepository('https://u:ab/cd@h/r.git')).toBe('https://***');
    expect(displayRepository('https://deploy:4711/s3cret@h/r.git')).toBe('https://***');
    // A query or fragment (a token there) stored before such URLs were refused.
    expect(displayRepository('https://h/r.git?private_token=t0ken')).toBe('https://h/r.git?***');
    expect(displayRepository('https://u@h/r.git#t0ken')).toBe('https://***@h/r.git?***');
  });

  it.each([
    ['https://deploy:t0ken@h/r.git', 'has a password or token written into it'],
    ['https://deploy:pa@ss@h/r.git', 'has a password or token written into it'],
    ['https://me@corp.com:t0ken@h/r.git', 'has a password or token written into it'],
    ['ssh://git:pw@h/r.git', 'has a password or token written into it'],
    ['https://ghp_abc@h/r.git', 'has a user name written into it'],
    ['https://u:ab/cd@h/r.git', 'host, port or user info cannot be read'],
    ['https://deploy:4711/s3cret@h/r.git', 'has an @ in its path'],
    ['ssh://git@h:2222/r.git', null],
    ['ssh://git@[::1]/r.git', null],
    ['https://h:8443/r.git', null],
    ['git@h:org/r.git', null],
    ['file:///srv/r', null],
    ['https://h/r.git?at=a:b@c', 'has a query string or fragment'],
    ['https://h/r.git?private_token=t0ken', 'has a query string or fragment'],
    ['https://h/r.git#t0ken', 'has a query string or fragment'],
    ['ssh://git@h/r.git?x', null],
  ])('%s: %s', (url, problem) => {
    const said = repositoryUrlProblem(url);
    if (problem === null) expect(said).toBeNull();
    else expect(said).toContain(problem);
    // Never the secret itself.
    expect(said ?? '').not.toMatch(/t0ken|pa@|ghp_|ab\/cd|pw/);
  });
});

describe("git's failure with a token in the URL's query (stored before such were refused)", () => {
  it('quotes the URL without it', () => {
    const url = 'https://h/r.git?private_token=t0ken';
    const failed = gitFailure(`fatal: repository '${url}/' not found`, {
      repository: url,
      credentials: 'none',
      what: 'fetch',
    });
    expect(`${failed.message} ${failed.hint}`).not.toContain('t0ken');
    expect(failed.message).toContain('https://h/r.git?***');
  });
});

describe("git's failures", () => {
  it.each([
    ["fatal: Authentication failed for 'https://h/r.git/'", 'auth'],
    ["fatal: could not read Username for 'https://h': terminal prompts disabled", 'auth'],
    ['git@h: Permission denied (publickey).', 'auth'],
    ["fatal: repository 'https://h/r.git/' not found", 'not-found'],
    ["fatal: '/srv/r.git' does not appear to be a git repository", 'not-found'],
    [
      '@@@ WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED! @@@\nHost key verification failed.',
      'host-key-mismatch',
    ],
    [
      'No ED25519 host key is known for [h]:22 and you have requested strict checking.\nHost key verification failed.',
      'host-key-unknown',
    ],
    ["fatal: couldn't find remote ref refs/heads/nope", 'ref-not-found'],
    ['fatal: unable to access: Could not resolve host: h', 'other'],
  ])('%s: %s', (stderr, kind) => {
    expect(classifyGitFailure(stderr)).toBe(kind);
  });

  it('names the value and the fix', () => {
    const err = gitFailure('fatal: Could not resolve host: h\n', {
      repository: 'https://h/r.git',
      credentials: 'none',
      what: 'branch main',
    });
    expect(err.code).toBe('BERTH_GIT_FAILED');
    expect(err.message).toBe(
      'git could not fetch branch main from https://h/r.git: fatal: Could not resolve host: h',
    );
  });

  it("quotes the line that says what went wrong, not git's closing advice", () => {
    const advice =
      'fatal: Could not read from remote repository.\n\nPlease make sure you have the correct access rights\nand the repository exists.\n';
    const missing = gitFailure(
      `fatal: '/srv/none.git' does not appear to be a git repository\n${advice}`,
      { repository: 'file:///srv/none.git', credentials: 'none', what: 'branch main' },
    );
    expect(missing.code).toBe('BERTH_GIT_REPOSITORY_NOT_FOUND');
    expect(missing.message).toBe(
      "file:///srv/none.git is not a repository the worker can read (git: fatal: '/srv/none.git' does not appear to be a git repository)",
    );
    expect(lastGitLine(`Host key verification failed.\n${advice}`)).toBe(
      'Host key verification failed.',
    );
    expect(lastGitLine(advice)).toBe('and the repository exists.');
  });
});

describe('gitVariableTypo', () => {
  it('names the git variable a misspelt stack variable was probably meant to be', () => {
    expect(gitVariableTypo('BERTH_GIT_TOKNE')).toBe(
      "berth reads no stack variable BERTH_GIT_TOKNE (did you mean BERTH_GIT_TOKEN?): it is not used for the checkout, and it reaches the job as a variable of its own; berth's are BERTH_GIT_TOKEN, BERTH_GIT_USERNAME, BERTH_GIT_SSH_KEY, BERTH_GIT_KNOWN_HOSTS",
    );
    expect(gitVariableTypo('BERTH_GITTOKEN')).toMatch(/did you mean BERTH_GIT_TOKEN\?/);
    expect(gitVariableTypo('BERTH_GIT_SSHKEY')).toMatch(/did you mean BERTH_GIT_SSH_KEY\?/);
    // Under berth's prefix but near none: still not read.
    expect(gitVariableTypo('BERTH_GIT_PASSWORD')).toMatch(
      /^berth reads no stack variable BERTH_GIT_PASSWORD: it is not used/,
    );
  });

  it('says nothing of the real names and of names nowhere near them', () => {
    for (const name of [
      'BERTH_GIT_TOKEN',
      'BERTH_GIT_SSH_KEY',
      'TF_VAR_region',
      'GIT_TOKEN',
      'BERTH_TOKEN',
    ])
      expect(gitVariableTypo(name), name).toBeNull();
  });
});
