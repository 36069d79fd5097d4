/**
 * The secrets key check at a server's start and its renewal after a lost key, on a real SQLite
 * store: a key other than the database's is refused whether or not anything is sealed yet, and
 * --new-secrets-key forgets only what no one can open any more.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { BerthError } from '../domain/errors.js';
import { openStore } from '../store/open-store.js';
import type { Store } from '../store/store.js';
import { poolWithStack, waitingPlan } from '../../test/harness/store-fixtures.js';
import { SecretBox, checkSecretsKey, renewSecretsKey, staleKeyFile } from './secrets.js';

const keyA = SecretBox.fromKey(Buffer.alloc(32, 1), 'key A');
const keyB = SecretBox.fromKey(Buffer.alloc(32, 2), 'key B');
const at = new Date('2026-12-01T12:00:00.000Z');
let dir: string;
let store: Store;

beforeEach(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'berth-secrets-'));
  store = await openStore({ dataDir: dir });
  await store.migrate();
  await poolWithStack(store, 's', at);
});

afterEach(async () => {
  await store.close();
  rmSync(dir, { recursive: true, force: true });
});

async function refusal(promise: Promise<unknown>): Promise<BerthError> {
  const error = await promise.then(
    () => null,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(BerthError);
  expect((error as BerthError).code).toBe('BERTH_SECRETS_KEY_MISMATCH');
  return error as BerthError;
}

/** A tracked run whose plan waits for confirmation, its workspace sealed with `box`. */
function planSealedWith(box: SecretBox): Promise<string> {
  return waitingPlan(store, 's', '01JDEMO0000000000000000000', box.seal('{"key":"k"}'), at);
}

describe('the secrets key itself', () => {
  it('names where a key of the wrong length came from, and how to make a right one', () => {
    const fromEnv = (): SecretBox =>
      SecretBox.load({ BERTH_SECRETS_KEY: Buffer.alloc(16, 1).toString('base64') }, dir);
    expect(fromEnv).toThrow(
      'BERTH_SECRETS_KEY holds 16 bytes in base64; a secrets key is 32 bytes',
    );
    expect(fromEnv).toThrow(expect.objectContaining({ code: 'BERTH_USAGE' }));
    const file = path.join(dir, 'secrets.key');
    writeFileSync(file, 'short\n', { mode: 0o600 });
    const error = ((): BerthError => {
      try {
        SecretBox.load({}, dir);
      } catch (e) {
        return e as BerthError;
      }
      throw new Error('a 3-byte key file was accepted');
    })();
    expect(error.message).toBe(`${file} holds 3 bytes in base64; a secrets key is 32 bytes`);
    expect(error.hint).toContain(`Put the key every server on this database uses in ${file}`);
  });
});

describe('the secrets key check', () => {
  it('records the first key and refuses another, before anything is sealed', async () => {
    await checkSecretsKey(store, keyA);
    await checkSecretsKey(store, keyA);
    const error = await refusal(checkSecretsKey(store, keyB));
    expect(error.message).toBe(
      'the secrets key (key B) is not the key recorded for this database (by the first server that started on it, or by the last --new-secrets-key): every server on one database needs that key',
    );
  });

  it('checks a database from before the record against every value it holds sealed, naming those that do not open', async () => {
    // Two servers with keys of their own wrote to it before the record existed.
    await store.setStackVariable('s', { name: 'TOKEN_A', value: keyA.seal('a'), secret: true });
    await store.setStackVariable('s', { name: 'TOKEN_B', value: keyB.seal('b'), secret: true });
    for (const [key, other] of [
      [keyA, 'TOKEN_B'],
      [keyB, 'TOKEN_A'],
    ] as const) {
      const error = await refusal(checkSecretsKey(store, key));
      expect(error.message).toBe(
        `the secrets key (${key.source}) does not open 1 sealed value(s) of this database: stack s's secret variable ${other}`,
      );
    }
    // Nothing was recorded by a refused key.
    expect(await store.readSetting('secrets_key_check')).toBeNull();
    await store.unsetStackVariable('s', 'TOKEN_B');
    await checkSecretsKey(store, keyA);
    await refusal(checkSecretsKey(store, keyB));
  });

  it('names the value a wrong key could not open', () => {
    expect(() => keyB.open(keyA.seal('x'), 'stack s secret variable TOKEN')).toThrow(
      "stack s secret variable TOKEN cannot be opened with this server's secrets key: it was sealed with another key",
    );
    expect(keyB.opens(keyA.seal('x'))).toBe(false);
    expect(keyA.opens(keyA.seal('x'), 'x')).toBe(true);
    expect(keyA.opens(keyA.seal('x'), 'y')).toBe(false);
  });
});

