/**
 * Image references after the distribution reference grammar, normalised the way the Docker CLI
 * does it: no registry means docker.io, a single path component on docker.io gets `library/`,
 * `index.docker.io` is docker.io, no tag and no digest means `latest`. Errors point at the part
 * that is wrong.
 *
 *   reference  := name [ ":" tag ] [ "@" digest ]
 *   name       := [ host [ ":" port ] "/" ] path-component ( "/" path-component )*
 *   path-comp. := [a-z0-9]+ ( ( "." | "_" | "__" | "-"+ ) [a-z0-9]+ )*
 *   tag        := [A-Za-z0-9_] [A-Za-z0-9_.-]{0,127}
 *   digest     := algorithm ":" hex   (sha256: 64 hex, sha512: 128 hex)
 */

export const DOCKER_HUB = 'docker.io';
/** Host names that are Docker Hub for pulling or for the policy. */
export const DOCKER_HUB_ALIASES = [
  'docker.io',
  'index.docker.io',
  'registry-1.docker.io',
  'registry.hub.docker.com',
];

const MAX_NAME_LENGTH = 255;
const PATH_COMPONENT = /^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*$/;
const TAG = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/;
const DOMAIN_COMPONENT = /^(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])$/;
const IPV6 = /^\[[0-9a-fA-F:.]+(?:%[A-Za-z0-9]+)?\]$/;

export interface ImageReference {
  /** Registry host, with port when given: `docker.io`, `ghcr.io`, `localhost:5000`, `[::1]:5000`. */
  registry: string;
  /** Repository path inside the registry: `library/debian`, `org/app`. */
  repository: string;
  /** The tag; `latest` when neither tag nor digest was given. Null with a digest only. */
  tag: string | null;
  /** `sha256:…` when pinned. */
  digest: string | null;
}

export interface ReferenceError {
  message: string;
  /** The offending part of the input. */
  part: string;
}

export type ParseResult =
  { ok: true; reference: ImageReference } | { ok: false; error: ReferenceError };

function fail(input: string, part: string, why: string): ParseResult {
  return {
    ok: false,
    error: { part, message: `invalid image reference ${JSON.stringify(input)}: ${why}` },
  };
}

function describeChar(char: string): string {
  const code = char.codePointAt(0) ?? 0;
  if (code < 0x20 || code === 0x7f)
    return `control character U+${code.toString(16).padStart(4, '0').toUpperCase()}`;
  if (/\s/.test(char)) return 'whitespace';
  return JSON.stringify(char);
}

/** Parses and normalises an image reference; never throws. */
export function parseImageReference(input: string): ParseResult {
  if (input.length === 0) return fail(input, '', 'it is empty');
  const bad = /[^A-Za-z0-9._:@/\-[\]%]/u.exec(input);
  if (bad) {
    return fail(
      input,
      bad[0],
      `${describeChar(bad[0])} at position ${bad.index + 1} cannot appear in an image reference`,
    );
  }

  let rest = input;
  let digest: string | null = null;
  const at = rest.indexOf('@');
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    const problem = checkDigest(digest);
    if (problem) return fail(input, digest, problem);
  }

  let tag: string | null = null;
  const lastSlash = rest.lastIndexOf('/');
  const lastColon = rest.lastIndexOf(':');
  // A colon after the last slash separates the tag (a colon before it belongs to host:port).
  if (lastColon > lastSlash && !(lastSlash < 0 && rest.startsWith('['))) {
    tag = rest.slice(lastColon + 1);
    rest = rest.slice(0, lastColon);
    if (!TAG.test(tag)) {
      return fail(
        input,
        tag,
        `the tag ${JSON.stringify(tag)} must start with a letter, digit or _ and hold at most 128 letters, digits, _, . and -`,
      );
    }
  }

  if (rest.length === 0) return fail(input, rest, 'the repository name is missing');
  if (rest.length > MAX_NAME_LENGTH) {
    return fail(
      input,
      rest,
      `the name is ${rest.length} characters long; at most ${MAX_NAME_LENGTH} are allowed`,
    );
  }

  let registry = DOCKER_HUB;
  let path = rest;
  const slash = rest.indexOf('/');
  if (slash >= 0) {
    const first = rest.slice(0, slash);
    if (
      first.includes('.') ||
      first.includes(':') ||
      first === 'localhost' ||
      first.startsWith('[') ||
      first !== first.toLowerCase()
    ) {
      const problem = checkHost(first);
      if (problem) return fail(input, problem.part, problem.why);
      registry = first === 'index.docker.io' ? DOCKER_HUB : first;
      path = rest.slice(slash + 1);
    }
  } else if (rest.startsWith('[')) {
    return fail(input, rest, 'a registry host must be followed by / and a repository');
  }

  const components = path.split('/');
  for (const component of components) {
    if (component === '')
      return fail(
        input,
        path,
        `the repository ${JSON.stringify(path)} has an empty path component`,
      );
    if (component !== component.toLowerCase()) {
      return fail(
        input,
        component,
        `the repository component ${JSON.stringify(component)} has uppercase letters; repository names are lowercase`,
      );
    }
    if (!PATH_COMPONENT.test(component)) {
      return fail(
        input,
        component,
        `the repository component ${JSON.stringify(component)} must be lowercase letters and digits, separated by ., _, __ or dashes`,
      );
    }
  }
  if (registry === DOCKER_HUB && components.length === 1) path = `library/${path}`;
  if (tag === null && digest === null) tag = 'latest';
  return { ok: true, reference: { registry, repository: path, tag, digest } };
}

