/**
 * Image references, as far as running a job needs them. The full distribution-reference grammar
 * and normalisation arrive with worker-pool policies; until then berth rejects what can never be a
 * reference before it reaches the engine, and leaves the rest to the engine.
 */

export interface ReferenceProblem {
  message: string;
}

const MAX_REFERENCE_LENGTH = 4096;

/** Returns a problem for values that cannot be an image reference, or null. */
export function checkImageReference(reference: string): ReferenceProblem | null {
  if (reference.trim() === '') return { message: 'the image reference is empty' };
  if (reference.length > MAX_REFERENCE_LENGTH) {
    return {
      message: `the image reference is ${reference.length} characters long (at most ${MAX_REFERENCE_LENGTH})`,
    };
  }
  const bad = /[\s\u0000-\u001f\u007f;&|$`'"<>\\(){}*?!#]/u.exec(reference);
  if (bad) {
    const shown = JSON.stringify(bad[0]);
    return {
      message: `the image reference "${reference.replace(/[\u0000-\u001f\u007f]/gu, '?')}" contains ${shown} at position ${bad.index + 1}, which no image reference may contain`,
    };
  }
  const [name = '', digest] = reference.split('@');
  if (digest !== undefined && !/^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[0-9a-fA-F]{32,}$/.test(digest)) {
    return {
      message: `the digest "${digest}" in "${reference}" is not of the form sha256:<64 hex digits>`,
    };
  }
  const lastSlash = name.lastIndexOf('/');
  const colon = name.lastIndexOf(':');
  const repository = colon > lastSlash ? name.slice(0, colon) : name;
  const pathPart =
    repository.includes('/') && /[.:]|^localhost$/.test(repository.split('/')[0] as string)
      ? repository.slice(repository.indexOf('/') + 1)
      : repository;
  if (/[A-Z]/.test(pathPart)) {
    return {
      message: `the repository "${pathPart}" in "${reference}" has uppercase letters; repository names are lowercase`,
    };
  }
  if (pathPart.split('/').some((component) => component === '')) {
    return {
      message: `the repository "${pathPart}" in "${reference}" has an empty path component`,
    };
  }
  return null;
}

/** Adds `:latest` when a reference names neither tag nor digest (the engine would pull every tag). */
export function withDefaultTag(reference: string): string {
  if (reference.includes('@')) return reference;
  const lastSlash = reference.lastIndexOf('/');
  return reference.lastIndexOf(':') > lastSlash ? reference : `${reference}:latest`;
}
