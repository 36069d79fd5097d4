/**
 * Can a job container reach the cloud's instance metadata service? On a cloud VM that address
 * (169.254.169.254) hands out the machine's own credentials (an EC2 instance role, say) to
 * anything that asks, so a job that reaches it can act as the worker: on a public pool, one
 * tenant as every tenant. berth cannot block it itself (that needs the host's firewall or the
 * cloud's settings); it checks, from a container exactly like a job's, and says so loudly.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { shellQuote } from '../domain/hook-script.js';
import type { Executor, JobHandle } from '../executor/executor.js';
import { newRunId } from './run-job.js';

/** The instance metadata address of AWS, GCP, Azure and most others. */
export const METADATA_ADDRESS = '169.254.169.254:80';

export interface MetadataProbe {
  address: string;
  /** null: the image has none of curl, nc or wget, so berth could not tell. */
  reachable: boolean | null;
}

/** Tries a TCP connection with whatever the image has; prints reachable, unreachable or unknown. */
export function probeScript(host: string, port: number): string {
  const h = shellQuote(host);
  // An IPv6 address goes in brackets in a URL.
  const u = shellQuote(host.includes(':') ? `[${host}]` : host);
  return `h=${h}; u=${u}; p=${port}
if command -v curl >/dev/null 2>&1; then
  curl -s -m 3 -o /dev/null "http://$u:$p/"; rc=$?
  # 0: an answer; 22: an HTTP error, still an answer; 7, 28: refused, timed out; else unknown.
  case $rc in 0|22|52|56) echo reachable ;; 7|28) echo unreachable ;; *) echo unknown ;; esac
elif command -v nc >/dev/null 2>&1; then
  if nc -w 3 "$h" "$p" </dev/null >/dev/null 2>&1; then echo reachable; else echo unreachable; fi
elif command -v wget >/dev/null 2>&1; then
  if wget -q -T 3 -S -O /dev/null "http://$u:$p/" 2>&1 | grep -q 'HTTP/'; then echo reachable; else echo unreachable; fi
else
  echo unknown
fi
`;
}

export async function probeMetadataAccess(
  executor: Executor,
  settings: {
    image: string;
    network: string;
    runtime?: string;
    launcherId: string;
    /** host:port; METADATA_ADDRESS unless a test or an unusual cloud says otherwise. */
    address?: string;
  },
): Promise<MetadataProbe> {
  const address = settings.address ?? METADATA_ADDRESS;
  const colon = address.lastIndexOf(':');
  const host = address.slice(0, colon).replace(/^\[|\]$/g, '');
  const port = Number(address.slice(colon + 1));
  const phase = { name: 'metadata-probe', script: probeScript(host, port) };
  const runId = `probe-${newRunId()}`;
  let job: JobHandle | undefined;
  let output = '';
  // The probe's workspace: an empty directory, gone afterwards.
  const empty = await mkdtemp(path.join(tmpdir(), 'berth-probe-'));
  try {
    job = await executor.startJob({
      runId,
      launcherId: settings.launcherId,
      expiresAt: new Date(Date.now() + 5 * 60_000),
      image: settings.image,
      imageReference: settings.image,
      sourceDir: empty,
      env: {},
      network: settings.network,
      runtime: settings.runtime,
      pidsLimit: 64,
      solePhase: phase,
    });
    await job.runPhase(phase, (_stream, chunk) => {
      output += chunk.toString('utf8');
    });
  } finally {
    await job?.destroy();
    await rm(empty, { recursive: true, force: true });
  }
  const verdict = output.trim().split('\n').at(-1);
  return {
    address,
    reachable: verdict === 'reachable' ? true : verdict === 'unreachable' ? false : null,
  };
}
