/**
 * Every error code in the catalogue is provoked by an integration test: a test under test/ that
 * expects the code (the quoted code inside a statement with `expect(`, or in an `it.each` table). A new code without such a
 * test fails here. The few codes that cannot happen for real on a test machine are listed with
 * the reason and the unit test that covers them instead; an exemption that is no longer needed
 * fails too, so the list only shrinks.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { ERROR_CATALOGUE } from '../src/domain/errors.js';

const NOT_PROVOKED_HERE: Record<string, string> = {
  BERTH_INTERNAL:
    'a bug in berth: no real input provokes it on purpose; coerceError and the engine-refusal mapping are unit-tested (src/executor/docker/daemon-errors.test.ts)',
};

const TEST_DIR = fileURLToPath(new URL('.', import.meta.url));

/** Codes each test file expects, statement by statement. */
function expectedCodes(): Map<string, string[]> {
  const found = new Map<string, string[]>();
  for (const file of readdirSync(TEST_DIR).filter((f) => f.endsWith('.test.ts'))) {
    if (file === 'error-catalogue.test.ts') continue;
    const text = readFileSync(`${TEST_DIR}/${file}`, 'utf8');
    for (const statement of text.split(/;\s*\n/)) {
      // An expectation, or the table of an it.each whose cases expect the code; a code a test
      // expects *not* to see (`.not.`) is not provoked by it.
      if (!statement.includes('expect(') && !statement.includes('it.each(')) continue;
      if (statement.includes('.not.')) continue;
      for (const match of statement.matchAll(/'(BERTH_[A-Z_]+)'/g)) {
        const code = match[1] as string;
        found.set(code, [...new Set([...(found.get(code) ?? []), file])]);
      }
    }
  }
  return found;
}

describe('the error catalogue', () => {
  const found = expectedCodes();
  const codes = Object.keys(ERROR_CATALOGUE);

  it('has an integration test expecting each code', () => {
    const untested = codes.filter((code) => !found.has(code) && !(code in NOT_PROVOKED_HERE));
    expect(untested, 'codes no test under test/ expects').toEqual([]);
  });

  it('exempts only codes that exist and that no test provokes', () => {
    for (const code of Object.keys(NOT_PROVOKED_HERE)) {
      expect(codes).toContain(code);
      expect(found.get(code), `${code} is tested now: drop its exemption`).toBeUndefined();
    }
  });
});
