/**
 * Terraform and OpenTofu releases: find the version a stack asks for in a release index,
 * download the zip for the container's platform, verify it against the release's SHA256SUMS and
 * that file's OpenPGP signature (keys pinned in the repository, by fingerprint), and keep the
 * binary in a cache shared by jobs. A partial or unverified file is never used: everything is
 * written into a private temporary directory and renamed into place whole, so jobs that want
 * the same version at the same time either find the finished binary or make their own.
 *
 * Two release layouts, each tool's official one by default; release locations are settings, so
 * an air-gapped team points berth at its own mirror in either layout:
 *   hashicorp  <index>  = <base>/index.json                {"versions": {"1.5.7": {...}, ...}}
 *              <base>/<version>/<tool>_<version>_<os>_<arch>.zip, …_SHA256SUMS, …_SHA256SUMS<sig>
 *   opentofu   <index>  = get.opentofu.org/tofu/api.json   {"versions": [{"id": "1.8.0", ...}]}
 *              <base>/v<version>/tofu_<version>_<os>_<arch>.zip, …_SHA256SUMS, …_SHA256SUMS.gpgsig
 */
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { chmod, mkdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { httpFetch } from '../net/http-fetch.js';
import { BodyTooLarge, readBody } from '../net/http-body.js';
import { formatBytes } from '../domain/units.js';
import type { ReleaseSetting } from '../domain/worker-settings.js';
import { BerthError, fetchFailureCause } from '../domain/errors.js';
import { parseConstraint, parseVersion, resolveVersion } from '../domain/versions.js';
import { isReleasePlatform } from '../domain/platform.js';
import { joinInside, segmentProblem } from '../domain/safe-path.js';

export type ToolName = 'terraform' | 'tofu';

export type ReleaseLayout = 'hashicorp' | 'opentofu';
export const RELEASE_LAYOUTS: readonly ReleaseLayout[] = ['hashicorp', 'opentofu'];

export interface ReleaseSource {
  tool: ToolName;
  layout: ReleaseLayout;
  /** The release index (see the layouts above). */
  indexUrl: string;
  /** Base URL of the release files (see the layouts above), without a trailing slash. */
  baseUrl: string;
  /** Appended to the SHA256SUMS file name for its signature: `.sig`, `.72D7468F.sig`. */
  signatureSuffix: string;
  /** Armored public keys whose signatures are accepted. */
  keys: string[];
  /**
   * A key file in the repository, accepted only with this fingerprint. It is read and checked
   * when a signature is verified (a download), not for a run whose tool is in the cache.
   */
  pinned?: { file: string; fingerprint: string };
}

/** HashiCorp's release signing key, pinned by fingerprint (https://www.hashicorp.com/trust/security). */
export const HASHICORP_KEY_FINGERPRINT = 'C874011F0AB405110D02105534365D9472D7468F';
/** OpenTofu's signing key (https://get.opentofu.org/opentofu.asc), pinned by fingerprint. */
export const OPENTOFU_KEY_FINGERPRINT = 'E3E6E43D84CB852EADB0051D0C0AF313E5FD9F80';

/** Each tool's official releases. */
export const OFFICIAL_RELEASES = {
  terraform: {
    layout: 'hashicorp',
    baseUrl: 'https://releases.hashicorp.com/terraform',
    indexUrl: 'https://releases.hashicorp.com/terraform/index.json',
    keyFile: 'hashicorp.asc',
    fingerprint: HASHICORP_KEY_FINGERPRINT,
    // HashiCorp signs every release's sums with its current key under this name.
    signatureSuffix: '.72D7468F.sig',
  },
  tofu: {
    layout: 'opentofu',
    baseUrl: 'https://github.com/opentofu/opentofu/releases/download',
    indexUrl: 'https://get.opentofu.org/tofu/api.json',
    keyFile: 'opentofu.asc',
    fingerprint: OPENTOFU_KEY_FINGERPRINT,
    signatureSuffix: '.gpgsig',
  },
} as const;

export function keysDir(): string {
  return fileURLToPath(new URL('../../keys/', import.meta.url));
}

/** Reads an armored key file and refuses it unless its primary fingerprint is the pinned one. */
export async function readPinnedKey(file: string, fingerprint: string): Promise<string> {
  const armored = await readFile(file, 'utf8');
  const { readKey } = await import('openpgp');
  const key = await readKey({ armoredKey: armored });
  if (key.getFingerprint().toUpperCase() !== fingerprint) {
    throw new BerthError(
      'BERTH_TOOL_SIGNATURE_INVALID',
      `${file} holds key ${key.getFingerprint().toUpperCase()}, not the pinned ${fingerprint}`,
    );
  }
  return armored;
}

/**
 * Where Terraform and OpenTofu come from, from the environment (BERTH_TERRAFORM_* and
 * BERTH_OPENTOFU_*): each tool's official releases and pinned key unless a mirror is named.
 */
export async function releaseSourceFromEnv(
  tool: ToolName,
  env: NodeJS.ProcessEnv,
): Promise<ReleaseSource> {
  const prefix = tool === 'terraform' ? 'BERTH_TERRAFORM' : 'BERTH_OPENTOFU';
  const setting = (name: ReleaseSetting): string | undefined =>
    env[`${prefix}_${name}`]?.trim() || undefined;
  const official = OFFICIAL_RELEASES[tool];
  const layoutText = setting('RELEASES_LAYOUT') ?? official.layout;
  if (!RELEASE_LAYOUTS.includes(layoutText as ReleaseLayout)) {
    throw new BerthError(
      'BERTH_USAGE',
      `${prefix}_RELEASES_LAYOUT is "${layoutText}", which is not a release layout berth knows`,
      { hint: `Use ${RELEASE_LAYOUTS.join(' or ')} (see docs/workflow.md).` },
    );
  }
  const layout = layoutText as ReleaseLayout;
  const mirror = setting('RELEASES_URL')?.replace(/\/+$/, '');
  const baseUrl = mirror ?? official.baseUrl;
  const indexUrl =
    setting('INDEX_URL') ??
    (mirror === undefined && layout === official.layout
      ? official.indexUrl
      : `${baseUrl}/${layout === 'hashicorp' ? 'index.json' : 'api.json'}`);
  const keyFile = setting('SIGNING_KEY_FILE');
  const keys = keyFile ? [await readKeyFile(keyFile, `${prefix}_SIGNING_KEY_FILE`)] : [];
  const pinned = keyFile
    ? undefined
    : { file: path.join(keysDir(), official.keyFile), fingerprint: official.fingerprint };
  const defaultSuffix =
    layout === 'opentofu'
      ? '.gpgsig'
      : keyFile
        ? '.sig'
        : OFFICIAL_RELEASES.terraform.signatureSuffix;
  return {
    tool,
    layout,
    indexUrl,
    baseUrl,
    signatureSuffix: setting('SIGNATURE_SUFFIX') ?? defaultSuffix,
    keys,
    ...(pinned ? { pinned } : {}),
  };
}

async function readKeyFile(file: string, settingName: string): Promise<string> {
  try {
    return await readFile(file, 'utf8');
  } catch (err) {
    throw new BerthError(
      'BERTH_TOOL_SIGNATURE_INVALID',
      `cannot read the signing key ${file} (${settingName}): ${(err as Error).message}`,
      {
        cause: err,
        hint: `Point ${settingName} at the armored public key that signs the mirror's SHA256SUMS files.`,
      },
    );
  }
}

/** Where one file of a release is. */
export function releaseFileUrl(source: ReleaseSource, version: string, name: string): string {
  const dir = source.layout === 'opentofu' ? `v${version}` : version;
  return `${source.baseUrl}/${dir}/${name}`;
}

/**
 * What each file of a release may weigh: a mirror answering more (an endless body, a 1.5 GB
 * index) is refused at the limit instead of held in memory. Each is well above the real files
 * (an index of a few MB, a few kB of sums, a signature under 1 kB, a zip of about 30 MB).
 */
export const RELEASE_BODY_LIMITS = {
  index: 32 * 1024 * 1024,
  sums: 1024 * 1024,
  signature: 64 * 1024,
  zip: 256 * 1024 * 1024,
} as const;

/** The limit for a release file, told by its name (`*.zip`, `*_SHA256SUMS`, `*_SHA256SUMS.sig`). */
function releaseBodyLimit(url: string): number {
  const name = new URL(url).pathname;
  if (name.endsWith('.zip')) return RELEASE_BODY_LIMITS.zip;
  if (name.endsWith('_SHA256SUMS')) return RELEASE_BODY_LIMITS.sums;
  if (/_SHA256SUMS\.[A-Za-z0-9]+$/.test(name)) return RELEASE_BODY_LIMITS.signature;
  return RELEASE_BODY_LIMITS.index;
}

async function download(
  url: string,
  what: string,
  timeoutMs = 10 * 60_000,
  limit = releaseBodyLimit(url),
): Promise<Buffer> {
  let res: Response;
  try {
    res = await httpFetch(url, { signal: AbortSignal.timeout(timeoutMs) });
  } catch (err) {
    const cause = fetchFailureCause(err);
    throw new BerthError(
      'BERTH_TOOL_DOWNLOAD_FAILED',
      `cannot download ${what} from ${url} (${cause})`,
      { cause: err },
    );
  }
  if (!res.ok) {
    await res.body?.cancel().catch(() => {});
    throw new BerthError(
      'BERTH_TOOL_DOWNLOAD_FAILED',
      `downloading ${what} from ${url} answered ${res.status}`,
    );
  }
  try {
    return await readBody(res, limit);
  } catch (err) {
    if (!(err instanceof BodyTooLarge)) {
      throw new BerthError(
        'BERTH_TOOL_DOWNLOAD_FAILED',
        `cannot download ${what} from ${url} (${fetchFailureCause(err)})`,
        { cause: err },
      );
    }
    throw new BerthError(
      'BERTH_TOOL_DOWNLOAD_FAILED',
      `${what} from ${url} is larger than ${formatBytes(limit)}, more than such a file can be; berth stopped reading it`,
      {
        cause: err,
        hint: 'Nothing was run or cached. Check that the release mirror serves the real files (the releases URL setting), or try again if it was a bad answer.',
      },
    );
  }
}

/** Versions in a release index, in either layout. */
export async function listVersions(source: ReleaseSource): Promise<string[]> {
  const body = await download(
    source.indexUrl,
    `the ${source.tool} release index`,
    60_000,
    RELEASE_BODY_LIMITS.index,
  );
  let index: { versions?: unknown };
  try {
    index = JSON.parse(body.toString('utf8')) as { versions?: unknown };
  } catch (err) {
    throw new BerthError(
      'BERTH_TOOL_DOWNLOAD_FAILED',
      `the ${source.tool} release index at ${source.indexUrl} is not JSON`,
      { cause: err },
    );
  }
  const versions = index.versions;
  if (source.layout === 'opentofu' && Array.isArray(versions)) {
    return versions
      .map((entry: unknown) => (entry as { id?: unknown } | null)?.id)
      .filter((id): id is string => typeof id === 'string');
  }
  if (source.layout === 'hashicorp' && versions && typeof versions === 'object') {
    return Object.keys(versions);
  }
  throw new BerthError(
    'BERTH_TOOL_DOWNLOAD_FAILED',
    `the ${source.tool} release index at ${source.indexUrl} is not in the ${source.layout} layout (no "versions" ${source.layout === 'opentofu' ? 'list' : 'object'})`,
    {
      hint: `Check the index URL, or set the layout that matches it (BERTH_${source.tool === 'terraform' ? 'TERRAFORM' : 'OPENTOFU'}_RELEASES_LAYOUT).`,
    },
  );
}

export async function resolveToolVersion(
  source: ReleaseSource,
  constraintText: string,
): Promise<string> {
  const constraint = parseConstraint(constraintText);
  if ('error' in constraint)
    throw new BerthError('BERTH_CONFIG_INVALID', `${source.tool} version: ${constraint.error}`);
  const available = await listVersions(source);
  const version = resolveVersion(available, constraint);
  if (!version) {
    throw new BerthError(
      'BERTH_TOOL_VERSION_UNKNOWN',
      `no ${source.tool} release matches "${constraintText}" in ${source.indexUrl}`,
      {
        hint: `Pick a version the release index lists (${available.slice(-5).join(', ')}${available.length > 5 ? ', …' : ''}).`,
      },
    );
  }
  return version.text;
}

export function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

async function verifySignature(
  source: ReleaseSource,
  sums: Buffer,
  signature: Buffer,
  sumsName: string,
): Promise<void> {
  const { createMessage, readKey, readSignature, verify } = await import('openpgp');
  const armored = source.pinned
    ? [...source.keys, await readPinnedKey(source.pinned.file, source.pinned.fingerprint)]
    : source.keys;
  const keys = await Promise.all(armored.map((armoredKey) => readKey({ armoredKey })));
  let verified = false;
  let reason = 'no signature from a pinned key';
  try {
    const parsed = signature.toString('utf8').includes('BEGIN PGP SIGNATURE')
      ? await readSignature({ armoredSignature: signature.toString('utf8') })
      : await readSignature({ binarySignature: new Uint8Array(signature) });
    const result = await verify({
      message: await createMessage({ binary: new Uint8Array(sums) }),
      signature: parsed,
      verificationKeys: keys,
    });
    for (const sig of result.signatures) {
      try {
        await sig.verified;
        verified = true;
      } catch (err) {
        reason = (err as Error).message;
      }
    }
  } catch (err) {
    reason = (err as Error).message;
  }
  if (!verified) {
    throw new BerthError(
      'BERTH_TOOL_SIGNATURE_INVALID',
      `the signature of ${sumsName} from ${source.baseUrl} does not verify with the pinned key(s): ${reason}`,
      {
        hint: 'Nothing was run. The release or the mirror may have been tampered with; check the mirror, or the signing key file you configured.',
      },
    );
  }
}

export interface ProvidedTool {
  tool: ToolName;
  version: string;
  platform: string;
  /** The verified binary on this host. */
  binary: string;
  /** Whether this call downloaded it (false: it was in the cache). */
  downloaded: boolean;
  /** Set when a cached binary no longer matched its recorded SHA-256 and was fetched again. */
  discarded?: string;
}

/** Next to each cached binary: the SHA-256 it had when its download was verified. */
const DIGEST_FILE = 'verified.sha256';

/**
 * Where a version's binary lives in the cache: built only from checked parts (the version from a
 * release index, the platform from an image configuration), so it is always inside `cacheDir`.
 */
export function cachedToolDir(
  cacheDir: string,
  tool: ToolName,
  version: string,
  platform: string,
): string {
  if (!isReleasePlatform(platform)) {
    throw new BerthError(
      'BERTH_IMAGE_PLATFORM_INVALID',
      `${JSON.stringify(platform.slice(0, 80))} is not a platform berth knows (such as linux_amd64)`,
    );
  }
  const parsed = parseVersion(version);
  if (!parsed || segmentProblem(version) !== null || !/^[0-9A-Za-z.+-]+$/.test(version)) {
    throw new BerthError(
      'BERTH_TOOL_VERSION_UNKNOWN',
      `${JSON.stringify(version.slice(0, 80))} is not a ${tool} version berth can use`,
    );
  }
  return joinInside(path.resolve(cacheDir), tool, version, platform);
}

async function fileSha256(file: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/**
 * A cache hit is only used when the binary still has the SHA-256 recorded when it was verified:
 * null when it does (use it), else why not (it is then discarded and fetched again). The record
 * sits beside the binary, in berth's own root-owned cache: this catches a binary changed by
 * corruption or by a path bug (a job never gets the cache writable), not someone who can write
 * berth's state directory, who could change both.
 */
async function cachedBinaryProblem(dir: string, binary: string): Promise<string | null> {
  let recorded: string;
  try {
    recorded = (await readFile(path.join(dir, DIGEST_FILE), 'utf8')).trim();
  } catch {
    return 'it has no record of the SHA-256 it was verified with';
  }
  const actual = await fileSha256(binary);
  return actual === recorded
    ? null
    : `its SHA-256 is ${actual}, not the ${recorded} recorded when it was verified`;
}

/**
 * The binary of `tool` at exactly `version` for `platform` (`linux_amd64`), from the cache or
 * downloaded and verified. Safe to call from many jobs at once.
 */
export async function provideTool(
  source: ReleaseSource,
  version: string,
  platform: string,
  cacheDir: string,
): Promise<ProvidedTool> {
  const final = cachedToolDir(cacheDir, source.tool, version, platform);
  const binary = path.join(final, source.tool);
  let discarded: string | undefined;
  if (await isFile(binary)) {
    const problem = await cachedBinaryProblem(final, binary);
    if (problem === null)
      return { tool: source.tool, version, platform, binary, downloaded: false };
    // Changed since it was verified (or never recorded): never run it; fetch and verify again.
    discarded = `the cached ${source.tool} ${version} (${platform}) was discarded and downloaded again: ${problem}`;
    await rm(final, { recursive: true, force: true });
  }

  const sumsName = `${source.tool}_${version}_SHA256SUMS`;
  const zipName = `${source.tool}_${version}_${platform}.zip`;
  const url = (name: string): string => releaseFileUrl(source, version, name);
  const [sums, signature] = await Promise.all([
    download(url(sumsName), sumsName),
    download(url(`${sumsName}${source.signatureSuffix}`), `the signature of ${sumsName}`),
  ]);
  await verifySignature(source, sums, signature, sumsName);
  const expected = sums
    .toString('utf8')
    .split('\n')
    .map((line) => line.trim().split(/\s+/))
    .find(([, name]) => name === zipName)?.[0];
  if (!expected) {
    throw new BerthError(
      'BERTH_TOOL_VERSION_UNKNOWN',
      `${source.tool} ${version} has no build for ${platform} (${zipName} is not in ${sumsName})`,
    );
  }
  const zip = await download(url(zipName), zipName);
  const actual = sha256(zip);
  if (actual !== expected.toLowerCase()) {
    throw new BerthError(
      'BERTH_TOOL_CHECKSUM_MISMATCH',
      `${zipName} from ${url(zipName)} has SHA-256 ${actual}, but the signed ${sumsName} says ${expected}`,
      {
        hint: 'Nothing was run. The download or the mirror is corrupt or was tampered with; try again, or check the mirror.',
      },
    );
  }
  const { unzipSync } = await import('fflate');
  const files = unzipSync(new Uint8Array(zip), { filter: (file) => file.name === source.tool });
  const content = files[source.tool];
  if (!content)
    throw new BerthError(
      'BERTH_TOOL_DOWNLOAD_FAILED',
      `${zipName} has no ${source.tool} binary at its top level`,
    );

  // Build the whole directory privately, then rename it into place in one step.
  const temp = path.join(
    cacheDir,
    '.partial',
    `${source.tool}-${version}-${platform}-${process.pid}-${randomBytes(4).toString('hex')}`,
  );
  await mkdir(temp, { recursive: true, mode: 0o755 });
  try {
    await writeFile(path.join(temp, source.tool), content, { mode: 0o755 });
    await chmod(path.join(temp, source.tool), 0o755);
    await writeFile(path.join(temp, DIGEST_FILE), `${sha256(Buffer.from(content))}\n`, {
      mode: 0o644,
    });
    await mkdir(path.dirname(final), { recursive: true });
    try {
      await rename(temp, final);
    } catch (err) {
      // Another job finished the same version first: theirs is just as verified.
      if (!(await isFile(binary)) || (await cachedBinaryProblem(final, binary)) !== null) throw err;
    }
  } finally {
    await rm(temp, { recursive: true, force: true });
  }
  return {
    tool: source.tool,
    version,
    platform,
    binary,
    downloaded: true,
    ...(discarded ? { discarded } : {}),
  };
}

async function isFile(file: string): Promise<boolean> {
  try {
    return (await stat(file)).isFile();
  } catch {
    return false;
  }
}
