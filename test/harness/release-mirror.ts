/**
 * A local release mirror in HashiCorp's or OpenTofu's layout (see src/workflow/tool-releases.ts),
 * serving stand-in terraform/tofu executables as release zips, with SHA256SUMS signed by an
 * OpenPGP key made for the test (curve25519, fast).
 * Terraform and OpenTofu cannot be installed here; this lets berth's real resolve → download →
 * verify → cache → mount path run.
 */
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import path from 'node:path';
import { zipSync } from 'fflate';
import { createMessage, generateKey, readPrivateKey, sign } from 'openpgp';
import type { TestCertificate } from './certs.js';
import { tempDir } from './ownership.js';

export interface PublishOptions {
  /** The executable: a shell script's text, or a real binary (stored in the zip uncompressed). */
  content: string | Buffer;
  /** Serve a zip other than the one the sums name. */
  tamperZip?: boolean;
  /** Sign the sums with a key the client does not trust. */
  untrusted?: boolean;
  /** Send the first half of the zip, then hold the rest until this settles. */
  holdZip?: Promise<void>;
}

export interface ReleaseMirror {
  baseUrl: string;
  publicKey: string;
  /** The armored public key written to a file, for BERTH_*_SIGNING_KEY_FILE. */
  keyFile: string;
  requests: string[];
  files: Map<string, Buffer>;
  publish(version: string, options: PublishOptions): Promise<void>;
  stop(): Promise<void>;
}

const sha256 = (data: Buffer): string => createHash('sha256').update(data).digest('hex');

async function signer(
  name: string,
): Promise<{ publicKey: string; signData: (data: Buffer) => Promise<Buffer> }> {
  const { privateKey, publicKey } = await generateKey({
    type: 'ecc',
    curve: 'curve25519Legacy',
    userIDs: [{ name }],
    format: 'armored',
  });
  const key = await readPrivateKey({ armoredKey: privateKey });
  return {
    publicKey,
    signData: async (data) =>
      Buffer.from(
        await sign({
          message: await createMessage({ binary: new Uint8Array(data) }),
          signingKeys: key,
          detached: true,
          format: 'binary',
        }),
      ),
  };
}

export async function startReleaseMirror(
  tool: 'terraform' | 'tofu',
  platform = 'linux_amd64',
  layout: 'hashicorp' | 'opentofu' = 'hashicorp',
  /** Serve over HTTPS with this certificate (for 127.0.0.1) instead of plain HTTP. */
  tls?: TestCertificate,
): Promise<ReleaseMirror> {
  const trusted = await signer('berth test releases');
  const untrusted = await signer('someone else');
  const files = new Map<string, Buffer>();
  const requests: string[] = [];
  const versions: string[] = [];
  const holds = new Map<string, Promise<void>>();
  const handler = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    requests.push(req.url ?? '');
    const index =
      layout === 'hashicorp'
        ? {
            path: '/index.json',
            body: {
              name: tool,
              versions: Object.fromEntries(versions.map((v) => [v, { version: v }])),
            },
          }
        : {
            path: '/api.json',
            body: {
              versions: versions.map((v) => ({
                id: v,
                files: [...files.keys()]
                  .filter((f) => f.startsWith(`/v${v}/`))
                  .map((f) => f.slice(`/v${v}/`.length)),
              })),
            },
          };
    const body =
      req.url === index.path ? Buffer.from(JSON.stringify(index.body)) : files.get(req.url ?? '');
    if (!body) {
      res.writeHead(404).end();
      return;
    }
    const hold = holds.get(req.url ?? '');
    if (hold) {
      const half = Math.floor(body.length / 2);
      res.writeHead(200, { 'content-length': String(body.length) });
      res.write(body.subarray(0, half));
      void hold.then(() => res.end(body.subarray(half)));
      return;
    }
    res.writeHead(200).end(body);
  };
  const server = tls
    ? https.createServer({ cert: readFileSync(tls.cert), key: readFileSync(tls.key) }, handler)
    : http.createServer(handler);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const keyFile = path.join(tempDir('berth-release-key-'), 'release.asc');
  writeFileSync(keyFile, trusted.publicKey);
  return {
    baseUrl: `${tls ? 'https' : 'http'}://127.0.0.1:${(server.address() as { port: number }).port}`,
    publicKey: trusted.publicKey,
    keyFile,
    requests,
    files,
    async publish(version, options) {
      const encode = (text: string): Uint8Array => new TextEncoder().encode(text);
      const zip = Buffer.from(
        zipSync({
          [tool]: [
            typeof options.content === 'string' ? encode(options.content) : options.content,
            {
              os: 3,
              attrs: (0o100755 << 16) >>> 0,
              level: typeof options.content === 'string' ? 6 : 0,
            },
          ],
          'LICENSE.txt': encode('test'),
        }),
      );
      const zipName = `${tool}_${version}_${platform}.zip`;
      const sums = Buffer.from(
        `${sha256(zip)}  ${zipName}\n${sha256(Buffer.from('other'))}  ${tool}_${version}_darwin_arm64.zip\n`,
      );
      const dir = layout === 'opentofu' ? `/v${version}` : `/${version}`;
      if (options.holdZip) holds.set(`${dir}/${zipName}`, options.holdZip);
      files.set(
        `${dir}/${zipName}`,
        options.tamperZip
          ? Buffer.from(zipSync({ [tool]: encode('#!/bin/sh\necho tampered\n') }))
          : zip,
      );
      files.set(`${dir}/${tool}_${version}_SHA256SUMS`, sums);
      files.set(
        `${dir}/${tool}_${version}_SHA256SUMS${layout === 'opentofu' ? '.gpgsig' : '.sig'}`,
        await (options.untrusted ? untrusted : trusted).signData(sums),
      );
      versions.push(version);
    },
    stop: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