describe('a key file beside BERTH_SECRETS_KEY', () => {
  it('is warned about only when it holds another key', () => {
    const a = Buffer.alloc(32, 1).toString('base64');
    expect(staleKeyFile({ BERTH_SECRETS_KEY: a }, dir)).toBeNull();
    writeFileSync(path.join(dir, 'secrets.key'), `${a}\n`);
    expect(staleKeyFile({ BERTH_SECRETS_KEY: a }, dir)).toBeNull();
    expect(staleKeyFile({}, dir)).toBeNull();
    expect(staleKeyFile({ BERTH_SECRETS_KEY: Buffer.alloc(32, 2).toString('base64') }, dir)).toBe(
      `warning: ${path.join(dir, 'secrets.key')} holds another key than BERTH_SECRETS_KEY, which is the one used; a start without BERTH_SECRETS_KEY would take the file's and be refused: put the same key in the file (mode 0600) or remove it`,
    );
  });
});

describe('--new-secrets-key', () => {
  it('forgets nothing when the key opens what the database holds', async () => {
    await checkSecretsKey(store, keyA);
    await store.setStackVariable('s', { name: 'TOKEN', value: keyA.seal('t'), secret: true });
    const runId = await planSealedWith(keyA);
    expect(await renewSecretsKey(store, keyA, at)).toEqual([
      '--new-secrets-key: the secrets key (key A) opens what the database holds; nothing was forgotten',
    ]);
    expect(await store.listStackVariables('s')).toHaveLength(1);
    expect((await store.getRun(runId))?.state).toBe('UNCONFIRMED');
  });

  it('forgets what only the lost key opened (secret variables, plans waiting for a decision), keeps the rest and an apply under way, and records the new key', async () => {
    await checkSecretsKey(store, keyA);
    await store.setStackVariable('s', { name: 'TOKEN', value: keyA.seal('t'), secret: true });
    await store.setStackVariable('s', { name: 'REGION', value: 'eu-west-1', secret: false });
    const waiting = await waitingPlan(store, 's', '01JDEMO0000000000000000001', keyA.seal('w'), at);
    await store.transitionRun(waiting, 'CONFIRMED', { patch: { releaseWorker: true } }, at);
    await poolWithStack(store, 'other', at);
    const applying = await waitingPlan(
      store,
      'other',
      '01JDEMO0000000000000000002',
      keyA.seal('x'),
      at,
    );
    await store.transitionRun(applying, 'CONFIRMED', { patch: { releaseWorker: true } }, at);
    await store.leaseRun('other', 'w2', at, 30_000);
    await store.transitionRun(
      applying,
      'APPLYING',
      { workerId: 'w2', patch: { started: true } },
      at,
    );
    // Sealed with the new key already (a server that had it wrote it): kept.
    await store.setStackVariable('other', { name: 'KEPT', value: keyB.seal('k'), secret: true });
    expect(await renewSecretsKey(store, keyB, at)).toEqual([
      "--new-secrets-key: the secrets key (key B) is now the servers' key; what only the lost key opened is forgotten:",
      '  1 secret variable(s), to be set again: s/TOKEN',
      `  1 run(s) waiting with a saved workspace, now FAILED: ${waiting}`,
      `  left alone, their apply already with a worker that holds the seal: ${applying}`,
    ]);
    expect(await store.listStackVariables('s')).toEqual([
      { name: 'REGION', value: 'eu-west-1', secret: false },
    ]);
    expect((await store.listStackVariables('other')).map((v) => v.name)).toEqual(['KEPT']);
    expect(await store.getRun(waiting)).toMatchObject({
      state: 'FAILED',
      stateReason:
        'its saved workspace was sealed with a secrets key that was lost (berth server --new-secrets-key); nothing was applied: trigger the run again',
    });
    expect((await store.getRun(applying))?.state).toBe('APPLYING');
    await checkSecretsKey(store, keyB);
    await refusal(checkSecretsKey(store, keyA));
  });
});
