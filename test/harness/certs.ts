/**
 * Test certificate authorities and certificates, made with the openssl command line (installed
 * by .ci/run): for the ECR stand-in's TLS registry and the TLS engine endpoint.
 */
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';

export interface TestCa {
  /** The CA certificate, a PEM file. */
  cert: string;
  key: string;
  dir: string;
}

export interface TestCertificate {
  cert: string;
  key: string;
}

function openssl(args: string[]): void {
  execFileSync('openssl', args, { stdio: 'ignore' });
}

function fileName(name: string): string {
  return name.replace(/\W+/g, '-');
}

/** A self-signed CA valid for two days. */
export function makeCa(dir: string, name = 'berth test CA'): TestCa {
  const cert = path.join(dir, `${fileName(name)}.crt`);
  const key = path.join(dir, `${fileName(name)}.key`);
  openssl(
    ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2'].concat([
      '-subj',
      `/CN=${name}`,
      '-keyout',
      key,
      '-out',
      cert,
    ]),
  );
  return { cert, key, dir };
}

/**
 * A certificate signed by `ca`: for a server (`subjectAltName` e.g. `DNS:host` or
 * `IP:127.0.0.1`) or for a client.
 */
export function issueCertificate(
  ca: TestCa,
  name: string,
  use: { server: string } | { client: true },
): TestCertificate {
  const base = path.join(ca.dir, fileName(name));
  const [key, csr, cert, ext] = ['.key', '.csr', '.crt', '.cnf'].map((suffix) => base + suffix) as [
    string,
    string,
    string,
    string,
  ];
  openssl([
    'req',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-subj',
    `/CN=${name}`,
    '-keyout',
    key,
    '-out',
    csr,
  ]);
  writeFileSync(
    ext,
    'server' in use
      ? `subjectAltName=${use.server}\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n`
      : 'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n',
  );
  openssl(
    ['x509', '-req', '-in', csr, '-CA', ca.cert, '-CAkey', ca.key, '-CAcreateserial'].concat([
      '-days',
      '2',
      '-extfile',
      ext,
      '-out',
      cert,
    ]),
  );
  return { cert, key };
}
