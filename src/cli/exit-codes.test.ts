/** The exit-code table in docs/usage.md and the code, checked against each other. */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  BerthError,
  ERROR_CATALOGUE,
  EXIT_CODES,
  exitCodeForError,
  type ErrorCode,
  type ErrorKind,
} from '../domain/errors.js';

const usage = readFileSync(new URL('../../docs/usage.md', import.meta.url), 'utf8');
const section = usage.slice(usage.indexOf('### Exit codes'), usage.indexOf('### JSON events'));
const table = new Map(
  section
    .split('\n')
    .filter((line) => /^\| \d+ +\|/.test(line))
    .map((line) => {
      const [code, meaning] = line
        .slice(1, -1)
        .split('|')
        .map((cell) => cell.trim());
      return [Number(code), meaning as string];
    }),
);

/** How the docs name each kind of error at the start of its row. */
const KIND_WORDS: Record<ErrorKind, string> = {
  usage: 'usage or configuration error',
  config: 'usage or configuration error',
  image: 'image or policy error',
  infra: 'infrastructure error',
  internal: 'internal error',
};

describe('exit codes', () => {
  it('docs/usage.md lists exactly the exit codes berth uses', () => {
    expect([...table.keys()].sort((a, b) => a - b)).toEqual(
      [...new Set(Object.values(EXIT_CODES))].sort((a, b) => a - b),
    );
  });

  it.each(Object.keys(ERROR_CATALOGUE) as ErrorCode[])(
    '%s exits with the code of its kind, as the table says',
    (code) => {
      const error = new BerthError(code, 'x');
      const row = table.get(exitCodeForError(error));
      expect(row?.startsWith(KIND_WORDS[error.kind])).toBe(true);
    },
  );
});
