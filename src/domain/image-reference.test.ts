import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  checkImageReference,
  formatImageReference,
  isDockerHub,
  parseImageReference,
  withDefaultTag,
  type ImageReference,
} from './image-reference.js';

const D64 = 'a'.repeat(64);

function parsed(text: string): ImageReference {
  const result = parseImageReference(text);
  if (!result.ok) throw new Error(result.error.message);
  return result.reference;
}

describe('parseImageReference: normalisation as the Docker CLI does it', () => {
  it.each<[string, string, string, string | null, string | null]>([
    // input, registry, repository, tag, digest
    ['debian', 'docker.io', 'library/debian', 'latest', null],
    ['debian:bookworm-slim', 'docker.io', 'library/debian', 'bookworm-slim', null],
    ['library/debian', 'docker.io', 'library/debian', 'latest', null],
    ['docker.io/debian', 'docker.io', 'library/debian', 'latest', null],
    ['index.docker.io/debian', 'docker.io', 'library/debian', 'latest', null],
    ['docker.io/org/app:v1', 'docker.io', 'org/app', 'v1', null],
    ['registry-1.docker.io/org/app', 'registry-1.docker.io', 'org/app', 'latest', null],
    [
      'registry.hub.docker.com/library/debian',
      'registry.hub.docker.com',
      'library/debian',
      'latest',
      null,
    ],
    ['org/app', 'docker.io', 'org/app', 'latest', null],
    ['ghcr.io/org/team/app:1.2.3', 'ghcr.io', 'org/team/app', '1.2.3', null],
    ['localhost/app', 'localhost', 'app', 'latest', null],
    ['localhost:5000/app:dev', 'localhost:5000', 'app', 'dev', null],
    ['127.0.0.1:5000/a/b', '127.0.0.1:5000', 'a/b', 'latest', null],
    ['[::1]:5000/app:v2', '[::1]:5000', 'app', 'v2', null],
    ['[fe80::1%eth0]:5000/app', '[fe80::1%eth0]:5000', 'app', 'latest', null],
    ['[2001:db8::1]/app', '[2001:db8::1]', 'app', 'latest', null],
    [`alpine@sha256:${D64}`, 'docker.io', 'library/alpine', null, `sha256:${D64}`],
    [`alpine:3.19@sha256:${D64}`, 'docker.io', 'library/alpine', '3.19', `sha256:${D64}`],
    ['my_app-x__z/a--b.c', 'docker.io', 'my_app-x__z/a--b.c', 'latest', null],
    // Like the Docker CLI: a first component with a dot is a registry host.
    ['my.registry/a', 'my.registry', 'a', 'latest', null],
    [
      '123456789012.dkr.ecr.us-east-1.amazonaws.com/app:v1',
      '123456789012.dkr.ecr.us-east-1.amazonaws.com',
      'app',
      'v1',
      null,
    ],
    ['Registry.Example.com/app', 'Registry.Example.com', 'app', 'latest', null],
    ['app:_underscore_first', 'docker.io', 'library/app', '_underscore_first', null],
  ])('%s', (input, registry, repository, tag, digest) => {
    expect(parsed(input)).toEqual({ registry, repository, tag, digest });
  });
});

describe('parseImageReference: the traps (each rejection names the part)', () => {
  it.each<[string, string, string]>([
    // input, offending part, words in the message
    ['', '', 'empty'],
    ['MyImage', 'MyImage', 'uppercase'],
    ['org/MyApp:v1', 'MyApp', 'uppercase'],
    ['a//b', 'a//b', 'empty path component'],
    ['/app', '/app', 'empty path component'],
    ['app/', 'app/', 'empty path component'],
    ['app:', '', 'tag'],
    ['app:-bad', '-bad', 'tag'],
    [`app:${'t'.repeat(129)}`, 't'.repeat(129), 'at most 128'],
    ['app@sha256:abc', 'sha256:abc', '64 lowercase hex'],
    [`app@sha256:${'A'.repeat(64)}`, `sha256:${'A'.repeat(64)}`, '64 lowercase hex'],
    ['app@md5', 'md5', 'sha256:<64 hex digits>'],
    ['app@', '', 'sha256:<64 hex digits>'],
    [`${'a'.repeat(256)}`, 'a'.repeat(256), 'at most 255'],
    ['app;rm -rf /', ';', '";" at position 4'],
    ['app$(id)', '$', '"$" at position 4'],
    ['app`id`', '`', 'position 4'],
    ['app|cat', '|', 'position 4'],
    ['app&&x', '&', 'position 4'],
    ['app name', ' ', 'whitespace at position 4'],
    ['app\nname', '\n', 'control character U+000A at position 4'],
    ['app\u0000', '\u0000', 'control character U+0000'],
    ['app>out', '>', 'position 4'],
    ["app'x'", "'", 'position 4'],
    ['a..b', 'a..b', 'lowercase letters and digits'],
    ['-app', '-app', 'lowercase letters and digits'],
    ['app-', 'app-', 'lowercase letters and digits'],
    ['host:99999/app', '99999', '1 to 65535'],
    ['host:port/app', 'port', '1 to 65535'],
    ['-host.com/app', '-host.com', 'not a valid host name'],
    ['[::1/app', '[::1', 'IPv6'],
    ['[::1]x/app', '[::1]x', 'port'],
    ['[::1]', '[::1]', 'followed by /'],
    ['ho_st.com/app', 'ho_st.com', 'not a valid host name'],
  ])('rejects %j', (input, part, words) => {
    const result = parseImageReference(input);
    expect(result.ok).toBe(false);
    if (result.ok) return;
    expect(result.error.part).toBe(part);
    expect(result.error.message).toContain(words);
    expect(result.error.message).toContain('invalid image reference');
  });
});

