/**
 * Every Docker engine error berth recognises, in one place. The engine reports most failures as an
 * HTTP status with a free-text message; the patterns below turn the ones a user can act on into
 * berth errors with a fix. Anything unrecognised stays a BERTH_DOCKER_API error carrying the
 * engine's own message.
 */
import { BerthError } from '../../domain/errors.js';

/** An engine answer with a status of 400 or more, before berth gives it a meaning. */
export class DockerApiError extends Error {
  constructor(
    readonly status: number,
    readonly engineMessage: string,
    readonly operation: string,
  ) {
    super(`${operation}: the Docker engine answered ${status}: ${engineMessage}`);
    this.name = 'DockerApiError';
  }
}

const DISK_FULL = /no space left on device|disk quota exceeded/i;
const NO_SUCH_IMAGE =
  /no such image|manifest unknown|not found: manifest|manifest for .* not found/i;
const PULL_DENIED =
  /pull access denied|unauthorized|authentication required|denied: |requested access to the resource is denied/i;
const NO_SHELL =
  /(exec: "?\/bin\/sh"?: (stat \/bin\/sh: )?no such file|executable file not found)/i;
const UNKNOWN_RUNTIME = /unknown or invalid runtime name|unknown runtime/i;
const BIND_SOURCE_MISSING = /bind source path does not exist: (\S+)/i;
/** The engine making the job's working directory (or a mount point) where the image has a file. */
const WORKSPACE_IS_FILE = /\/mnt\/workspace\S*: not a directory/i;
const REJECTED_OPTION =
  /(invalid|not supported|does not support|cannot be|minimum memory limit|range of cpus|cgroup)/i;

/** Errors of the operating system (or of TLS) when talking to the engine. */
export function connectionError(
  err: NodeJS.ErrnoException,
  endpoint: { display: string; host?: string; tls?: { certPath: string } },
): BerthError {
  if (err.code === 'EACCES' || err.code === 'EPERM') {
    return new BerthError(
      'BERTH_DOCKER_PERMISSION',
      `permission denied on the Docker socket ${endpoint.display}`,
      { cause: err },
    );
  }
  if (endpoint.tls && isTlsFailure(err)) {
    return new BerthError(
      'BERTH_DOCKER_UNREACHABLE',
      `the Docker engine at ${endpoint.display} failed the TLS check (${err.code}: ${tlsReason(err)})`,
      {
        cause: err,
        hint: `Put the CA that signed the engine's certificate in ${endpoint.tls.certPath}/ca.pem, make sure that certificate names ${endpoint.host ?? 'the host'} and has not expired, and give berth a client certificate there (cert.pem, key.pem) if the engine asks for one.`,
      },
    );
  }
  if (endpoint.host && !endpoint.tls && (err.code === 'ECONNRESET' || err.code === 'EPIPE')) {
    return plainToTlsEngine(endpoint, `closed the connection (${err.code})`, err);
  }
  return new BerthError(
    'BERTH_DOCKER_UNREACHABLE',
    `cannot reach the Docker engine at ${endpoint.display} (${err.code ?? err.message})`,
    { cause: err },
  );
}

const TLS_HINT =
  'An engine that speaks TLS (usually on port 2376) refuses plain connections: set DOCKER_TLS_VERIFY=1 and DOCKER_CERT_PATH to the directory with ca.pem, cert.pem and key.pem.';

/**
 * A plain connection to an engine that speaks TLS: a TLS terminator drops it, `dockerd
 * --tlsverify` answers 400 "Client sent an HTTP request to an HTTPS server" (see isPlainToTls).
 */
export function plainToTlsEngine(
  endpoint: { display: string },
  what: string,
  cause?: unknown,
): BerthError {
  return new BerthError(
    'BERTH_DOCKER_UNREACHABLE',
    `the Docker engine at ${endpoint.display} ${what}`,
    { cause, hint: TLS_HINT },
  );
}

/** dockerd's (Go's) answer to plain HTTP on its TLS port. */
export function isPlainToTls(status: number, body: string): boolean {
  return status === 400 && /HTTP request to an HTTPS server/i.test(body);
}

/** OpenSSL's own words without its source location: `tlsv13 alert certificate required`. */
function tlsReason(err: Error): string {
  const line = err.message.split('\n')[0] ?? '';
  return /SSL routines:[^:]*:([^:]+)/.exec(line)?.[1]?.trim() ?? line.trim();
}

