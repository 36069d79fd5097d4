/**
 * The test engine's own TLS endpoint: the engine listens, beside its Unix socket, on a loopback
 * TCP port with `dockerd --tlsverify` (.ci/run starts it so; .ci/engine-tls-certs makes the
 * certificates). The tests reach it through BERTH_TEST_TLS_DOCKER_HOST and a DOCKER_CERT_PATH
 * laid out as the Docker CLI expects (ca.pem, cert.pem, key.pem) in BERTH_TEST_TLS_CERT_PATH;
 * the certificate directories that must fail are made here.
 */
import { copyFileSync, existsSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { makeCa, type TestCa } from './certs.js';
import { tempDir } from './ownership.js';

export interface TlsEngine {
  /** DOCKER_HOST for this endpoint. */
  host: string;
  /** A DOCKER_CERT_PATH that works: the engine's CA and a client certificate it accepts. */
  certPath: string;
  /** A DOCKER_CERT_PATH whose ca.pem is another CA (the engine's certificate fails the check). */
  wrongCaPath: string;
  /** A DOCKER_CERT_PATH with the right CA but no client certificate. */
  noClientCertPath: string;
}

function certDir(root: string, name: string, ca: string, client?: string): string {
  const dir = path.join(root, name);
  mkdirSync(dir);
  copyFileSync(ca, path.join(dir, 'ca.pem'));
  if (client) {
    copyFileSync(path.join(client, 'cert.pem'), path.join(dir, 'cert.pem'));
    copyFileSync(path.join(client, 'key.pem'), path.join(dir, 'key.pem'));
  }
  return dir;
}

export function tlsEngine(): TlsEngine {
  const host = process.env.BERTH_TEST_TLS_DOCKER_HOST;
  const certPath = process.env.BERTH_TEST_TLS_CERT_PATH;
  if (!host || !certPath || !existsSync(path.join(certPath, 'ca.pem'))) {
    throw new Error(
      'the TLS test needs the test engine to listen with --tlsverify on a loopback TCP port: make certificates with `.ci/engine-tls-certs DIR`, add `--host tcp://127.0.0.1:PORT --tlsverify --tlscacert DIR/ca.pem --tlscert DIR/server-cert.pem --tlskey DIR/server-key.pem` to dockerd, and set BERTH_TEST_TLS_DOCKER_HOST=tcp://127.0.0.1:PORT and BERTH_TEST_TLS_CERT_PATH=DIR/client (sudo bash .ci/run does all of it)',
    );
  }
  const root = tempDir('berth-engine-tls-');
  const other: TestCa = makeCa(root, 'someone else CA');
  return {
    host,
    certPath,
    wrongCaPath: certDir(root, 'wrong-ca', other.cert, certPath),
    noClientCertPath: certDir(root, 'no-client-cert', path.join(certPath, 'ca.pem')),
  };
}
