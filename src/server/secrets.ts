/**
 * Secret stack variables are stored sealed (AES-256-GCM) with a key the operator provides
 * (BERTH_SECRETS_KEY, 32 bytes in base64) or one generated into the data directory with mode
 * 0600 on first start. The API never returns a secret value; only the worker that runs the job
 * gets it, and masks it.
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { BerthError } from '../domain/errors.js';

const PREFIX = 'sealed:v1:';

export class SecretBox {
  private constructor(private readonly key: Buffer) {}

  static fromKey(key: Buffer): SecretBox {
    if (key.length !== 32) {
      throw new BerthError('BERTH_USAGE', `the secrets key is ${key.length} bytes; it must be 32`, {
        hint: 'Set BERTH_SECRETS_KEY to 32 random bytes in base64 (`openssl rand -base64 32`), or unset it to let berth generate one in its data directory.',
      });
    }
    return new SecretBox(key);
  }

  /**
   * BERTH_SECRETS_KEY, else `secrets.key` in the data directory (made on first use, 0600). A key
   * is never made anew while sealed values exist: they could not be opened with it.
   */
  static load(env: NodeJS.ProcessEnv, dataDir: string, sealedValuesExist = false): SecretBox {
    const given = env.BERTH_SECRETS_KEY?.trim();
    if (given) return SecretBox.fromKey(Buffer.from(given, 'base64'));
    const file = path.join(dataDir, 'secrets.key');
    try {
      return SecretBox.fromKey(Buffer.from(readFileSync(file, 'utf8').trim(), 'base64'));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    if (sealedValuesExist) {
      throw new BerthError(
        'BERTH_USAGE',
        `the secrets key is missing (${file}, or BERTH_SECRETS_KEY), and the database holds secret variables sealed with it`,
        {
          hint: 'Put the key file back (or set BERTH_SECRETS_KEY to the key). Without it the secret variables cannot be opened; set them again after removing them if the key is lost.',
        },
      );
    }
    const key = randomBytes(32);
    // `wx`: two servers starting at once never overwrite each other's key.
    try {
      writeFileSync(file, `${key.toString('base64')}\n`, { mode: 0o600, flag: 'wx' });
      return new SecretBox(key);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      return SecretBox.fromKey(Buffer.from(readFileSync(file, 'utf8').trim(), 'base64'));
    }
  }

  seal(plain: string): string {
    const iv = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', this.key, iv);
    const body = Buffer.concat([cipher.update(plain, 'utf8'), cipher.final()]);
    return PREFIX + Buffer.concat([iv, cipher.getAuthTag(), body]).toString('base64');
  }

  open(sealed: string): string {
    if (!sealed.startsWith(PREFIX)) throw new Error('not a sealed value');
    const raw = Buffer.from(sealed.slice(PREFIX.length), 'base64');
    const decipher = createDecipheriv('aes-256-gcm', this.key, raw.subarray(0, 12));
    decipher.setAuthTag(raw.subarray(12, 28));
    return Buffer.concat([decipher.update(raw.subarray(28)), decipher.final()]).toString('utf8');
  }
}
