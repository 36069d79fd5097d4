/**
 * A stand-in for AWS's ECR, since the real one cannot be reached from here: the ECR registry
 * host name resolves to a local TLS registry (a hosts entry, and a test CA trusted by the engine
 * through /etc/docker/certs.d and by berth through NODE_EXTRA_CA_CERTS), and a local HTTP
 * endpoint speaks ECR's GetAuthorizationToken (AWS JSON 1.1) to the real AWS SDK and verifies
 * its SigV4 signature with the secret key (the algorithm is public: canonical request, string to
 * sign, derived signing key), so a wrong secret or a broken canonical request is refused as AWS
 * refuses it. The token it hands out is the
 * registry's password for user AWS, as with real ECR. Everything it changes on the machine is
 * marked and undone by `stop`.
 */
import { createHash, createHmac, randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { issueCertificate, makeCa } from './certs.js';
import { startRegistry, type RunningRegistry } from './registry.js';
import { tempDir } from './ownership.js';

const HOSTS = '/etc/hosts';
const MARK = '# berth-test-ecr';
const CERTS_D = '/etc/docker/certs.d';

export interface FakeEcr {
  host: string;
  account: string;
  region: string;
  accessKeyId: string;
  secretAccessKey: string;
  /** The registry password the token stands for (user AWS). */
  token: string;
  caFile: string;
  endpoint: string;
  /** Token requests with a valid signature, with what the signature said. */
  requests: { accessKeyId: string; region: string; service: string; registryIds: string[] }[];
  /** Requests whose SigV4 signature did not verify. */
  badSignatures: number;
  /** Answer the next requests with AccessDeniedException. */
  denyAll: boolean;
  stop(): Promise<void>;
}

function removeHostsEntries(): void {
  const text = readFileSync(HOSTS, 'utf8');
  const kept = text.split('\n').filter((line) => !line.includes(MARK));
  if (kept.length !== text.split('\n').length) writeFileSync(HOSTS, kept.join('\n'));
}

export async function startFakeEcr(): Promise<FakeEcr> {
  if (process.getuid?.() !== 0) {
    throw new Error(
      'the ECR test changes /etc/hosts and /etc/docker/certs.d: run it as root (sudo bash .ci/run does)',
    );
  }
  const account = '123456789012';
  const region = 'us-east-1';
  const host = `${account}.dkr.ecr.${region}.amazonaws.com`;
  const dir = tempDir('berth-ecr-');
  const ca = makeCa(dir);
  const certs = { ca: ca.cert, ...issueCertificate(ca, host, { server: `DNS:${host}` }) };
  const token = `ecr-token-${randomBytes(12).toString('hex')}`;
  const fake: FakeEcr = {
    host,
    account,
    region,
    accessKeyId: 'AKIDBERTHTEST0000001',
    secretAccessKey: randomBytes(20).toString('hex'),
    token,
    caFile: certs.ca,
    endpoint: '',
    requests: [],
    badSignatures: 0,
    denyAll: false,
    stop: () => Promise.resolve(),
  };

  removeHostsEntries();
  writeFileSync(
    HOSTS,
    `${readFileSync(HOSTS, 'utf8').replace(/\n?$/, '\n')}127.0.0.1 ${host} ${MARK}\n`,
  );
  mkdirSync(path.join(CERTS_D, host), { recursive: true });
  writeFileSync(path.join(CERTS_D, host, 'ca.crt'), readFileSync(certs.ca));

  let registry: RunningRegistry | undefined;
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (chunk: Buffer) => (body += chunk.toString()));
    req.on('end', () => {
      const auth = req.headers.authorization ?? '';
      const credential = /Credential=([^/]+)\/\d{8}\/([^/]+)\/([^/]+)\/aws4_request/.exec(auth);
      const target = req.headers['x-amz-target'];
      const answer = (status: number, payload: unknown): void => {
        res.writeHead(status, { 'content-type': 'application/x-amz-json-1.1' });
        res.end(JSON.stringify(payload));
      };
      if (
        target !== 'AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken' ||
        !credential ||
        !/SignedHeaders=.*x-amz-date/.test(auth)
      ) {
        answer(400, {
          __type: 'InvalidSignatureException',
          message: 'not a SigV4-signed GetAuthorizationToken request',
        });
        return;
      }
      if (credential[1] === fake.accessKeyId && !signatureValid(req, body, fake.secretAccessKey)) {
        fake.badSignatures += 1;
        answer(400, {
          __type: 'InvalidSignatureException',
          message:
            'The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method.',
        });
        return;
      }
      const parsed = JSON.parse(body || '{}') as { registryIds?: string[] };
      fake.requests.push({
        accessKeyId: credential[1] as string,
        region: credential[2] as string,
        service: credential[3] as string,
        registryIds: parsed.registryIds ?? [],
      });
      if (fake.denyAll) {
        answer(400, {
          __type: 'AccessDeniedException',
          message: `User: arn:aws:iam::${account}:user/worker is not authorized to perform: ecr:GetAuthorizationToken`,
        });
        return;
      }
      if (
        credential[1] !== fake.accessKeyId ||
        credential[2] !== region ||
        credential[3] !== 'ecr'
      ) {
        answer(400, {
          __type: 'UnrecognizedClientException',
          message: 'The security token included in the request is invalid.',
        });
        return;
      }
      answer(200, {
        authorizationData: [
          {
            authorizationToken: Buffer.from(`AWS:${token}`).toString('base64'),
            expiresAt: Math.floor(Date.now() / 1000) + 12 * 3600,
            proxyEndpoint: `https://${host}`,
          },
        ],
      });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  fake.endpoint = `http://127.0.0.1:${(server.address() as { port: number }).port}`;

  fake.stop = async () => {
    await registry?.stop();
    await new Promise((resolve) => server.close(resolve));
    removeHostsEntries();
    rmSync(path.join(CERTS_D, host), { recursive: true, force: true });
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    registry = await startRegistry({
      address: '127.0.0.1:443',
      user: { name: 'AWS', password: token },
      tls: { certificate: certs.cert, key: certs.key },
    });
  } catch (err) {
    await fake.stop();
    throw err;
  }
  return fake;
}

const sha256 = (data: string): string => createHash('sha256').update(data).digest('hex');
const hmac = (key: Buffer | string, data: string): Buffer =>
  createHmac('sha256', key).update(data).digest();

/**
 * AWS Signature Version 4, checked the way AWS checks it: rebuild the canonical request from what
 * arrived, derive the signing key from the secret and the credential scope, compare signatures.
 */
export function signatureValid(req: http.IncomingMessage, body: string, secret: string): boolean {
  const auth = req.headers.authorization ?? '';
  const match =
    /^AWS4-HMAC-SHA256 Credential=[^/]+\/(\d{8})\/([^/]+)\/([^/]+)\/aws4_request, ?SignedHeaders=([^,]+), ?Signature=([0-9a-f]{64})$/.exec(
      auth,
    );
  const amzDate = req.headers['x-amz-date'];
  if (!match || typeof amzDate !== 'string') return false;
  const [, date, region, service, signedHeaders, signature] = match as unknown as string[];
  const url = new URL(req.url ?? '/', 'http://endpoint');
  const query = [...url.searchParams.entries()]
    .map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`)
    .sort()
    .join('&');
  const headers = (signedHeaders as string).split(';');
  const canonicalHeaders = headers
    .map((name) => {
      const value = req.headers[name];
      const text = Array.isArray(value) ? value.join(',') : (value ?? '');
      return `${name}:${text.trim().replace(/\s+/g, ' ')}\n`;
    })
    .join('');
  const payloadHash = req.headers['x-amz-content-sha256'];
  const canonicalRequest = [
    req.method,
    url.pathname || '/',
    query,
    canonicalHeaders,
    signedHeaders,
    typeof payloadHash === 'string' ? payloadHash : sha256(body),
  ].join('\n');
  const scope = `${date}/${region}/${service}/aws4_request`;
  const stringToSign = ['AWS4-HMAC-SHA256', amzDate, scope, sha256(canonicalRequest)].join('\n');
  const key = ['aws4_request'].reduce(
    (k, part) => hmac(k, part),
    hmac(hmac(hmac(`AWS4${secret}`, date as string), region as string), service as string),
  );
  return createHmac('sha256', key).update(stringToSign).digest('hex') === signature;
}
