/**
 * The test engine behind a TLS endpoint that checks client certificates, the way an engine
 * started with `dockerd --tlsverify` answers on tcp://HOST:2376: TLS is terminated here and the
 * bytes go on, unchanged, to the engine's Unix socket. Certificate directories are laid out as
 * DOCKER_CERT_PATH expects (ca.pem, cert.pem, key.pem).
 */
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import tls from 'node:tls';
import { parseDockerHost } from '../../src/executor/docker/engine-client.js';
import { issueCertificate, makeCa, type TestCa } from './certs.js';
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
  stop(): Promise<void>;
}

function certDir(
  root: string,
  name: string,
  ca: TestCa,
  client?: { cert: string; key: string },
): string {
  const dir = path.join(root, name);
  mkdirSync(dir);
  copyFileSync(ca.cert, path.join(dir, 'ca.pem'));
  if (client) {
    copyFileSync(client.cert, path.join(dir, 'cert.pem'));
    copyFileSync(client.key, path.join(dir, 'key.pem'));
  }
  return dir;
}

export async function startTlsEngine(): Promise<TlsEngine> {
  const upstream = parseDockerHost(process.env).socketPath;
  if (!upstream) throw new Error('the TLS engine endpoint forwards to a unix:// DOCKER_HOST');
  const root = tempDir('berth-engine-tls-');
  const ca = makeCa(root, 'berth test engine CA');
  const server = issueCertificate(ca, 'engine', { server: 'IP:127.0.0.1' });
  const client = issueCertificate(ca, 'berth client', { client: true });
  const other = makeCa(mkdtempSync(path.join(root, 'other-')), 'someone else CA');
  const sockets = new Set<net.Socket>();
  const endpoint = tls.createServer(
    {
      cert: readFileSync(server.cert),
      key: readFileSync(server.key),
      ca: readFileSync(ca.cert),
      requestCert: true,
      rejectUnauthorized: true,
    },
    (socket) => {
      const engine = net.connect(upstream);
      for (const s of [socket, engine]) {
        sockets.add(s);
        s.on('close', () => sockets.delete(s));
        s.on('error', () => undefined);
      }
      socket.pipe(engine).pipe(socket);
    },
  );
  endpoint.on('tlsClientError', () => undefined);
  await new Promise<void>((resolve) => endpoint.listen(0, '127.0.0.1', resolve));
  return {
    host: `tcp://127.0.0.1:${(endpoint.address() as net.AddressInfo).port}`,
    certPath: certDir(root, 'good', ca, client),
    wrongCaPath: certDir(root, 'wrong-ca', other, client),
    noClientCertPath: certDir(root, 'no-client-cert', ca),
    stop: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        endpoint.close(() => resolve());
      }),
  };
}
