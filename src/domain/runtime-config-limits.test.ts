/**
 * A runtime configuration file is a tenant's: merge keys and aliases must not let a few hundred
 * bytes block or crash the launcher (issue: a 701-byte file took two minutes, a 471-byte one
 * overflowed the stack). Each case below did one of those before merge expansion was bounded.
 */
import { describe, expect, it } from 'vitest';
import { MERGE_LIMITS, parseRuntimeConfig } from './runtime-config-yaml.js';

function problems(text: string): string[] {
  const parsed = parseRuntimeConfig(text, '.berth/config.yml');
  if (parsed.ok) return [];
  return parsed.problems.map((p) => `${p.line}:${p.column} ${p.message}`);
}

describe('merge keys from a hostile file', () => {
  it('reports a map that merges itself, at its merge key, instead of recursing forever', () => {
    const text = 'version: 2\nstack_defaults: &d\n  runner_image: a\n  <<: *d\n';
    expect(problems(text)).toEqual([
      '4:3 a merge key merges a map into itself (a cycle of anchors)',
    ]);
  });

  it('reports a cycle through two anchors', () => {
    const text =
      'version: 2\nx-a: &a\n  runner_image: a\nx-b: &b\n  <<: *a\nstack_defaults:\n  <<: *b\n';
    // x-a does not merge x-b yet; make it (an anchor can be redefined, aliases see the latest).
    const cyclic = 'version: 2\nx-a: &a\n  k: 1\n  <<: &b\n    <<: *a\nstack_defaults:\n  <<: *a\n';
    expect(problems(text)).toEqual([]);
    expect(problems(cyclic).join('\n')).toContain('a cycle of anchors');
  });

  it('stops merge keys nested deeper than the limit', () => {
    const levels = MERGE_LIMITS.depth + 4;
    let text = 'version: 2\nx-0: &a0\n  runner_image: debian\n';
    for (let i = 1; i <= levels; i += 1) text += `x-${i}: &a${i}\n  <<: *a${i - 1}\n`;
    text += `stack_defaults:\n  <<: *a${levels}\n`;
    const found = problems(text);
    expect(found.length).toBe(1);
    expect(found[0]).toMatch(
      new RegExp(`^\\d+:\\d+ merge keys nest deeper than ${MERGE_LIMITS.depth} levels$`),
    );
  });

  it('expands an exponential fan-out of merges once per map, with the right result', () => {
    // Ten levels of ten merges each: 10^10 pairs when expanded naively.
    let text = 'version: 2\nx-0: &m0\n  runner_image: ghcr.io/org/runner:v1\n  project_root: a\n';
    for (let i = 1; i <= 10; i += 1)
      text += `x-${i}: &m${i}\n  <<: [${Array.from({ length: 10 }, () => `*m${i - 1}`).join(', ')}]\n`;
    text += 'stack_defaults:\n  <<: *m10\n';
    expect(text.length).toBeLessThan(800);
    const parsed = parseRuntimeConfig(text, '.berth/config.yml');
    expect(parsed.ok && parsed.config.stackDefaults).toEqual({
      runner_image: 'ghcr.io/org/runner:v1',
      project_root: 'a',
    });
  }, 20_000);

  it('stops when merges expand to more settings than the limit', () => {
    const aliases = Array.from({ length: MERGE_LIMITS.pairs + 10 }, () => '*e').join(',');
    const text = `version: 2\nx-e: &e {}\nstack_defaults:\n  <<: [${aliases}]\n`;
    expect(problems(text).join('\n')).toContain(
      `merge keys expand to more than ${MERGE_LIMITS.pairs} settings`,
    );
  }, 20_000);

  it('gives merged maps the YAML order: the first map that names a key wins', () => {
    const text =
      'version: 2\nx-a: &a\n  runner_image: first\nx-b: &b\n  runner_image: second\n  project_root: b\nstack_defaults:\n  <<: [*a, *b]\n';
    const parsed = parseRuntimeConfig(text, '.berth/config.yml');
    expect(parsed.ok && parsed.config.stackDefaults).toEqual({
      runner_image: 'first',
      project_root: 'b',
    });
  });
});
