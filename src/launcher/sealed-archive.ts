/**
 * The workspace a tracked run keeps between its plan and its apply, sealed on disk. It holds
 * what the plan needs (the saved plan, which carries variable values in the clear, the
 * environment the hooks exported, provider files), so it is written encrypted (AES-256-GCM)
 * with a key that exists only in this process's memory, and checked whole against its
 * authentication tag before a single byte goes back into a container. A copy read off the disk,
 * or left behind by a process that died, is of no use to anyone.
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { Transform, Writable, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { BerthError } from '../domain/errors.js';
import type { Seal } from '../domain/workspace-seal.js';

const CIPHER = 'aes-256-gcm';

export interface SealedArchive {
  readonly file: string;
  /**
   * What opens the file: the key, the nonce and the authentication tag. Kept in memory by
   * `berth run`; a worker hands it to its server (which keeps it sealed, apart from the file).
   */
  readonly seal: Seal;
  /** A fresh stream of the plain archive; rejects when the file is not what was sealed. */
  open(): Promise<Readable>;
}

/** Writes what `produce` streams into `file`, encrypted; returns how to read it back. */
export async function writeSealed(
  file: string,
  produce: (sink: Writable) => Promise<void>,
  /** At most this many bytes are accepted; more fails with `tooLarge()` and keeps nothing. */
  limit?: { bytes: number; tooLarge: (bytes: number) => Error },
): Promise<SealedArchive> {
  const key = randomBytes(32);
  const iv = randomBytes(12);
  const cipher = createCipheriv(CIPHER, key, iv);
  await mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
  const written = pipeline(cipher, createWriteStream(file, { mode: 0o600 }));
  // Every byte is counted as it streams (a sparse file counts in full), before it is kept.
  let seen = 0;
  const counted = limit
    ? new Transform({
        transform(chunk: Buffer, _encoding, done) {
          seen += chunk.length;
          if (seen > limit.bytes) done(limit.tooLarge(seen));
          else done(null, chunk);
        },
      })
    : null;
  const input = counted ? pipeline(counted, cipher) : null;
  try {
    await produce(counted ?? cipher);
    await input;
    await written;
  } catch (err) {
    counted?.destroy();
    cipher.destroy();
    await input?.catch(() => undefined);
    await written.catch(() => undefined);
    await rm(file, { force: true });
    throw err;
  }
  return openSealed(file, { key, iv, tag: cipher.getAuthTag() });
}

/** A sealed file written elsewhere (by another worker), with the seal that opens it. */
export function openSealed(file: string, seal: Seal): SealedArchive {
  const decipher = (): ReturnType<typeof createDecipheriv> =>
    createDecipheriv(CIPHER, seal.key, seal.iv).setAuthTag(seal.tag);
  return {
    file,
    seal,
    async open() {
      // Whole-file check first: a changed archive must not reach a container even in part.
      try {
        await pipeline(
          createReadStream(file),
          decipher(),
          new Writable({ write: (_chunk, _encoding, done) => done() }),
        );
      } catch (err) {
        throw new BerthError(
          'BERTH_SAVED_WORKSPACE_INVALID',
          `the saved workspace ${file} is not the one berth sealed after the plan (${(err as Error).message})`,
          { cause: err },
        );
      }
      return createReadStream(file).pipe(decipher());
    },
  };
}
