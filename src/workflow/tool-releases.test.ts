/**
 * Tool provisioning against a local HTTP mirror in HashiCorp's release layout, serving stand-in
 * binaries as release zips with SHA256SUMS signed by a key made for the test: berth's real
 * resolve → download → verify → cache path.
 */
import http from 'node:http';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeEndlessly } from '../../test/harness/endless.js';
import { startReleaseMirror, type ReleaseMirror } from '../../test/harness/release-mirror.js';
import { BerthError } from '../domain/errors.js';
import {
  HASHICORP_KEY_FINGERPRINT,
  OPENTOFU_KEY_FINGERPRINT,
  keysDir,
  RELEASE_BODY_LIMITS,
  provideTool,
  readPinnedKey,
  releaseSourceFromEnv,
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
    layout: 'hashicorp',
    indexUrl: `${mirror.baseUrl}/index.json`,
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
  it.each([
    ['hashicorp.asc', HASHICORP_KEY_FINGERPRINT],
    ['opentofu.asc', OPENTOFU_KEY_FINGERPRINT],
  ])('reads %s from the repository only with the pinned fingerprint', async (name, fingerprint) => {
    const file = path.join(keysDir(), name);
    expect(await readPinnedKey(file, fingerprint)).toContain('BEGIN PGP PUBLIC KEY BLOCK');
    const error = await failure(readPinnedKey(file, '0'.repeat(40)));
    expect(error.code).toBe('BERTH_TOOL_SIGNATURE_INVALID');
    expect(error.message).toContain(fingerprint);
  });
});

describe('a pinned key', () => {
  it('verifies with the key file only when its fingerprint is the pinned one', async () => {
    const { readKey } = await import('openpgp');
    const fingerprint = (await readKey({ armoredKey: mirror.publicKey }))
      .getFingerprint()
      .toUpperCase();
    const pinnedSource = (pin: string): ReleaseSource => ({
      ...source(),
      keys: [],
      pinned: { file: mirror.keyFile, fingerprint: pin },
    });
    const ok = await provideTool(pinnedSource(fingerprint), '1.6.2', 'linux_amd64', cache());
    expect(ok.downloaded).toBe(true);
    const dir = cache();
    const error = await failure(
      provideTool(pinnedSource('0'.repeat(40)), '1.6.2', 'linux_amd64', dir),
    );
    expect(error.code).toBe('BERTH_TOOL_SIGNATURE_INVALID');
    expect(error.message).toContain(`${mirror.keyFile} holds key ${fingerprint}, not the pinned`);
    expect(existsSync(path.join(dir, 'terraform/1.6.2'))).toBe(false);
  });
});

describe('release sources from the environment', () => {
  it("defaults to each tool's official releases and pinned key", async () => {
    const terraform = await releaseSourceFromEnv('terraform', {});
    expect(terraform).toMatchObject({
      layout: 'hashicorp',
      baseUrl: 'https://releases.hashicorp.com/terraform',
      indexUrl: 'https://releases.hashicorp.com/terraform/index.json',
      signatureSuffix: '.72D7468F.sig',
    });
    expect(terraform).toMatchObject({
      keys: [],
      pinned: {
        file: path.join(keysDir(), 'hashicorp.asc'),
        fingerprint: HASHICORP_KEY_FINGERPRINT,
      },
    });
    const tofu = await releaseSourceFromEnv('tofu', {});
    expect(tofu).toMatchObject({
      layout: 'opentofu',
      baseUrl: 'https://github.com/opentofu/opentofu/releases/download',
      indexUrl: 'https://get.opentofu.org/tofu/api.json',
      signatureSuffix: '.gpgsig',
    });
    expect(tofu).toMatchObject({
      keys: [],
      pinned: { file: path.join(keysDir(), 'opentofu.asc'), fingerprint: OPENTOFU_KEY_FINGERPRINT },
    });
  });

  it('takes a mirror in either layout, its index and its key', async () => {
    expect(
      await releaseSourceFromEnv('tofu', {
        BERTH_OPENTOFU_RELEASES_URL: 'http://mirror.internal/tofu/',
        BERTH_OPENTOFU_SIGNING_KEY_FILE: mirror.keyFile,
      }),
    ).toMatchObject({
      layout: 'opentofu',
      baseUrl: 'http://mirror.internal/tofu',
      indexUrl: 'http://mirror.internal/tofu/api.json',
      signatureSuffix: '.gpgsig',
      keys: [mirror.publicKey],
    });
    expect(
      await releaseSourceFromEnv('tofu', {
        BERTH_OPENTOFU_RELEASES_URL: 'http://mirror.internal/tofu',
        BERTH_OPENTOFU_RELEASES_LAYOUT: 'hashicorp',
        BERTH_OPENTOFU_INDEX_URL: 'http://index.internal/tofu.json',
        BERTH_OPENTOFU_SIGNING_KEY_FILE: mirror.keyFile,
      }),
    ).toMatchObject({
      layout: 'hashicorp',
      indexUrl: 'http://index.internal/tofu.json',
      signatureSuffix: '.sig',
    });
  });

  it('refuses an unknown layout and an unreadable key file, naming the setting', async () => {
    const layout = await failure(
      releaseSourceFromEnv('terraform', { BERTH_TERRAFORM_RELEASES_LAYOUT: 'artifactory' }),
    );
    expect(layout.code).toBe('BERTH_USAGE');
    expect(layout.message).toContain('BERTH_TERRAFORM_RELEASES_LAYOUT is "artifactory"');
    expect(layout.hint).toContain('hashicorp or opentofu');
    const key = await failure(
      releaseSourceFromEnv('tofu', { BERTH_OPENTOFU_SIGNING_KEY_FILE: '/nonexistent/key.asc' }),
    );
    expect(key.code).toBe('BERTH_TOOL_SIGNATURE_INVALID');
    expect(key.message).toContain('/nonexistent/key.asc (BERTH_OPENTOFU_SIGNING_KEY_FILE)');
  });
});

