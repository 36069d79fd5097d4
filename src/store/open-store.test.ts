import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { openStore, redact } from './open-store.js';

describe('redact', () => {
  it.each([
    ['postgres://berth:s3cret@db:5432/berth', 'postgres://berth:*****@db:5432/berth'],
    ['postgres://berth:pa@ss@db/berth', 'postgres://berth:*****@db/berth'],
    ['postgres://berth:ab/cd@db/berth', 'postgres://berth:*****@db/berth'],
    ['postgres://berth@db/berth', 'postgres://berth@db/berth'],
    ['sqlite:///var/lib/berth/berth.db', 'sqlite:///var/lib/berth/berth.db'],
  ])('shows %s as %s', (url, shown) => {
    expect(redact(url)).toBe(shown);
  });
});

describe('the SQLite database', () => {
  it('is closed to other users, also one that was made readable to them before', async () => {
    const dataDir = mkdtempSync(path.join(tmpdir(), 'berth-store-'));
    try {
      writeFileSync(path.join(dataDir, 'berth.db'), '', { mode: 0o644 });
      writeFileSync(path.join(dataDir, 'berth.db-wal'), '', { mode: 0o644 });
      const store = await openStore({ dataDir });
      try {
        await store.migrate();
        for (const file of ['berth.db', 'berth.db-wal'])
          expect(statSync(path.join(dataDir, file)).mode & 0o777, file).toBe(0o600);
      } finally {
        await store.close();
      }
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