/** Why `digest` is not a digest by the OCI grammar (sha256/384/512 lengths checked); null if it is. */
export function checkDigest(digest: string): string | null {
  const colon = digest.indexOf(':');
  if (colon <= 0)
    return `the digest ${JSON.stringify(digest)} must look like sha256:<64 hex digits>`;
  const algorithm = digest.slice(0, colon);
  const hex = digest.slice(colon + 1);
  if (!/^[A-Za-z][A-Za-z0-9]*(?:[+._-][A-Za-z][A-Za-z0-9]*)*$/.test(algorithm)) {
    return `the digest algorithm ${JSON.stringify(algorithm)} is not valid`;
  }
  const lengths: Record<string, number> = { sha256: 64, sha384: 96, sha512: 128 };
  const expected = lengths[algorithm];
  if (expected !== undefined && !new RegExp(`^[0-9a-f]{${expected}}$`).test(hex)) {
    return `a ${algorithm} digest has exactly ${expected} lowercase hex digits, ${JSON.stringify(hex)} does not`;
  }
  if (expected === undefined && !/^[0-9a-fA-F]{32,}$/.test(hex)) {
    return `the digest ${JSON.stringify(digest)} needs at least 32 hex digits`;
  }
  return null;
}

function checkHost(host: string): { part: string; why: string } | null {
  let name = host;
  let port: string | undefined;
  if (host.startsWith('[')) {
    const close = host.indexOf(']');
    name = host.slice(0, close + 1);
    const after = host.slice(close + 1);
    if (close < 0 || !IPV6.test(name)) {
      return { part: host, why: `the IPv6 registry host ${JSON.stringify(host)} is not valid` };
    }
    if (after !== '' && !/^:\d+$/.test(after)) {
      return { part: host, why: `the registry port in ${JSON.stringify(host)} is not valid` };
    }
    port = after.slice(1) || undefined;
  } else {
    const colon = host.indexOf(':');
    if (colon >= 0) {
      name = host.slice(0, colon);
      port = host.slice(colon + 1);
    }
    if (name === '' || !name.split('.').every((c) => DOMAIN_COMPONENT.test(c))) {
      return {
        part: name,
        why: `the registry host ${JSON.stringify(name)} is not a valid host name`,
      };
    }
  }
  if (port !== undefined && (!/^\d+$/.test(port) || Number(port) < 1 || Number(port) > 65535)) {
    return {
      part: port,
      why: `the registry port ${JSON.stringify(port)} must be a number from 1 to 65535`,
    };
  }
  return null;
}

/** The canonical string: `registry/repository[:tag][@digest]`. */
export function formatImageReference(ref: ImageReference): string {
  return `${ref.registry}/${ref.repository}${ref.tag !== null ? `:${ref.tag}` : ''}${ref.digest !== null ? `@${ref.digest}` : ''}`;
}

/** The repository with its registry: `docker.io/library/debian`. */
export function repositoryName(ref: ImageReference): string {
  return `${ref.registry}/${ref.repository}`;
}

/** Whether a registry host is Docker Hub under any of its names. */
export function isDockerHub(registry: string): boolean {
  return DOCKER_HUB_ALIASES.includes(registry.toLowerCase());
}

/**
 * Returns a problem for values that cannot be an image reference, or null. Kept for callers
 * that only need a yes or no.
 */
export function checkImageReference(reference: string): { message: string } | null {
  const parsed = parseImageReference(reference);
  return parsed.ok ? null : { message: parsed.error.message };
}

/** Adds `:latest` when a reference names neither tag nor digest (the engine would pull every tag). */
export function withDefaultTag(reference: string): string {
  if (reference.includes('@')) return reference;
  const lastSlash = reference.lastIndexOf('/');
  return reference.lastIndexOf(':') > lastSlash ? reference : `${reference}:latest`;
}
