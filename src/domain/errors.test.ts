import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  BerthError,
  ERROR_CATALOGUE,
  EXIT_CODES,
  coerceError,
  exitCodeForError,
} from './errors.js';

const docs = readFileSync(new URL('../../docs/errors.md', import.meta.url), 'utf8');
// Cells of each table row, trimmed (prettier pads the table).
const rows = new Map(
  docs
    .split('\n')
    .filter((line) => line.startsWith('| `BERTH_'))
    .map((line) => {
      const cells = line
        .slice(1, -1)
        .split(/(?<!\\)\|/)
        .map((cell) => cell.trim());
      return [cells[0]?.replace(/`/g, '') as string, cells];
    }),
);

describe('the error catalogue', () => {
  it('has a row in docs/errors.md for every code, and no row for a code that does not exist', () => {
    expect([...rows.keys()].sort()).toEqual(Object.keys(ERROR_CATALOGUE).sort());
  });

  it.each(Object.entries(ERROR_CATALOGUE))(
    '%s: the docs show its kind, retry and fix',
    (code, entry) => {
      const [, kind, retry, what, fix] = rows.get(code) as string[];
      const exit = exitCodeForError(new BerthError(code as keyof typeof ERROR_CATALOGUE, 'x'));
      expect(kind).toBe(`${entry.kind} (exit ${exit})`);
      expect(retry).toBe(entry.retryable ? 'yes' : 'no');
      expect(what).not.toBe('');
      expect(fix).toBe(entry.hint.replace(/\|/g, '\\|'));
    },
  );

  it('keeps the cause and lets a precise hint replace the catalogue one', () => {
    const cause = new Error('low level');
    const err = new BerthError('BERTH_DOCKER_API', 'engine said no', { cause, hint: 'do this' });
    expect(err.cause).toBe(cause);
    expect(err.hint).toBe('do this');
    expect(err.kind).toBe('infra');
  });

  it('coerces anything thrown into an internal error, keeping berth errors as they are', () => {
    const own = new BerthError('BERTH_USAGE', 'x');
    expect(coerceError(own)).toBe(own);
    expect(coerceError(new TypeError('boom'))).toMatchObject({
      code: 'BERTH_INTERNAL',
      message: 'boom',
    });
    expect(coerceError('text')).toMatchObject({ code: 'BERTH_INTERNAL', message: 'text' });
    expect(exitCodeForError(coerceError('x'))).toBe(EXIT_CODES.internal);
  });

  it('turns a full disk on this machine into BERTH_DISK_FULL with the system message', () => {
    const full = Object.assign(new Error("ENOSPC: no space left on device, write '/s/tools/x'"), {
      code: 'ENOSPC',
    });
    expect(coerceError(full)).toMatchObject({
      code: 'BERTH_DISK_FULL',
      message: "no space left on this machine: ENOSPC: no space left on device, write '/s/tools/x'",
    });
    expect(exitCodeForError(coerceError(full))).toBe(EXIT_CODES.infra);
  });
});
