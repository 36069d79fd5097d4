import { mkdtempSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { BerthError } from '../domain/errors.js';
import { makeDirectory } from './make-directory.js';

const root = mkdtempSync(path.join(tmpdir(), 'berth-make-dir-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

function refusal(dir: string): BerthError {
  try {
    makeDirectory(dir, 'data directory', '--data-dir');
  } catch (err) {
    expect(err).toBeInstanceOf(BerthError);
    return err as BerthError;
  }
  throw new Error(`makeDirectory(${dir}) did not refuse`);
}

describe('makeDirectory', () => {
  it('makes the directory and its parents, private, and takes one that is there', () => {
    const dir = path.join(root, 'a', 'b', 'c');
    makeDirectory(dir, 'data directory', '--data-dir');
    expect(statSync(dir).isDirectory()).toBe(true);
    expect(statSync(dir).mode & 0o777).toBe(0o700);
    makeDirectory(dir, 'data directory', '--data-dir');
  });

  it('says which part of the path is a file, with the setting to change', () => {
    const file = path.join(root, 'file');
    writeFileSync(file, '');
    const itself = refusal(file);
    expect(itself.code).toBe('BERTH_USAGE');
    expect(itself.message).toBe(`cannot create the data directory ${file}: ${file} is a file`);
    expect(itself.hint).toMatch(
      /^Give a directory this user \(uid \d+\) may create and write, in --data-dir, or move \S+ out of the way\.$/,
    );
    expect(refusal(path.join(file, 'below')).message).toBe(
      `cannot create the data directory ${file}/below: ${file} is a file`,
    );
  });

  it('says a symbolic link leads nowhere', () => {
    const link = path.join(root, 'dangling');
    symlinkSync(path.join(root, 'nowhere'), link);
    expect(refusal(path.join(link, 'data')).message).toBe(
      `cannot create the data directory ${link}/data: ${link} is a symbolic link to nothing`,
    );
  });

  it('ends, with the reason, on a file system that refuses to create anything (/proc)', () => {
    // Node's recursive mkdir never returns there.
    expect(refusal('/proc/berth-test-nope/data').message).toBe(
      'cannot create the data directory /proc/berth-test-nope/data: this file system does not let berth create it at /proc/berth-test-nope (ENOENT)',
    );
  });
});
