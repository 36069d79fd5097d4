/**
 * Paths berth derives from values it does not control (a version from a release index, a
 * platform from an image, a stack id) are built only from checked segments, so they stay inside
 * the directory they were meant for: no `..`, no `/`, no NUL, nothing empty. Pure (POSIX paths);
 * the I/O code joins the result with its root.
 */

/** Why `segment` cannot be one component of a path berth builds; null when it can. */
export function segmentProblem(segment: string): string | null {
  if (segment === '') return 'it is empty';
  if (segment === '.' || segment === '..') return `"${segment}" names a directory relation`;
  if (segment.includes('/')) return 'it contains "/"';
  if (segment.includes('\\')) return 'it contains "\\"';
  if (/[\u0000-\u001f\u007f]/.test(segment)) return 'it contains control characters';
  if (segment.length > 128) return 'it is longer than 128 characters';
  return null;
}

export class UnsafePathError extends Error {
  constructor(
    readonly segment: string,
    readonly problem: string,
  ) {
    super(`${JSON.stringify(segment.slice(0, 80))} cannot be part of a path: ${problem}`);
    this.name = 'UnsafePathError';
  }
}

/** `root/a/b/c` from checked segments; throws UnsafePathError naming the first bad one. */
export function joinInside(root: string, ...segments: string[]): string {
  for (const segment of segments) {
    const problem = segmentProblem(segment);
    if (problem) throw new UnsafePathError(segment, problem);
  }
  return [root.replace(/\/+$/, '') || '/', ...segments].join('/').replace(/^\/\//, '/');
}

/** An absolute path without the slashes it ends with (`/` stays `/`). */
export function withoutTrailingSlashes(path: string): string {
  return path.replace(/(.)\/+$/, '$1');
}

/**
 * Whether two absolute paths name the same directory or one holds the other (`/` holds every
 * path). Compared as written: callers pass paths without `.`, `..` or doubled slashes.
 */
export function pathsOverlap(a: string, b: string): boolean {
  const [x, y] = [withoutTrailingSlashes(a), withoutTrailingSlashes(b)];
  return x === y || x === '/' || y === '/' || x.startsWith(`${y}/`) || y.startsWith(`${x}/`);
}
