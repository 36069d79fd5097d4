/**
 * Terraform/OpenTofu versions and version constraints, as the tools write them: `1.6.2`,
 * `~> 1.6`, `>= 1.5, < 2.0`, `!= 1.7.1`. Resolving a constraint picks the newest stable release
 * that satisfies it; pre-releases only when named exactly.
 */

export interface Version {
  major: number;
  minor: number;
  patch: number;
  /** `beta1`, `rc2`; empty for a stable release. */
  prerelease: string;
  text: string;
}

const VERSION = /^v?(\d+)(?:\.(\d+))?(?:\.(\d+))?(?:-([0-9A-Za-z.-]+))?$/;

export function parseVersion(text: string): Version | null {
  const match = VERSION.exec(text.trim());
  if (!match) return null;
  return {
    major: Number(match[1]),
    minor: Number(match[2] ?? 0),
    patch: Number(match[3] ?? 0),
    prerelease: match[4] ?? '',
    text: text.trim().replace(/^v/, ''),
  };
}

function comparePrerelease(a: string, b: string): number {
  if (a === b) return 0;
  if (a === '') return 1;
  if (b === '') return -1;
  const pa = a.split('.');
  const pb = b.split('.');
  for (let i = 0; i < Math.max(pa.length, pb.length); i += 1) {
    const x = pa[i];
    const y = pb[i];
    if (x === undefined) return -1;
    if (y === undefined) return 1;
    const nx = /^\d+$/.test(x) ? Number(x) : null;
    const ny = /^\d+$/.test(y) ? Number(y) : null;
    if (nx !== null && ny !== null && nx !== ny) return nx - ny;
    if (nx === null || ny === null) {
      const c = x.localeCompare(y, 'en', { numeric: true });
      if (c !== 0) return c;
    }
  }
  return 0;
}

export function compareVersions(a: Version, b: Version): number {
  return (
    a.major - b.major ||
    a.minor - b.minor ||
    a.patch - b.patch ||
    comparePrerelease(a.prerelease, b.prerelease)
  );
}

type Operator = '=' | '!=' | '>' | '>=' | '<' | '<=' | '~>';

interface Clause {
  operator: Operator;
  version: Version;
  /** How many components were written (for ~>): `~> 1.6` has 2, `~> 1.6.2` has 3. */
  precision: number;
}

export type Constraint = { clauses: Clause[]; text: string };

export function parseConstraint(text: string): Constraint | { error: string } {
  const clauses: Clause[] = [];
  const parts = text.split(',').map((p) => p.trim());
  if (parts.every((p) => p === '')) return { error: 'the version constraint is empty' };
  for (const part of parts) {
    const match = /^(=|!=|>=|<=|>|<|~>)?\s*(v?[0-9][0-9A-Za-z.-]*)$/.exec(part);
    const version = match ? parseVersion(match[2] as string) : null;
    if (!match || !version) {
      return {
        error: `"${part}" is not a version constraint; use e.g. 1.6.2, ~> 1.6 or >= 1.5, < 2.0`,
      };
    }
    const precision = (match[2] as string).replace(/^v/, '').split('-')[0]?.split('.').length ?? 3;
    if (match[1] === '~>' && precision < 2) {
      return {
        error: `"${part}": ~> needs at least MAJOR.MINOR (e.g. ~> 1.6), since ~> 1 would allow any version`,
      };
    }
    clauses.push({ operator: (match[1] ?? '=') as Operator, version, precision });
  }
  return { clauses, text };
}

function satisfiesClause(v: Version, clause: Clause): boolean {
  const c = compareVersions(v, clause.version);
  switch (clause.operator) {
    case '=':
      return c === 0;
    case '!=':
      return c !== 0;
    case '>':
      return c > 0;
    case '>=':
      return c >= 0;
    case '<':
      return c < 0;
    case '<=':
      return c <= 0;
    case '~>': {
      if (c < 0) return false;
      // ~> 1.6 allows 1.x from 1.6; ~> 1.6.2 allows 1.6.x from 1.6.2.
      if (clause.precision === 2) return v.major === clause.version.major;
      return v.major === clause.version.major && v.minor === clause.version.minor;
    }
  }
}

export function satisfies(v: Version, constraint: Constraint): boolean {
  // Pre-releases only match a constraint that names that exact pre-release.
  if (
    v.prerelease &&
    !constraint.clauses.some((c) => c.operator === '=' && compareVersions(c.version, v) === 0)
  )
    return false;
  return constraint.clauses.every((clause) => satisfiesClause(v, clause));
}

/** The newest available version satisfying the constraint, or null. */
export function resolveVersion(
  available: readonly string[],
  constraint: Constraint,
): Version | null {
  let best: Version | null = null;
  for (const text of available) {
    const v = parseVersion(text);
    if (!v || !satisfies(v, constraint)) continue;
    if (!best || compareVersions(v, best) > 0) best = v;
  }
  return best;
}