describe("OpenTofu's release layout", () => {
  let tofu: ReleaseMirror;
  let tofuSource: ReleaseSource;

  beforeAll(async () => {
    tofu = await startReleaseMirror('tofu', 'linux_amd64', 'opentofu');
    for (const v of ['1.8.0', '1.8.5', '1.9.0-beta1']) await tofu.publish(v, { content: STAND_IN });
    await tofu.publish('1.7.9', { content: STAND_IN, untrusted: true });
    tofuSource = await releaseSourceFromEnv('tofu', {
      BERTH_OPENTOFU_RELEASES_URL: tofu.baseUrl,
      BERTH_OPENTOFU_SIGNING_KEY_FILE: tofu.keyFile,
    });
  });

  afterAll(() => tofu.stop());

  it('resolves from api.json and downloads from v<version>/, checking the .gpgsig signature', async () => {
    expect(await resolveToolVersion(tofuSource, '~> 1.8')).toBe('1.8.5');
    const dir = cache();
    const provided = await provideTool(tofuSource, '1.8.5', 'linux_amd64', dir);
    expect(provided.binary).toBe(path.join(dir, 'tofu/1.8.5/linux_amd64/tofu'));
    expect(readFileSync(provided.binary, 'utf8')).toBe(STAND_IN);
    expect(tofu.requests).toEqual(
      expect.arrayContaining([
        '/api.json',
        '/v1.8.5/tofu_1.8.5_SHA256SUMS',
        '/v1.8.5/tofu_1.8.5_SHA256SUMS.gpgsig',
        '/v1.8.5/tofu_1.8.5_linux_amd64.zip',
      ]),
    );
  });

  it('stops when the .gpgsig is not from the pinned key', async () => {
    const dir = cache();
    const error = await failure(provideTool(tofuSource, '1.7.9', 'linux_amd64', dir));
    expect(error.code).toBe('BERTH_TOOL_SIGNATURE_INVALID');
    expect(error.message).toContain('tofu_1.7.9_SHA256SUMS');
    expect(existsSync(path.join(dir, 'tofu/1.7.9'))).toBe(false);
  });

  it('says so when the index is not in the layout asked for', async () => {
    const error = await failure(
      resolveToolVersion({ ...tofuSource, indexUrl: `${mirror.baseUrl}/index.json` }, '1.8.5'),
    );
    expect(error.code).toBe('BERTH_TOOL_DOWNLOAD_FAILED');
    expect(error.message).toContain('is not in the opentofu layout');
  });
});

