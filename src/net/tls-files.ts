/**
 * TLS between berth's processes: the server's certificate and key, and the CA a client (the CLI,
 * a worker) trusts for the server. Files are read and checked once at start, each problem a clear
 * error naming the file; the server's certificate is always verified by clients, never skipped.
 */
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { rootCertificates } from 'node:tls';
import { BerthError } from '../domain/errors.js';

/** The file's bytes, or BERTH_TLS_FILE_UNREADABLE naming the file and the option it came from. */
function readTlsFile(file: string, what: string): Buffer {
  try {
    return readFileSync(file);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'error';
    throw new BerthError(
      'BERTH_TLS_FILE_UNREADABLE',
      `cannot read ${what} ${file} (${code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : code})`,
      { cause: err },
    );
  }
}

/** The certificates of a PEM file (a chain or a bundle), each parsed; none is an error. */
function certificates(pem: Buffer, file: string, what: string): X509Certificate[] {
  const blocks =
    pem.toString('utf8').match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ??
    [];
  if (blocks.length === 0)
    throw new BerthError('BERTH_TLS_INVALID', `${what} ${file} holds no PEM certificate`);
  return blocks.map((block) => {
    try {
      return new X509Certificate(block);
    } catch (err) {
      throw new BerthError(
        'BERTH_TLS_INVALID',
        `${what} ${file} holds a certificate that cannot be read (${(err as Error).message})`,
        { cause: err },
      );
    }
  });
}

/** The server's certificate chain and key, checked to belong together. */
export function loadServerTls(certFile: string, keyFile: string): { cert: Buffer; key: Buffer } {
  const cert = readTlsFile(certFile, 'the server certificate (--tls-cert)');
  const key = readTlsFile(keyFile, 'the server key (--tls-key)');
  const [leaf] = certificates(cert, certFile, 'the server certificate (--tls-cert)');
  let privateKey;
  try {
    privateKey = createPrivateKey(key);
  } catch (err) {
    throw new BerthError(
      'BERTH_TLS_INVALID',
      `the server key (--tls-key) ${keyFile} is not an unencrypted PEM private key (${(err as Error).message})`,
      { cause: err },
    );
  }
  if (!leaf?.checkPrivateKey(privateKey)) {
    throw new BerthError(
      'BERTH_TLS_INVALID',
      `the server key (--tls-key) ${keyFile} does not belong to the certificate ${certFile} (${leaf?.subject.replace(/\n/g, ', ')})`,
    );
  }
  return { cert, key };
}

/**
 * The CAs a client trusts for the server: Node's own, those of NODE_EXTRA_CA_CERTS (Node reads it
 * for its default store, but a client given its own CA list would otherwise lose them), and the
 * one given with --ca-cert / BERTH_CA_CERT. Null when no CA was given: the default store serves.
 */
export function trustedCas(caFile: string | undefined, env: NodeJS.ProcessEnv): string[] | null {
  if (!caFile) return null;
  const ca = readTlsFile(caFile, 'the CA certificate (--ca-cert / BERTH_CA_CERT)');
  certificates(ca, caFile, 'the CA certificate (--ca-cert / BERTH_CA_CERT)');
  const extra = env.NODE_EXTRA_CA_CERTS?.trim();
  let extraPem: string[] = [];
  if (extra) {
    try {
      extraPem = [readFileSync(extra, 'utf8')];
    } catch {
      // Node warns about an unreadable NODE_EXTRA_CA_CERTS itself at start.
    }
  }
  return [...rootCertificates, ...extraPem, ca.toString('utf8')];
}

/**
 * `fetch` that verifies the server against `cas` (from trustedCas), or the built-in fetch when
 * null. undici is loaded only when a CA was given; one connection pool serves every call.
 */
export function fetchTrusting(cas: string[] | null): typeof fetch {
  if (!cas) return fetch;
  let dispatcher: Promise<import('undici').Agent> | undefined;
  return (async (input: string | URL, init: RequestInit = {}) => {
    const undici = await import('undici');
    dispatcher ??= Promise.resolve(new undici.Agent({ connect: { ca: cas } }));
    return undici.fetch(input, {
      ...(init as Parameters<typeof undici.fetch>[1]),
      dispatcher: await dispatcher,
    });
  }) as unknown as typeof fetch;
}
