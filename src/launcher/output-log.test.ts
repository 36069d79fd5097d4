import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { OutputLog } from './output-log.js';

describe('OutputLog', () => {
  it('stores head and tail and reports no failure when the disk takes it', async () => {
    const file = path.join(mkdtempSync(path.join(tmpdir(), 'berth-log-')), 'runs', 'r', 'out.log');
    const log = new OutputLog(file, 1024);
    log.append('hello\n');
    await log.close();
    expect(readFileSync(file, 'utf8')).toBe('hello\n');
    expect(log.failure).toBeNull();
  });

  it('masks the whole stored log once more at close, with values learnt later', async () => {
    const file = path.join(mkdtempSync(path.join(tmpdir(), 'berth-log-')), 'out.log');
    const log = new OutputLog(file, 1024);
    log.append('early hunter2\n');
    log.append('::add-mask *****\n');
    await log.close((text) => text.replaceAll('hunter2', '*****'));
    expect(readFileSync(file, 'utf8')).toBe('early *****\n::add-mask *****\n');
    expect(log.failure).toBeNull();
  });

  it('keeps going on a full disk and says why the stored log is incomplete', async () => {
    // /dev/full answers every write with ENOSPC, as a full file system does.
    const log = new OutputLog('/dev/full', 1024 * 1024);
    for (let i = 0; i < 100; i += 1) log.append('x'.repeat(1000));
    await log.close();
    expect(log.bytes).toBe(100_000);
    expect(log.failure).toMatch(/^ENOSPC/);
  });

  it('never throws when its directory cannot be made', async () => {
    const log = new OutputLog('/dev/null/runs/r/out.log', 1024);
    log.append('still fine\n');
    await log.close();
    expect(log.failure).toMatch(/^ENOTDIR/);
  });
});