/** Whether a connection failed in the TLS handshake (certificate, protocol, alert). */
function isTlsFailure(err: NodeJS.ErrnoException): boolean {
  const code = err.code ?? '';
  return (
    /^(ERR_TLS_|ERR_SSL_|CERT_|UNABLE_TO_|DEPTH_ZERO|SELF_SIGNED|EPROTO)/.test(code) ||
    err.message.includes('alert')
  );
}

/** Maps an engine error during a pull to the error a user can act on. */
export function pullError(err: unknown, reference: string): BerthError {
  const text = err instanceof DockerApiError ? err.engineMessage : errorText(err);
  if (err instanceof BerthError) return err;
  if (DISK_FULL.test(text)) {
    return new BerthError('BERTH_DISK_FULL', `no space left while pulling ${reference}: ${text}`, {
      cause: err,
    });
  }
  if (PULL_DENIED.test(text)) {
    return new BerthError('BERTH_IMAGE_PULL_DENIED', `pull of ${reference} was denied: ${text}`, {
      cause: err,
    });
  }
  if (NO_SUCH_IMAGE.test(text) || (err instanceof DockerApiError && err.status === 404)) {
    return new BerthError('BERTH_IMAGE_NOT_FOUND', `image ${reference} not found: ${text}`, {
      cause: err,
    });
  }
  return new BerthError('BERTH_IMAGE_PULL_FAILED', `pull of ${reference} failed: ${text}`, {
    cause: err,
  });
}

/** Maps an engine error while creating or starting the job's container. */
export function containerError(err: unknown, image: string): BerthError {
  if (err instanceof BerthError) return err;
  const text = err instanceof DockerApiError ? err.engineMessage : errorText(err);
  if (DISK_FULL.test(text)) {
    return new BerthError('BERTH_DISK_FULL', `no space left on the Docker engine's disk: ${text}`, {
      cause: err,
    });
  }
  if (NO_SHELL.test(text)) {
    return new BerthError('BERTH_IMAGE_NO_SHELL', `image ${image} has no /bin/sh: ${text}`, {
      cause: err,
    });
  }
  if (WORKSPACE_IS_FILE.test(text)) {
    return new BerthError(
      'BERTH_WORKSPACE_NOT_WRITABLE',
      `image ${image} has a file where the workspace (/mnt/workspace) needs a directory: ${text}`,
      { cause: err },
    );
  }
  const missingSource = BIND_SOURCE_MISSING.exec(text);
  if (missingSource) {
    return new BerthError(
      'BERTH_ENGINE_NOT_LOCAL',
      `the Docker engine has no ${missingSource[1]}, which berth mounts into the job: the engine does not see berth's file system (berth in a container, or an engine on another machine)`,
      { cause: err },
    );
  }
  if (UNKNOWN_RUNTIME.test(text)) {
    return new BerthError('BERTH_OPTION_REJECTED', `the container runtime was rejected: ${text}`, {
      cause: err,
      hint: 'Install the runtime and register it with the engine (`"runtimes"` in daemon.json), or leave --runtime unset to use the default.',
    });
  }
  if (err instanceof DockerApiError && err.status === 400 && REJECTED_OPTION.test(text)) {
    return new BerthError(
      'BERTH_OPTION_REJECTED',
      `the Docker engine rejected an option: ${text}`,
      {
        cause: err,
      },
    );
  }
  if (err instanceof DockerApiError && err.status === 404 && /network/i.test(text)) {
    return new BerthError('BERTH_OPTION_REJECTED', `network not found: ${text}`, {
      cause: err,
      hint: 'Create the network (`docker network create NAME`) or pass an existing one with --network (default: bridge).',
    });
  }
  if (err instanceof DockerApiError) {
    return new BerthError('BERTH_DOCKER_API', err.message, { cause: err });
  }
  return new BerthError('BERTH_INTERNAL', text, { cause: err });
}

export function errorText(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}

export function isDiskFull(text: string): boolean {
  return DISK_FULL.test(text);
}

/**
 * Warnings the engine may give when it creates a container that do not weaken anything berth
 * asked for: the memory limit holds without a swap limit berth never set, and an image built for
 * another platform runs under emulation because the user chose it. Every other warning (a limit
 * discarded, a quota not supported) means an option was not applied.
 */
const HARMLESS_CREATE_WARNINGS = [
  /does not support swap limit capabilities.*Memory limited without swap/i,
  /requested image's platform .* does not match the detected host platform/i,
];

export function splitCreateWarnings(warnings: readonly string[]): {
  notes: string[];
  rejected: string[];
} {
  const notes: string[] = [];
  const rejected: string[] = [];
  for (const warning of warnings) {
    (HARMLESS_CREATE_WARNINGS.some((p) => p.test(warning)) ? notes : rejected).push(warning);
  }
  return { notes, rejected };
}
