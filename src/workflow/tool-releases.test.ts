/**
 * Tool provisioning against a local HTTP mirror in HashiCorp's release layout, serving stand-in
 * binaries as release zips with SHA256SUMS signed by a key made for the test: berth's real
 * resolve → download → verify → cache path.
 */
import { existsSync, mkdtempSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startReleaseMirror, type ReleaseMirror } from '../../test/harness/release-mirror.js';
import { BerthError } from '../domain/errors.js';
import {
  HASHICORP_KEY_FINGERPRINT,
  keysDir,
  provideTool,
  readPinnedKey,
  resolveToolVersion,
  sha256,
  type ReleaseSource,
} from './tool-releases.js';

const STAND_IN = '#!/bin/sh\necho "stand-in terraform $*"\n';
let mirror: ReleaseMirror;

beforeAll(async () => {
  mirror = await startReleaseMirror('terraform');
  for (const v of ['1.5.7', '1.6.2', '1.7.1']) await mirror.publish(v, { content: STAND_IN });
  await mirror.publish('1.8.0', { content: STAND_IN, tamperZip: true });
  await mirror.publish('1.9.0', { content: STAND_IN, untrusted: true });
  await mirror.publish('2.0.0-rc1', { content: STAND_IN });
});

afterAll(() => mirror.stop());

function source(): ReleaseSource {
  return {
    tool: 'terraform',
    baseUrl: mirror.baseUrl,
    signatureSuffix: '.sig',
    keys: [mirror.publicKey],
  };
}

function cache(): string {
  return mkdtempSync(path.join(tmpdir(), 'berth-tool-cache-'));
}

async function failure(promise: Promise<unknown>): Promise<BerthError> {
  const error = await promise.catch((e: unknown) => e);
  expect(error).toBeInstanceOf(BerthError);
  return error as BerthError;
}

describe('resolveToolVersion', () => {
  it.each([
    ['~> 1.6', '1.9.0'],
    ['~> 1.6.0', '1.6.2'],
    ['>= 1.5, < 1.7', '1.6.2'],
    ['1.5.7', '1.5.7'],
  ])('%s → %s', async (constraint, version) => {
    expect(await resolveToolVersion(source(), constraint)).toBe(version);
  });

  it('says which versions exist when none matches', async () => {
    const error = await failure(resolveToolVersion(source(), '>= 3.0'));
    expect(error.code).toBe('BERTH_TOOL_VERSION_UNKNOWN');
    expect(error.hint).toContain('1.7.1');
  });
});

describe('provideTool', () => {
  it('downloads, verifies and caches the binary; the next call uses the cache', async () => {
    const dir = cache();
    const first = await provideTool(source(), '1.6.2', 'linux_amd64', dir);
    expect(first).toEqual({
      tool: 'terraform',
      version: '1.6.2',
      platform: 'linux_amd64',
      binary: path.join(dir, 'terraform/1.6.2/linux_amd64/terraform'),
      downloaded: true,
    });
    expect(readFileSync(first.binary, 'utf8')).toBe(STAND_IN);
    expect(statSync(first.binary).mode & 0o777).toBe(0o755);
    const before = mirror.requests.length;
    expect((await provideTool(source(), '1.6.2', 'linux_amd64', dir)).downloaded).toBe(false);
    expect(mirror.requests.length).toBe(before);
  });

  it('is safe when many jobs want the same version at once: no partial file is ever used', async () => {
    const dir = cache();
    const results = await Promise.all(
      Array.from({ length: 6 }, () => provideTool(source(), '1.7.1', 'linux_amd64', dir)),
    );
    expect(new Set(results.map((r) => r.binary)).size).toBe(1);
    expect(readFileSync(results[0]?.binary as string, 'utf8')).toBe(STAND_IN);
    expect(readdirSync(path.join(dir, '.partial'))).toEqual([]);
  });

  it('stops on a checksum mismatch, naming the file and both digests, and caches nothing', async () => {
    const dir = cache();
    const error = await failure(provideTool(source(), '1.8.0', 'linux_amd64', dir));
    expect(error.code).toBe('BERTH_TOOL_CHECKSUM_MISMATCH');
    const listed = mirror.files.get('/1.8.0/terraform_1.8.0_SHA256SUMS')?.toString().split(' ')[0];
    expect(error.message).toContain('terraform_1.8.0_linux_amd64.zip');
    expect(error.message).toContain(`says ${listed}`);
    expect(error.message).toContain(
      `has SHA-256 ${sha256(mirror.files.get('/1.8.0/terraform_1.8.0_linux_amd64.zip') as Buffer)}`,
    );
    expect(existsSync(path.join(dir, 'terraform/1.8.0'))).toBe(false);
  });

  it('stops when the sums are not signed by a pinned key', async () => {
    const dir = cache();
    const error = await failure(provideTool(source(), '1.9.0', 'linux_amd64', dir));
    expect(error.code).toBe('BERTH_TOOL_SIGNATURE_INVALID');
    expect(error.message).toContain('terraform_1.9.0_SHA256SUMS');
    expect(existsSync(path.join(dir, 'terraform/1.9.0'))).toBe(false);
  });

  it('says when a version has no build for the platform', async () => {
    const error = await failure(provideTool(source(), '1.6.2', 'linux_riscv64', cache()));
    expect(error.code).toBe('BERTH_TOOL_VERSION_UNKNOWN');
    expect(error.message).toContain('no build for linux_riscv64');
  });
});

describe('pinned keys', () => {
  it("reads HashiCorp's key from the repository only with the pinned fingerprint", async () => {
    const file = path.join(keysDir(), 'hashicorp.asc');
    expect(await readPinnedKey(file, HASHICORP_KEY_FINGERPRINT)).toContain(
      'BEGIN PGP PUBLIC KEY BLOCK',
    );
    const error = await failure(readPinnedKey(file, '0'.repeat(40)));
    expect(error.code).toBe('BERTH_TOOL_SIGNATURE_INVALID');
  });
});