describe('formatImageReference', () => {
  it('formats the canonical form', () => {
    expect(formatImageReference(parsed('debian'))).toBe('docker.io/library/debian:latest');
    expect(formatImageReference(parsed(`x/y:1@sha256:${D64}`))).toBe(
      `docker.io/x/y:1@sha256:${D64}`,
    );
    expect(formatImageReference(parsed(`x@sha256:${D64}`))).toBe(
      `docker.io/library/x@sha256:${D64}`,
    );
  });

  const component = fc.stringMatching(/^[a-z0-9]{1,6}(?:[._-][a-z0-9]{1,6}){0,2}$/);
  const arbitraryReference = fc.record({
    registry: fc.constantFrom(
      '',
      'docker.io/',
      'ghcr.io/',
      'localhost:5000/',
      '[::1]:5000/',
      'my-reg.example.com/',
    ),
    path: fc.array(component, { minLength: 1, maxLength: 3 }),
    tag: fc.option(fc.stringMatching(/^[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}$/), { nil: undefined }),
    digest: fc.option(fc.stringMatching(/^[0-9a-f]{64}$/), { nil: undefined }),
  });

  it('parse → format → parse is stable (property)', () => {
    fc.assert(
      fc.property(arbitraryReference, ({ registry, path, tag, digest }) => {
        // Without a registry, a first component with a dot would be read as a host (as Docker does).
        const host =
          registry === '' && path.length > 1 && path[0]?.includes('.') ? 'docker.io/' : registry;
        const text = `${host}${path.join('/')}${tag ? `:${tag}` : ''}${digest ? `@sha256:${digest}` : ''}`;
        const first = parsed(text);
        const again = parsed(formatImageReference(first));
        expect(again).toEqual(first);
        expect(formatImageReference(again)).toBe(formatImageReference(first));
      }),
    );
  });

  it('never accepts a string with shell metacharacters or control characters (property)', () => {
    fc.assert(
      fc.property(
        fc.string(),
        fc.constantFrom(...';&|$`\'"<>\\(){}*?! \t\n\u0000\u001b'),
        (base, bad) => {
          expect(parseImageReference(`${base}${bad}x`).ok).toBe(false);
        },
      ),
    );
  });
});

describe('helpers', () => {
  it.each([
    'docker.io',
    'index.docker.io',
    'registry-1.docker.io',
    'registry.hub.docker.com',
    'Docker.IO',
  ])('%s is Docker Hub', (host) => {
    expect(isDockerHub(host)).toBe(true);
  });
  it.each(['ghcr.io', 'docker.io.evil.com', 'evildocker.io'])('%s is not Docker Hub', (host) => {
    expect(isDockerHub(host)).toBe(false);
  });
  it('checkImageReference returns the message', () => {
    expect(checkImageReference('debian')).toBeNull();
    expect(checkImageReference('Bad')?.message).toContain('uppercase');
  });
  it.each([
    ['busybox', 'busybox:latest'],
    ['busybox:1', 'busybox:1'],
    ['localhost:5000/a', 'localhost:5000/a:latest'],
    ['localhost:5000/a:v', 'localhost:5000/a:v'],
    ['a@sha256:00', 'a@sha256:00'],
  ])('withDefaultTag(%s) is %s', (ref, expected) => {
    expect(withDefaultTag(ref)).toBe(expected);
  });
});
