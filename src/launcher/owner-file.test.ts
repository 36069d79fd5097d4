import {
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  renameSync,
  rmSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { claimOwnerFile } from './owner-file.js';

const dirs: string[] = [];

afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

function lockFile(): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'berth-owner-file-'));
  dirs.push(dir);
  return path.join(dir, 'thing.lock');
}

const alive = (): boolean => false;
const gone = (): boolean => true;

describe('claimOwnerFile', () => {
  it('holds a free claim, names its owner to the next claimer, and gives it back', () => {
    const file = lockFile();
    const first = claimOwnerFile(file, 'local/host/1/1', alive);
    expect(first.held).toBe(true);
    expect(readFileSync(file, 'utf8')).toBe('local/host/1/1\n');
    expect(claimOwnerFile(file, 'local/host/2/1', alive)).toEqual({
      held: false,
      owner: 'local/host/1/1',
    });
    if (first.held) first.release();
    const second = claimOwnerFile(file, 'local/host/2/1', alive);
    expect(second.held).toBe(true);
    // Only the claim and nothing else: the file it was written to first is gone.
    expect(readdirSync(path.dirname(file))).toEqual(['thing.lock']);
  });

  it("takes over a gone owner's claim, and an empty file", () => {
    const file = lockFile();
    writeFileSync(file, 'local/host/3/1\n');
    const seen: string[] = [];
    const claim = claimOwnerFile(file, 'local/host/4/1', (owner) => {
      seen.push(owner);
      return true;
    });
    expect(claim.held).toBe(true);
    expect(seen).toEqual(['local/host/3/1']);
    expect(readFileSync(file, 'utf8')).toBe('local/host/4/1\n');
    writeFileSync(file, '');
    // Never asked about an empty owner: no claim of berth's is ever linked into place empty.
    expect(claimOwnerFile(file, 'local/host/5/1', alive).held).toBe(true);
    expect(readFileSync(file, 'utf8')).toBe('local/host/5/1\n');
    expect(readdirSync(path.dirname(file))).toEqual(['thing.lock']);
  });

  it('a release gives back only its own claim, not the one that took it over', () => {
    const file = lockFile();
    const first = claimOwnerFile(file, 'local/host/6/1', alive);
    const second = claimOwnerFile(file, 'local/host/7/1', gone);
    expect(second.held).toBe(true);
    if (first.held) first.release();
    expect(readFileSync(file, 'utf8')).toBe('local/host/7/1\n');
  });

  it('does not remove a claim that another process made while this one took over a gone owner', () => {
    const file = lockFile();
    writeFileSync(file, 'local/host/8/1\n');
    const claim = claimOwnerFile(file, 'local/host/9/1', (owner) => {
      if (owner === 'local/host/8/1') {
        // Meanwhile another process took over the same gone owner: its claim is in place.
        writeFileSync(`${file}.other`, 'local/host/10/1\n');
        renameSync(`${file}.other`, file);
        return true;
      }
      return false;
    });
    expect(claim).toEqual({ held: false, owner: 'local/host/10/1' });
    expect(readFileSync(file, 'utf8')).toBe('local/host/10/1\n');
    expect(readdirSync(path.dirname(file))).toEqual(['thing.lock']);
  });

  it('removes a takeover guard left by a process that died while taking over', () => {
    const file = lockFile();
    writeFileSync(file, 'local/host/11/1\n');
    mkdirSync(`${file}.takeover`);
    const old = new Date(Date.now() - 60_000);
    utimesSync(`${file}.takeover`, old, old);
    expect(claimOwnerFile(file, 'local/host/12/1', gone).held).toBe(true);
    expect(readdirSync(path.dirname(file))).toEqual(['thing.lock']);
  });
});
