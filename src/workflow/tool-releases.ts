/**
 * Terraform and OpenTofu releases: find the version a stack asks for in a release index,
 * download the zip for the container's platform, verify it against the release's SHA256SUMS and
 * that file's OpenPGP signature (keys pinned in the repository, by fingerprint), and keep the
 * binary in a cache shared by jobs. A partial or unverified file is never used: everything is
 * written into a private temporary directory and renamed into place whole, so jobs that want
 * the same version at the same time either find the finished binary or make their own.
 *
 * Release locations are settings, so an air-gapped team points berth at its own mirror with the
 * same layout as HashiCorp's release site:
 *   <base>/index.json                                   {"versions": {"1.5.7": {...}, ...}}
 *   <base>/<version>/<tool>_<version>_<os>_<arch>.zip
 *   <base>/<version>/<tool>_<version>_SHA256SUMS
 *   <base>/<version>/<tool>_<version>_SHA256SUMS<signature suffix>
 */
import { createHash, randomBytes } from 'node:crypto';
import { chmod, mkdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { BerthError, fetchFailureCause } from '../domain/errors.js';
import { parseConstraint, resolveVersion } from '../domain/versions.js';

export type ToolName = 'terraform' | 'tofu';

export interface ReleaseSource {
  tool: ToolName;
  /** Base URL of the releases, HashiCorp layout (see above), without a trailing slash. */
  baseUrl: string;
  /** Appended to the SHA256SUMS file name for its signature: `.sig`, `.72D7468F.sig`. */
  signatureSuffix: string;
  /** Armored public keys whose signatures are accepted. */
  keys: string[];
}

/** HashiCorp's release signing key, pinned by fingerprint (https://www.hashicorp.com/trust/security). */
export const HASHICORP_KEY_FINGERPRINT = 'C874011F0AB405110D02105534365D9472D7468F';

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
 * Where Terraform and OpenTofu come from, from the environment. Terraform defaults to HashiCorp's
 * release site with its pinned key; OpenTofu needs BERTH_OPENTOFU_RELEASES_URL and
 * BERTH_OPENTOFU_SIGNING_KEY_FILE (a mirror in the layout above) until its own layout is supported.
 */
export async function releaseSourceFromEnv(
  tool: ToolName,
  env: NodeJS.ProcessEnv,
): Promise<ReleaseSource> {
  const prefix = tool === 'terraform' ? 'BERTH_TERRAFORM' : 'BERTH_OPENTOFU';
  const baseUrl =
    env[`${prefix}_RELEASES_URL`]?.trim().replace(/\/+$/, '') ??
    (tool === 'terraform' ? 'https://releases.hashicorp.com/terraform' : undefined);
  const keyFile = env[`${prefix}_SIGNING_KEY_FILE`]?.trim();
  if (!baseUrl) {
    throw new BerthError('BERTH_TOOL_DOWNLOAD_FAILED', `no release location for ${tool}`, {
      hint: `Set ${prefix}_RELEASES_URL to a mirror with HashiCorp's release layout and ${prefix}_SIGNING_KEY_FILE to the key that signs its SHA256SUMS.`,
    });
  }
  if (keyFile) {
    return {
      tool,
      baseUrl,
      signatureSuffix: env[`${prefix}_SIGNATURE_SUFFIX`]?.trim() || '.sig',
      keys: [await readFile(keyFile, 'utf8')],
    };
  }
  if (tool !== 'terraform') {
    throw new BerthError('BERTH_TOOL_SIGNATURE_INVALID', `no signing key for ${tool} releases`, {
      hint: `Set ${prefix}_SIGNING_KEY_FILE to the armored public key that signs the SHA256SUMS files at ${baseUrl}.`,
    });
  }
  const key = await readPinnedKey(path.join(keysDir(), 'hashicorp.asc'), HASHICORP_KEY_FINGERPRINT);
  // HashiCorp signs every release's sums with its current key under this name.
  return { tool, baseUrl, signatureSuffix: '.72D7468F.sig', keys: [key] };
}

async function download(url: string, what: string, timeoutMs = 10 * 60_000): Promise<Buffer> {
  let res: Response;
  try {
    res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
  } catch (err) {
    const cause = fetchFailureCause(err);
    throw new BerthError(
      'BERTH_TOOL_DOWNLOAD_FAILED',
      `cannot download ${what} from ${url} (${cause})`,
      { cause: err },
    );
  }
  if (!res.ok)
    throw new BerthError(
      'BERTH_TOOL_DOWNLOAD_FAILED',
      `downloading ${what} from ${url} answered ${res.status}`,
    );
  return Buffer.from(await res.arrayBuffer());
}

/** Versions in a release index (HashiCorp's index.json format). */
export async function listVersions(source: ReleaseSource): Promise<string[]> {
  const body = await download(
    `${source.baseUrl}/index.json`,
    `the ${source.tool} release index`,
    60_000,
  );
  try {
    const index = JSON.parse(body.toString('utf8')) as { versions?: Record<string, unknown> };
    return Object.keys(index.versions ?? {});
  } catch (err) {
    throw new BerthError(
      'BERTH_TOOL_DOWNLOAD_FAILED',
      `the ${source.tool} release index at ${source.baseUrl}/index.json is not JSON`,
      { cause: err },
    );
  }
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
      `no ${source.tool} release matches "${constraintText}" at ${source.baseUrl}`,
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
  const keys = await Promise.all(source.keys.map((armoredKey) => readKey({ armoredKey })));
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
  const final = path.join(cacheDir, source.tool, version, platform);
  const binary = path.join(final, source.tool);
  if (await isFile(binary))
    return { tool: source.tool, version, platform, binary, downloaded: false };

  const base = `${source.baseUrl}/${version}`;
  const sumsName = `${source.tool}_${version}_SHA256SUMS`;
  const zipName = `${source.tool}_${version}_${platform}.zip`;
  const [sums, signature] = await Promise.all([
    download(`${base}/${sumsName}`, sumsName),
    download(`${base}/${sumsName}${source.signatureSuffix}`, `the signature of ${sumsName}`),
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
  const zip = await download(`${base}/${zipName}`, zipName);
  const actual = sha256(zip);
  if (actual !== expected.toLowerCase()) {
    throw new BerthError(
      'BERTH_TOOL_CHECKSUM_MISMATCH',
      `${zipName} from ${base} has SHA-256 ${actual}, but the signed ${sumsName} says ${expected}`,
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
    await mkdir(path.dirname(final), { recursive: true });
    try {
      await rename(temp, final);
    } catch (err) {
      // Another job finished the same version first: theirs is just as verified.
      if (!(await isFile(binary))) throw err;
    }
  } finally {
    await rm(temp, { recursive: true, force: true });
  }
  return { tool: source.tool, version, platform, binary, downloaded: true };
}

async function isFile(file: string): Promise<boolean> {
  try {
    return (await stat(file)).isFile();
  } catch {
    return false;
  }
}
