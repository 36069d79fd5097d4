import { describe, expect, it } from 'vitest';
import { parseRuntimeConfig, parseStackSettings } from './runtime-config-yaml.js';

function problemsOf(text: string): { line: number; column: number; message: string }[] {
  const parsed = parseRuntimeConfig(text, '.berth/config.yml');
  if (parsed.ok) throw new Error('expected problems');
  return parsed.problems;
}

describe('runtime configuration: YAML errors where they are', () => {
  it('reports a syntax error at its own line and column, not at 1:1', () => {
    const text = [
      'version: 1',
      'stack_defaults:',
      '  runner_image: ghcr.io/org/runner:v1',
      'stacks:',
      '  app: [',
      '',
    ].join('\n');
    const [first] = problemsOf(text);
    expect(first?.message).toMatch(/^YAML: /);
    expect(first?.line).toBeGreaterThanOrEqual(5);
    expect(first?.line).not.toBe(1);
  });

  it('reports a syntax error on line 10 there', () => {
    const lines = ['version: 1', 'stack_defaults:'];
    for (let i = 0; i < 7; i++) lines.push(`  # comment ${i}`);
    lines.push('  runner_image: a: b', '');
    expect(problemsOf(lines.join('\n'))).toEqual([
      expect.objectContaining({ line: 10, message: expect.stringMatching(/^YAML: /) as string }),
    ]);
  });

  it('refuses an undefined alias at its position instead of dropping what it merges', () => {
    const text = [
      'version: 1',
      'stack_defaults:',
      '  <<: *nope',
      '  runner_image: ghcr.io/org/runner:v1',
      '',
    ].join('\n');
    expect(problemsOf(text)).toEqual([
      expect.objectContaining({
        line: 3,
        column: 7,
        message: 'this value is the alias *nope, which no anchor defines',
      }),
    ]);
  });

  it('still accepts a defined alias', () => {
    const text = [
      'version: 1',
      'x-common: &base',
      '  runner_image: ghcr.io/org/runner:v1',
      'stack_defaults:',
      '  <<: *base',
      '',
    ].join('\n');
    const parsed = parseRuntimeConfig(text, 'c.yml');
    expect(parsed.ok ? undefined : parsed.problems).toBeUndefined();
  });

  it('says every other problem of the file beside an undefined alias, at once', () => {
    const text = [
      'version: 2',
      'stack_defaults:',
      '  <<: *missing',
      '  bogus_key: 1',
      'stacks:',
      '  a:',
      '    runner_image: "UPPER/Case"',
      '',
    ].join('\n');
    const parsed = parseRuntimeConfig(text, 'c.yml');
    expect(
      parsed.ok ? [] : parsed.problems.map((p) => `${p.line}:${p.column} ${p.message}`),
    ).toEqual([
      '3:7 this value is the alias *missing, which no anchor defines',
      '4:3 unknown setting "bogus_key" in stack_defaults',
      expect.stringMatching(/^7:19 stacks\.a\.runner_image: invalid image reference "UPPER\/Case"/),
    ]);
  });

  it('applies the same to a stack settings file', () => {
    const parsed = parseStackSettings('runner_image: *missing\n', 'settings.yml');
    expect(parsed.ok).toBe(false);
    expect(parsed.ok ? [] : parsed.problems).toEqual([
      expect.objectContaining({ line: 1, column: 15 }),
    ]);
  });
});