describe('the tool cache against tampering', () => {
  it('never shows a partial binary: while the zip still arrives nothing is in the cache, and a second job gets no early answer', async () => {
    let release: () => void = () => undefined;
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    await mirror.publish('1.9.9', { content: STAND_IN, holdZip: gate });
    const dir = cache();
    const zipUrl = '/1.9.9/terraform_1.9.9_linux_amd64.zip';
    const asked = async (times: number): Promise<void> => {
      while (mirror.requests.filter((r) => r === zipUrl).length < times)
        await new Promise((resolve) => setTimeout(resolve, 10));
    };
    let answered = 0;
    const first = provideTool(source(), '1.9.9', 'linux_amd64', dir).finally(() => (answered += 1));
    await asked(1);
    const second = provideTool(source(), '1.9.9', 'linux_amd64', dir).finally(
      () => (answered += 1),
    );
    await asked(2);
    // Half of each zip is in flight: no binary, not even its directory, and nobody answered.
    const binary = path.join(dir, 'terraform/1.9.9/linux_amd64/terraform');
    expect(existsSync(path.dirname(binary))).toBe(false);
    expect(answered).toBe(0);
    release();
    const both = await Promise.all([first, second]);
    for (const provided of both) {
      expect(provided.binary).toBe(binary);
      expect(readFileSync(provided.binary, 'utf8')).toBe(STAND_IN);
    }
    expect(readdirSync(path.join(dir, '.partial'))).toEqual([]);
  });

  it('re-verifies a cache hit: a changed binary is discarded, fetched again, and says so', async () => {
    const dir = cache();
    const first = await provideTool(source(), '1.5.7', 'linux_amd64', dir);
    writeFileSync(first.binary, '#!/bin/sh\necho poisoned\n');
    const again = await provideTool(source(), '1.5.7', 'linux_amd64', dir);
    expect(again.downloaded).toBe(true);
    expect(again.discarded).toMatch(
      /^the cached terraform 1\.5\.7 \(linux_amd64\) was discarded and downloaded again: its SHA-256 is [0-9a-f]{64}, not the [0-9a-f]{64} recorded when it was verified$/,
    );
    expect(readFileSync(again.binary, 'utf8')).toBe(STAND_IN);
    // Verified again, it is a plain cache hit next time.
    const third = await provideTool(source(), '1.5.7', 'linux_amd64', dir);
    expect(third).toMatchObject({ downloaded: false });
    expect(third.discarded).toBeUndefined();
  });

  it('never uses a binary put into the cache without a verification record', async () => {
    const dir = cache();
    const planted = path.join(dir, 'terraform/1.6.2/linux_amd64');
    mkdirSync(planted, { recursive: true });
    writeFileSync(path.join(planted, 'terraform'), '#!/bin/sh\necho planted\n', { mode: 0o755 });
    const provided = await provideTool(source(), '1.6.2', 'linux_amd64', dir);
    expect(provided.downloaded).toBe(true);
    expect(provided.discarded).toContain('has no record of the SHA-256');
    expect(readFileSync(provided.binary, 'utf8')).toBe(STAND_IN);
  });

  it.each([
    [
      'a platform that climbs out',
      '1.6.2',
      'linux_amd64/../../../../tmp',
      'BERTH_IMAGE_PLATFORM_INVALID',
    ],
    ['an unknown platform', '1.6.2', 'linux_vax', 'BERTH_IMAGE_PLATFORM_INVALID'],
    ['a version that climbs out', '../../../tmp/x', 'linux_amd64', 'BERTH_TOOL_VERSION_UNKNOWN'],
  ])('refuses %s before any path or URL is made', async (_what, version, platform, code) => {
    const dir = cache();
    const before = mirror.requests.length;
    const error = await failure(provideTool(source(), version, platform, dir));
    expect(error.code).toBe(code);
    expect(mirror.requests.length).toBe(before);
    expect(readdirSync(dir)).toEqual([]);
  });
});

describe('a mirror that answers without end', () => {
  let server: http.Server;
  let base: string;

  beforeAll(async () => {
    // The index never ends; under /endless-sums/ the sums never end, elsewhere the signature.
    server = http.createServer((req, res) => {
      const url = req.url ?? '';
      const sumsEndless = url.startsWith('/endless-sums/');
      if (url.endsWith('_SHA256SUMS') && !sumsEndless) {
        res.writeHead(200).end('0000  terraform_1.0.0_linux_amd64.zip\n');
        return;
      }
      if (url.endsWith('.sig') && sumsEndless) {
        res.writeHead(200).end('not a signature');
        return;
      }
      res.writeHead(200);
      writeEndlessly(res);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  });

  afterAll(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });

  function endlessSource(dir: string): ReleaseSource {
    return { ...source(), indexUrl: `${base}/index.json`, baseUrl: `${base}${dir}` };
  }

  it('stops reading the release index at its limit', async () => {
    const error = await failure(resolveToolVersion(endlessSource(''), '~> 1.0'));
    expect(error.code).toBe('BERTH_TOOL_DOWNLOAD_FAILED');
    expect(error.message).toContain('the terraform release index');
    expect(error.message).toContain(`larger than 32.0 MiB`);
    expect(RELEASE_BODY_LIMITS.index).toBe(32 * 1024 * 1024);
    expect(error.hint).toContain('release mirror');
  });

  it.each([
    ['SHA256SUMS', '/endless-sums', 'terraform_1.0.0_SHA256SUMS from', '1.0 MiB'],
    ['the signature', '', 'the signature of terraform_1.0.0_SHA256SUMS', '64.0 KiB'],
  ])('stops reading %s at its limit and caches nothing', async (_n, dir, what, limit) => {
    const into = cache();
    const error = await failure(provideTool(endlessSource(dir), '1.0.0', 'linux_amd64', into));
    expect(error.code).toBe('BERTH_TOOL_DOWNLOAD_FAILED');
    expect(error.message).toContain(what);
    expect(error.message).toContain(`larger than ${limit}`);
    expect(readdirSync(into)).toEqual([]);
  });
});
