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
import type { SealedValue, Store } from '../store/store.js';

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
      const where = source ?? 'the secrets key';
      throw new BerthError(
        'BERTH_USAGE',
        `${where} holds ${key.length} bytes in base64; a secrets key is 32 bytes`,
        {
          hint:
            source === 'BERTH_SECRETS_KEY'
              ? 'Set BERTH_SECRETS_KEY to the key every server on this database uses: 32 random bytes in base64 (`openssl rand -base64 32` makes one), or unset it to use the key file in the data directory.'
              : `Put the key every server on this database uses in ${where}: 32 random bytes in base64 (\`openssl rand -base64 32\` makes one), mode 0600.`,
        },
      );
    }
    return new SecretBox(key, source);
  }

  /**
   * BERTH_SECRETS_KEY, else `secrets.key` in the data directory (made on first use, 0600). A key
   * is never made anew while the database holds anything sealed (a value or the key check): it
   * could not open it. Nor for --new-secrets-key (`renewing`): the key to use from now on is the
   * operator's to give.
   */
  static load(
    env: NodeJS.ProcessEnv,
    dataDir: string,
    database: { sealed: boolean; renewing?: boolean } = { sealed: false },
  ): SecretBox {
    const given = env.BERTH_SECRETS_KEY?.trim();
    if (given) return SecretBox.fromKey(Buffer.from(given, 'base64'), 'BERTH_SECRETS_KEY');
    const file = path.join(dataDir, 'secrets.key');
    try {
      return SecretBox.fromKey(Buffer.from(readFileSync(file, 'utf8').trim(), 'base64'), file);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    if (database.renewing) {
      throw new BerthError(
        'BERTH_USAGE',
        `--new-secrets-key needs the key to use from now on, and there is none (${file}, or BERTH_SECRETS_KEY)`,
        {
          hint: `Make one and give it to every server: BERTH_SECRETS_KEY=$(openssl rand -base64 32), or the same in ${file} (mode 0600). berth does not make it here: a key made on one machine would lock the other servers out.`,
        },
      );
    }
    if (database.sealed) {
      throw new BerthError(
        'BERTH_SECRETS_KEY_MISMATCH',
        `the secrets key is missing (${file}, or BERTH_SECRETS_KEY), and the database holds values sealed with it`,
        {
          hint: `Put the key file back (mode 0600), or set BERTH_SECRETS_KEY to the key the other servers use. If it is lost for good: berth server --new-secrets-key with a new key (see docs/server.md, 'The secrets key').`,
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
        `${what} cannot be opened with this server's secrets key: it was sealed with another key`,
        { cause: err },
      );
    }
  }
}

/**
 * A warning when BERTH_SECRETS_KEY is used and the data directory's key file holds another key:
 * a later start without the variable would take the file and be refused. Null otherwise.
 */
export function staleKeyFile(env: NodeJS.ProcessEnv, dataDir: string): string | null {
  const given = env.BERTH_SECRETS_KEY?.trim();
  if (!given) return null;
  const file = path.join(dataDir, 'secrets.key');
  let inFile: string;
  try {
    inFile = readFileSync(file, 'utf8').trim();
  } catch {
    return null;
  }
  if (Buffer.from(inFile, 'base64').equals(Buffer.from(given, 'base64'))) return null;
  return `warning: ${file} holds another key than BERTH_SECRETS_KEY, which is the one used; a start without BERTH_SECRETS_KEY would take the file's and be refused: put the same key in the file (mode 0600) or remove it`;
}

/** Whether the database holds anything sealed with the servers' key (a value, or the check). */
export async function holdsSealed(store: Store): Promise<boolean> {
  return (
    (await store.readSetting(KEY_CHECK_SETTING)) !== null || (await store.sealedValues()).length > 0
  );
}

/**
 * Makes sure this server's key is the one the database's sealed values need, before it serves
 * anything: a server with another key (a second server that generated its own, a key file
 * replaced, BERTH_SECRETS_KEY mistyped) would otherwise start fine and fail each run that needs a
 * secret. The first server on a database records a known text sealed with its key; every later
 * start must open it. A database from before that record must open every sealed value it holds
 * first, then it is recorded.
 */
export async function checkSecretsKey(store: Store, box: SecretBox): Promise<void> {
  const recorded = await store.readSetting(KEY_CHECK_SETTING);
  if (recorded === null) {
    const closed = (await store.sealedValues()).filter((v) => !box.opens(v.value));
    if (closed.length > 0) throw keyMismatch(box, `does not open ${describeSealed(closed)}`);
  }
  const claimed = recorded ?? (await store.claimSetting(KEY_CHECK_SETTING, box.seal(KEY_CHECK)));
  if (!box.opens(claimed, KEY_CHECK)) {
    throw keyMismatch(
      box,
      'is not the key recorded for this database (by the first server that started on it, or by the last --new-secrets-key): every server on one database needs that key',
    );
  }
}

function keyMismatch(box: SecretBox, what: string): BerthError {
  return new BerthError('BERTH_SECRETS_KEY_MISMATCH', `the secrets key (${box.source}) ${what}`);
}

/** "N sealed value(s) of this database: A, B, …" (the first five named). */
function describeSealed(values: readonly SealedValue[]): string {
  const named = values
    .slice(0, 5)
    .map((v) =>
      v.kind === 'variable'
        ? `stack ${v.stackId}'s secret variable ${v.name}`
        : `the saved workspace of run ${v.runId}`,
    );
  const more = values.length > named.length ? `, and ${values.length - named.length} more` : '';
  return `${values.length} sealed value(s) of this database: ${named.join(', ')}${more}`;
}

/** Runs whose saved workspace waits for a decision or a worker: nothing of the apply began. */
const WAITING: readonly string[] = ['UNCONFIRMED', 'CONFIRMED'];

/**
 * `berth server --new-secrets-key`: the key that sealed some of the database's values is lost,
 * and with it those values (no one can open them any more). Of what this server's key does not
 * open: the stacks' secret variables are deleted, to be set again; runs whose saved workspace
 * waits for a confirm or a worker end FAILED, to be triggered again (an apply already handed to a
 * worker keeps going: that worker has its seal). Then this key is recorded as the servers' key.
 * What the key opens is kept; when it opens everything and is the recorded key, nothing changes.
 * Returns what to tell the operator.
 */
export async function renewSecretsKey(store: Store, box: SecretBox, at: Date): Promise<string[]> {
  const recorded = await store.readSetting(KEY_CHECK_SETTING);
  const closed = (await store.sealedValues()).filter((v) => !box.opens(v.value));
  if (closed.length === 0 && (recorded === null || box.opens(recorded, KEY_CHECK))) {
    await checkSecretsKey(store, box);
    return [
      `--new-secrets-key: the secrets key (${box.source}) opens what the database holds; nothing was forgotten`,
    ];
  }
  const variables: string[] = [];
  const runs: string[] = [];
  const applying: string[] = [];
  for (const value of closed) {
    if (value.kind === 'variable') {
      await store.unsetStackVariable(value.stackId, value.name);
      variables.push(`${value.stackId}/${value.name}`);
    } else if (WAITING.includes(value.state)) {
      await store.transitionRun(
        value.runId,
        'FAILED',
        {
          from: [value.state],
          patch: {
            stateReason:
              'its saved workspace was sealed with a secrets key that was lost (berth server --new-secrets-key); nothing was applied: trigger the run again',
            releaseWorker: true,
          },
        },
        at,
      );
      runs.push(value.runId);
    } else {
      applying.push(value.runId);
    }
  }
  await store.replaceSetting(KEY_CHECK_SETTING, box.seal(KEY_CHECK));
  return [
    `--new-secrets-key: the secrets key (${box.source}) is now the servers' key; what only the lost key opened is forgotten:`,
    `  ${variables.length} secret variable(s), to be set again${variables.length ? `: ${variables.join(', ')}` : ''}`,
    `  ${runs.length} run(s) waiting with a saved workspace, now FAILED${runs.length ? `: ${runs.join(', ')}` : ''}`,
    ...(applying.length
      ? [
          `  left alone, their apply already with a worker that holds the seal: ${applying.join(', ')}`,
        ]
      : []),
  ];
}
