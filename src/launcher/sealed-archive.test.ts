import { mkdtempSync, readFileSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { describe, expect, it } from 'vitest';
import { BerthError } from '../domain/errors.js';
import { readAll } from '../executor/docker/engine-client.js';
import { sealFromText, sealToText } from '../domain/workspace-seal.js';
import { openSealed, writeSealed } from './sealed-archive.js';

const secret = 'TF_VAR_db_password=hunter2-plain-value\n'.repeat(1000);

function sealedFile(): string {
  return path.join(mkdtempSync(path.join(tmpdir(), 'berth-sealed-')), 'runs', 'r1', 'ws.sealed');
}

describe('writeSealed', () => {
  it('keeps nothing readable on disk and gives the archive back whole, as often as asked', async () => {
    const file = sealedFile();
    const sealed = await writeSealed(file, (sink) => pipeline(Readable.from([secret]), sink));
    const onDisk = readFileSync(file);
    expect(onDisk.length).toBe(Buffer.byteLength(secret));
    expect(onDisk.toString('latin1')).not.toContain('hunter2');
    expect(await readAll(await sealed.open())).toBe(secret);
    expect(await readAll(await sealed.open())).toBe(secret);
  });

  it('refuses a changed file before giving any of it back', async () => {
    const file = sealedFile();
    const sealed = await writeSealed(file, (sink) => pipeline(Readable.from([secret]), sink));
    const bytes = readFileSync(file);
    bytes.writeUInt8((bytes.at(-1) as number) ^ 1, bytes.length - 1);
    writeFileSync(file, bytes);
    const error = await sealed.open().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(BerthError);
    expect((error as BerthError).code).toBe('BERTH_SAVED_WORKSPACE_INVALID');
    expect((error as BerthError).message).toContain(file);
  });

  it('removes the partial file when the archive cannot be produced', async () => {
    const file = sealedFile();
    const failing = writeSealed(file, async (sink) => {
      sink.write('partial');
      await Promise.resolve();
      throw new Error('engine went away');
    });
    await expect(failing).rejects.toThrow('engine went away');
    expect(existsSync(file)).toBe(false);
  });

  it('stops at its limit, counting every byte streamed, and keeps nothing', async () => {
    const file = sealedFile();
    const chunk = Buffer.alloc(64 * 1024);
    const endless = Readable.from(
      (function* () {
        for (let i = 0; i < 1000; i += 1) yield chunk;
      })(),
    );
    const failing = writeSealed(file, (sink) => pipeline(endless, sink), {
      bytes: 1024 * 1024,
      tooLarge: (bytes) => new BerthError('BERTH_SAVED_WORKSPACE_TOO_LARGE', `over at ${bytes}`),
    });
    const error = await failing.catch((e: unknown) => e);
    expect((error as BerthError).code).toBe('BERTH_SAVED_WORKSPACE_TOO_LARGE');
    expect((error as BerthError).message).toBe(`over at ${1024 * 1024 + 64 * 1024}`);
    expect(existsSync(file)).toBe(false);
  });

  it('keeps an archive within its limit whole', async () => {
    const file = sealedFile();
    const sealed = await writeSealed(file, (sink) => pipeline(Readable.from([secret]), sink), {
      bytes: Buffer.byteLength(secret),
      tooLarge: () => new Error('never'),
    });
    expect(await readAll(await sealed.open())).toBe(secret);
  });

  it('opens elsewhere (a copy, another worker) with its seal as text, and only with it', async () => {
    const file = sealedFile();
    const sealed = await writeSealed(file, (sink) => pipeline(Readable.from([secret]), sink));
    const copy = `${file}.copy`;
    writeFileSync(copy, readFileSync(file));
    const text = sealToText(sealed.seal);
    const seal = sealFromText(text);
    expect(seal).not.toBeNull();
    expect(await readAll(await openSealed(copy, seal as NonNullable<typeof seal>).open())).toBe(
      secret,
    );
    const wrong = { ...sealed.seal, key: Buffer.alloc(32, 9) };
    const error = await openSealed(copy, wrong)
      .open()
      .catch((e: unknown) => e);
    expect((error as BerthError).code).toBe('BERTH_SAVED_WORKSPACE_INVALID');
    for (const bad of ['', '{}', '{"key":"AAAA","iv":"AAAA","tag":"AAAA"}', 'null'])
      expect(sealFromText(bad)).toBeNull();
  });
});
