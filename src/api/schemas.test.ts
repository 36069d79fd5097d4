import { describe, expect, it } from 'vitest';
import * as schemas from './schemas.js';

/** Every string schema with a pattern inside `schema`, with where it is. */
function patterned(schema: unknown, at: string): { at: string; description: unknown }[] {
  if (schema === null || typeof schema !== 'object') return [];
  const node = schema as Record<string, unknown>;
  const own = typeof node.pattern === 'string' ? [{ at, description: node.description }] : [];
  return [
    ...own,
    ...Object.entries(node).flatMap(([key, value]) =>
      Array.isArray(value)
        ? value.flatMap((v, i) => patterned(v, `${at}.${key}[${i}]`))
        : patterned(value, `${at}.${key}`),
    ),
  ];
}

describe('the API schemas', () => {
  it('describe in words what each pattern accepts (a refused value is told that, not the regex)', () => {
    const found = Object.entries(schemas).flatMap(([name, schema]) => patterned(schema, name));
    expect(found.length).toBeGreaterThan(10);
    expect(found.filter((p) => typeof p.description !== 'string')).toEqual([]);
  });
});
