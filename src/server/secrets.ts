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
import type { Store } from '../store/store.js';

const PREFIX = 'sealed:v1:';

/** The setting that holds KEY_CHECK sealed with the servers' key (see checkSecretsKey). */
const KEY_CHECK_SETTING = 'secrets_key_check';
const KEY_CHECK = 'berth secrets key check v1';

export class SecretBox {
  private constructor(
    private readonly key: Buffer,
    /** Where the key came from, for messages: BERTH_SECRETS_KEY or the key file's path. */
    readonly source = 'the given key',
  ) {}

  static fromKey(key: Buffer, source?: string): SecretBox {
    if (key.length !== 32) {
      throw new BerthError('BERTH_USAGE', `the secrets key is ${key.length} bytes; it must be 32`, {
        hint: 'Set BERTH_SECRETS_KEY to 32 random bytes in base64 (`openssl rand -base64 32`), or unset it to let berth generate one in its data directory.',
      });
    }
    return new SecretBox(key, source);
  }

  /**
   * BERTH_SECRETS_KEY, else `secrets.key` in the data directory (made on first use, 0600). A key
   * is never made anew while sealed values exist: they could not be opened with it.
   */
  static load(env: NodeJS.ProcessEnv, dataDir: string, sealedValuesExist = false): SecretBox {
    const given = env.BERTH_SECRETS_KEY?.trim();
    if (given) return SecretBox.fromKey(Buffer.from(given, 'base64'), 'BERTH_SECRETS_KEY');
    const file = path.join(dataDir, 'secrets.key');
    try {
      return SecretBox.fromKey(Buffer.from(readFileSync(file, 'utf8').trim(), 'base64'), file);
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
      return new SecretBox(key, file);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      return SecretBox.fromKey(Buffer.from(readFileSync(file, 'utf8').trim(), 'base64'), file);
    }
  }

  seal(plain: string): string {
    const iv = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', this.key, iv);
    const body = Buffer.concat([cipher.update(plain, 'utf8'), cipher.final()]);
    return PREFIX + Buffer.concat([iv, cipher.getAuthTag(), body]).toString('base64');
  }

  /** Whether `sealed` was sealed with this key (and, when given, holds `plain`). */
  opens(sealed: string, plain?: string): boolean {
    try {
      const opened = this.open(sealed);
      return plain === undefined || opened === plain;
    } catch {
      return false;
    }
  }

  /**
   * The plain text of `sealed` (`what` names it in the error): BERTH_SECRETS_KEY_MISMATCH when it
   * was sealed with another key.
   */
  open(sealed: string, what = 'a sealed value'): string {
    if (!sealed.startsWith(PREFIX)) throw new Error('not a sealed value');
    const raw = Buffer.from(sealed.slice(PREFIX.length), 'base64');
    const decipher = createDecipheriv('aes-256-gcm', this.key, raw.subarray(0, 12));
    decipher.setAuthTag(raw.subarray(12, 28));
    try {
      return Buffer.concat([decipher.update(raw.subarray(28)), decipher.final()]).toString('utf8');
    } catch (err) {
      throw new BerthError(
        'BERTH_SECRETS_KEY_MISMATCH',
        `${what} cannot be opened with this server's secrets key (${this.source}): it was sealed with another key`,
        { cause: err },
      );
    }
  }
}

/**
 * Makes sure this server's key is the one the database's sealed values need, before it serves
 * anything: a server with another key (a second server that generated its own, a key file
 * replaced, BERTH_SECRETS_KEY mistyped) would otherwise start fine and fail each run that needs a
 * secret. The first server on a database records a known text sealed with its key; every later
 * start must open it. A database from before that record is checked against one of its sealed
 * values instead, then recorded.
 */
export async function checkSecretsKey(store: Store, box: SecretBox): Promise<void> {
  const sample = await store.sealedValueSample();
  if (sample !== null && !box.opens(sample)) {
    throw keyMismatch(box, 'does not open the secret values this database holds');
  }
  const recorded = await store.claimSetting(KEY_CHECK_SETTING, box.seal(KEY_CHECK));
  if (!box.opens(recorded, KEY_CHECK)) {
    throw keyMismatch(
      box,
      'is not the key of the other servers on this database (the first server to start on it recorded its own)',
    );
  }
}

function keyMismatch(box: SecretBox, what: string): BerthError {
  return new BerthError('BERTH_SECRETS_KEY_MISMATCH', `the secrets key (${box.source}) ${what}`);
}

/**
 * `berth server --new-secrets-key`: the key that sealed the database's values is lost, and with
 * it what it sealed (no one can open that any more). When this server's key does not open them:
 * the stacks' secret variables are deleted, to be set again; runs holding a saved workspace end
 * FAILED, to be triggered again; and this key is recorded as the servers' key. When it does, or
 * the database holds nothing sealed, nothing is forgotten. Returns what to tell the operator.
 */
export async function renewSecretsKey(store: Store, box: SecretBox, at: Date): Promise<string[]> {
  try {
    await checkSecretsKey(store, box);
    return [
      `--new-secrets-key: the secrets key (${box.source}) opens what the database holds; nothing was forgotten`,
    ];
  } catch (err) {
    if (!(err instanceof BerthError) || err.code !== 'BERTH_SECRETS_KEY_MISMATCH') throw err;
  }
  const variables = await store.forgetSecretVariables();
  const runs: string[] = [];
  for (const run of await store.runsWithSavedWorkspace()) {
    const failed = await store.transitionRun(
      run.id,
      'FAILED',
      {
        from: [run.state],
        patch: {
          stateReason:
            'its saved workspace was sealed with a secrets key that was lost (berth server --new-secrets-key); nothing was applied: trigger the run again',
          releaseWorker: true,
        },
      },
      at,
    );
    runs.push(failed.id);
  }
  await store.replaceSetting(KEY_CHECK_SETTING, box.seal(KEY_CHECK));
  const named = variables.map((v) => `${v.stackId}/${v.name}`).join(', ');
  return [
    `--new-secrets-key: the secrets key (${box.source}) is now the servers' key; what the lost key sealed is forgotten:`,
    `  ${variables.length} secret variable(s), to be set again${named ? `: ${named}` : ''}`,
    `  ${runs.length} run(s) waiting with a saved workspace, now FAILED${runs.length ? `: ${runs.join(', ')}` : ''}`,
  ];
}
