/**
 * berth's one error type and its catalogue. Every error a user can see has a stable code, a kind
 * (which also decides the process exit code), whether retrying can help, and a hint that tells the
 * fix. docs/errors.md lists every code; src/domain/errors.test.ts keeps the two in step.
 */

export type ErrorKind = 'usage' | 'config' | 'image' | 'infra' | 'internal';

interface CatalogueEntry {
  kind: ErrorKind;
  retryable: boolean;
  hint: string;
}

export const ERROR_CATALOGUE = {
  BERTH_USAGE: {
    kind: 'usage',
    retryable: false,
    hint: 'Run `berth COMMAND --help` (berth names the command) for its options and the values they take.',
  },
  BERTH_CONFIG_INVALID: {
    kind: 'config',
    retryable: false,
    hint: 'Fix each problem listed (file:line:column, with a hint each); see docs/runtime-configuration.md for the schema.',
  },
  BERTH_WORKSPACE_UNREADABLE: {
    kind: 'usage',
    retryable: false,
    hint: 'Pass a directory that exists and that you can read, or run berth from inside it.',
  },
  BERTH_WORKSPACE_NOT_WRITABLE: {
    kind: 'infra',
    retryable: false,
    hint: 'berth copies (or, as root on a local engine, mounts) the job directory into the container at /mnt/workspace. Make sure the image does not make /mnt or /mnt/workspace a file or a read-only mount, and that the engine (or, mounted, the state directory) has space.',
  },
  BERTH_WORKSPACE_SYMLINK: {
    kind: 'usage',
    retryable: false,
    hint: 'berth reads its own files (.berth/task.sh, .berth/config.yml, .berth/workflow.yml and their .spacelift/ twins) from the job directory itself and never follows a symlink there, which could point at a file of the machine berth runs on. Replace the symlink (or the symlinked directory on its path) with the file itself.',
  },
  BERTH_SAVED_WORKSPACE_TOO_LARGE: {
    kind: 'config',
    retryable: false,
    hint: 'Nothing was applied. Keep less in /mnt/workspace between plan and apply (large files made by the plan, downloaded artefacts), or raise the limit with --saved-workspace-limit SIZE (BERTH_SAVED_WORKSPACE_LIMIT).',
  },
  BERTH_SAVED_WORKSPACE_INVALID: {
    kind: 'infra',
    retryable: false,
    hint: 'Nothing was applied. The workspace saved after the plan was changed or damaged on disk while it waited for confirmation; run the plan again.',
  },
  BERTH_APPLY_IMAGE_CHANGED: {
    kind: 'image',
    retryable: false,
    hint: 'Nothing was applied. The image reference now names another image than the one the plan ran in (a tag moved, or the worker that applies has another image under that name); trigger the run again to plan in the current image, or pin the runner image by digest.',
  },
  BERTH_ENGINE_NOT_LOCAL: {
    kind: 'infra',
    retryable: false,
    hint: 'Over a Unix socket berth mounts the tool binary and the shared plugin cache from its own file system. If berth runs in a container, put BERTH_STATE_DIR (and BERTH_PLUGIN_CACHE_DIR) on a host directory mounted at the same path; for an engine on another machine use DOCKER_HOST=tcp://…, where berth copies the binary instead.',
  },
  BERTH_DOCKER_UNREACHABLE: {
    kind: 'infra',
    retryable: true,
    hint: 'Start the Docker engine (e.g. `sudo systemctl start docker`) or point DOCKER_HOST at a running one (e.g. DOCKER_HOST=unix:///var/run/docker.sock).',
  },
  BERTH_DOCKER_PERMISSION: {
    kind: 'infra',
    retryable: false,
    hint: 'Add your user to the `docker` group (then log in again), run berth as a user that may use the socket, or point DOCKER_HOST at a socket you may use.',
  },
  BERTH_DOCKER_TIMEOUT: {
    kind: 'infra',
    retryable: true,
    hint: 'The Docker engine did not answer in time. Check `docker info` and the engine logs; the machine may be overloaded.',
  },
  BERTH_DOCKER_API: {
    kind: 'infra',
    retryable: true,
    hint: "The Docker engine refused a request. The message above is the engine's own; check the engine logs.",
  },
  BERTH_DISK_FULL: {
    kind: 'infra',
    retryable: true,
    hint: "Free space where the Docker engine keeps its data (`docker system df`, `docker image prune`) or in berth's state directory.",
  },
  BERTH_OPTION_REJECTED: {
    kind: 'config',
    retryable: false,
    hint: 'The Docker engine rejected or could not apply a container option berth asked for. berth never weakens isolation silently: fix the engine (kernel cgroup support, installed runtime) or change the option.',
  },
  BERTH_IMAGE_INVALID: {
    kind: 'image',
    retryable: false,
    hint: 'Use a reference of the form [REGISTRY[:PORT]/]REPOSITORY[:TAG][@sha256:DIGEST] with a lowercase repository, e.g. debian:bookworm-slim or ghcr.io/org/app:v1.',
  },
  BERTH_POLICY_REGISTRY_NOT_ALLOWED: {
    kind: 'image',
    retryable: false,
    hint: "Use an image from a registry on the pool's allow-list, ask the pool's operator to add the registry (BERTH_PUBLIC_ALLOWED_REGISTRIES), or run on a private worker pool, which may use any registry.",
  },
  BERTH_POLICY_ECR_ACCOUNT_NOT_ALLOWED: {
    kind: 'image',
    retryable: false,
    hint: "On a public pool the worker's own AWS identity asks ECR for tokens only for the AWS accounts the pool's operator lists (BERTH_PUBLIC_ECR_ACCOUNTS), so that one tenant cannot run the images another account lets the worker pull. Ask the operator to list the account, use a public image, or run on a private worker pool.",
  },
  BERTH_POLICY_PRIVATE_IMAGE: {
    kind: 'image',
    retryable: false,
    hint: 'Public worker pools run only public images and never use registry credentials (a private image would stay in the shared engine cache). Make the image public, or run the job on a private worker pool.',
  },
  BERTH_REGISTRY_AUTH_FAILED: {
    kind: 'image',
    retryable: false,
    hint: 'The registry rejected the credentials berth found. Log in again (`docker --config DIR login REGISTRY`) for the Docker config directory berth uses, or fix the credential helper.',
  },
  BERTH_REGISTRY_UNREACHABLE: {
    kind: 'image',
    retryable: true,
    hint: 'berth checks with the registry before every job. Check that this machine can reach the registry (DNS, proxy, firewall) and try again. To run a copy the engine already has without the check (private pools), use --pull never.',
  },
  BERTH_CREDENTIALS_INVALID: {
    kind: 'image',
    retryable: false,
    hint: 'Fix config.json in the Docker config directory berth uses (BERTH_DOCKER_CONFIG_DIR or --docker-config-dir), e.g. by logging in again with `docker --config DIR login REGISTRY`.',
  },
  BERTH_CREDENTIAL_HELPER_MISSING: {
    kind: 'image',
    retryable: false,
    hint: 'Install the docker-credential-NAME program the Docker config names and put it on PATH, or remove it from config.json. berth never falls back to other credentials.',
  },
  BERTH_CREDENTIAL_HELPER_FAILED: {
    kind: 'image',
    retryable: true,
    hint: 'Run the helper by hand (`echo REGISTRY | docker-credential-NAME get`) to see why it fails. berth never falls back to other credentials.',
  },
  BERTH_ECR_NO_CREDENTIALS: {
    kind: 'image',
    retryable: false,
    hint: "berth asks ECR for a registry token with the worker's own AWS identity, found through the AWS SDK's default chain: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE with ~/.aws/config (SSO too), web identity (AWS_WEB_IDENTITY_TOKEN_FILE), the ECS task role, or the EC2 instance role. Give the worker one of them.",
  },
  BERTH_ECR_ACCESS_DENIED: {
    kind: 'image',
    retryable: false,
    hint: "Allow the worker's AWS identity ecr:GetAuthorizationToken (resource *) and, on the repository, ecr:BatchGetImage, ecr:GetDownloadUrlForLayer and ecr:BatchCheckLayerAvailability.",
  },
  BERTH_ECR_FAILED: {
    kind: 'image',
    retryable: true,
    hint: 'ECR did not give a registry token. Check the region and partition in the image host name, and that this machine can reach the ECR API of that region.',
  },
  BERTH_IMAGE_NOT_FOUND: {
    kind: 'image',
    retryable: false,
    hint: 'Check the image name and tag. With --pull never the image must already be in the local engine (`docker images`).',
  },
  BERTH_IMAGE_PULL_DENIED: {
    kind: 'image',
    retryable: false,
    hint: 'The registry refused the pull. Check the name, and that the image is public or that this machine is logged in to the registry.',
  },
  BERTH_IMAGE_PULL_FAILED: {
    kind: 'image',
    retryable: true,
    hint: 'Check that the registry is reachable from the Docker engine and try again.',
  },
  BERTH_IMAGE_PULL_TIMEOUT: {
    kind: 'image',
    retryable: true,
    hint: 'The pull took longer than --pull-timeout. Raise it for large images, or check the network between the engine and the registry.',
  },
  BERTH_IMAGE_NO_SHELL: {
    kind: 'image',
    retryable: false,
    hint: 'berth runs every job with /bin/sh. Build the image on a base that has a POSIX shell (e.g. FROM debian:bookworm-slim or busybox), or use the standard runner image.',
  },
  BERTH_IMAGE_PLATFORM_INVALID: {
    kind: 'image',
    retryable: false,
    hint: "The image's configuration names an operating system, architecture or variant that berth does not know, so berth will not run it or pick a tool for it. Rebuild the image for a real platform (e.g. linux/amd64 or linux/arm64).",
  },
  BERTH_RUNNER_IMAGE_BUILD_FAILED: {
    kind: 'image',
    retryable: true,
    hint: "The standard runner image could be neither pulled nor built here; the build output above says why (it needs debian:bookworm-slim and a Debian mirror). Run with an image this machine has: --image REF, or BERTH_DEFAULT_RUNNER_IMAGE=REF for every run (a server's run: the stack's `berth stack update ID --runner-image REF`, or the pool's `berth pool update POOL --default-image REF`). Or build it from runner/Dockerfile where a mirror is reachable (`docker build -t ghcr.io/berth-dev/runner:latest runner/`, through a proxy with --build-arg http_proxy=URL) and bring it here with `docker save` and `docker load`.",
  },
  BERTH_CUSTOM_WORKFLOW_MISSING: {
    kind: 'config',
    retryable: false,
    hint: 'Add .berth/workflow.yml (or .spacelift/workflow.yml) with the commands of your tool (init, plan, showPlan, apply, destroy), or choose TERRAFORM_FOSS or OPEN_TOFU.',
  },
  BERTH_CUSTOM_COMMANDS_MISSING: {
    kind: 'config',
    retryable: false,
    hint: 'Add the missing commands to the workflow file; see docs/runtime-configuration.md for each one.',
  },
  BERTH_CUSTOM_TOOL_MISSING: {
    kind: 'image',
    retryable: false,
    hint: 'Install the program in the runner image (or put it in the repository and call it by path), or change the workflow file.',
  },
  BERTH_TOOL_VERSION_UNKNOWN: {
    kind: 'config',
    retryable: false,
    hint: 'Ask for a version (or constraint) that the release index lists for this platform.',
  },
  BERTH_TOOL_DOWNLOAD_FAILED: {
    kind: 'infra',
    retryable: true,
    hint: 'Check that this machine can reach the release location (BERTH_TERRAFORM_RELEASES_URL / BERTH_OPENTOFU_RELEASES_URL) and try again.',
  },
  BERTH_TOOL_CHECKSUM_MISMATCH: {
    kind: 'infra',
    retryable: true,
    hint: 'Nothing was run. The download or the mirror is corrupt or was tampered with; try again, or check the mirror.',
  },
  BERTH_TOOL_SIGNATURE_INVALID: {
    kind: 'infra',
    retryable: false,
    hint: 'Nothing was run. The release or the mirror may have been tampered with; check the mirror, or the signing key file you configured.',
  },
  BERTH_GIT_CREDENTIALS_INVALID: {
    kind: 'config',
    retryable: false,
    hint: "The stack's git credentials are stack variables: BERTH_GIT_TOKEN (secret; with BERTH_GIT_USERNAME) for an https:// repository, BERTH_GIT_SSH_KEY (secret; with BERTH_GIT_KNOWN_HOSTS) for an SSH one. Set the one that fits the URL, as a secret (berth stack env set STACK NAME --secret).",
  },
  BERTH_GIT_AUTH_FAILED: {
    kind: 'config',
    retryable: false,
    hint: "Set a token with read access (berth stack env set STACK BERTH_GIT_TOKEN --secret) for https://, or add the deploy key's public half to the repository and its private half to BERTH_GIT_SSH_KEY for SSH.",
  },
  BERTH_GIT_REPOSITORY_NOT_FOUND: {
    kind: 'config',
    retryable: false,
    hint: "Check the stack's repository URL (berth stack show STACK), and that its token or deploy key may read it.",
  },
  BERTH_GIT_COMMIT_NOT_FOUND: {
    kind: 'config',
    retryable: false,
    hint: "Check the stack's branch and the run's commit; trigger the run again on a commit the repository has.",
  },
  BERTH_GIT_HOST_KEY_MISMATCH: {
    kind: 'config',
    retryable: false,
    hint: "Check the server's key with its operator (ssh-keyscan HOST shows what answers now); if it really changed, set the new line in BERTH_GIT_KNOWN_HOSTS.",
  },
  BERTH_GIT_HOST_KEY_UNKNOWN: {
    kind: 'config',
    retryable: false,
    hint: 'Pin the server\'s key after checking it with its operator: berth stack env set STACK BERTH_GIT_KNOWN_HOSTS="$(ssh-keyscan HOST)".',
  },
  BERTH_GIT_FAILED: {
    kind: 'infra',
    retryable: true,
    hint: 'Check that the git host is reachable from the worker (proxy settings: HTTPS_PROXY, NO_PROXY) and try again.',
  },
  BERTH_SERVER_UNREACHABLE: {
    kind: 'infra',
    retryable: true,
    hint: 'Check the server URL (berth login --server URL, or BERTH_SERVER) and that berth server runs and is reachable from here.',
  },
  BERTH_SERVER_UNAVAILABLE: {
    kind: 'infra',
    retryable: true,
    hint: "The berth server answered with an error of its own (5xx): it cannot use its database now, or it is restarting. Try again shortly; the server's own output says what it lacks.",
  },
  BERTH_SERVER_REFUSED: {
    kind: 'usage',
    retryable: false,
    hint: 'The berth server refused the request; its own code and words are in the message. Check the token (berth login) and the names you gave.',
  },
  BERTH_SERVER_ANSWER_UNEXPECTED: {
    kind: 'usage',
    retryable: false,
    hint: "Give the address berth server printed when it started, e.g. --server http://127.0.0.1:8080 (or BERTH_SERVER); the web page's address works too. If a proxy stands before the server, check that it passes /api/v1 on to berth server and that the server runs.",
  },
  BERTH_TLS_FILE_UNREADABLE: {
    kind: 'usage',
    retryable: false,
    hint: 'Give a certificate or key file that exists and that the user running berth can read (PEM): --tls-cert/--tls-key for berth server and berth up, --ca-cert or BERTH_CA_CERT for the CA a client trusts.',
  },
  BERTH_TLS_INVALID: {
    kind: 'config',
    retryable: false,
    hint: "Use PEM files: the server's certificate (its chain, leaf first) with --tls-cert and the unencrypted private key of that same certificate with --tls-key; a CA certificate with --ca-cert. `openssl x509 -in FILE -noout -text` shows what a certificate file holds.",
  },
  BERTH_SERVER_NOT_TRUSTED: {
    kind: 'infra',
    retryable: false,
    hint: "Give the CA that signed the server's certificate with --ca-cert FILE or BERTH_CA_CERT=FILE (or NODE_EXTRA_CA_CERTS), and use the host name the certificate names; berth always verifies the server and has no switch to skip it.",
  },
  BERTH_SECRETS_KEY_MISMATCH: {
    kind: 'config',
    retryable: false,
    hint: "Every server on one database needs the same secrets key: set BERTH_SECRETS_KEY to it on each (it wins over a key file), or copy the first server's secrets.key (from its data directory, mode 0600) into this server's data directory. Only if that key is lost for good: `berth server --new-secrets-key` with a new key, which forgets what the lost key sealed (see docs/server.md, 'The secrets key').",
  },
  BERTH_BLOB_STORE_MISMATCH: {
    kind: 'config',
    retryable: false,
    hint: 'Every server on one database needs the same blob directory (a shared volume): set BERTH_BLOB_DIR to it on each.',
  },
  BERTH_SERVER_STORAGE_FULL: {
    kind: 'infra',
    retryable: true,
    hint: "Nothing was applied. The berth server's blob directory (BERTH_BLOB_DIR) has no room for the plan's saved workspace: its operator frees space there or gives it more; then trigger the run again.",
  },
  BERTH_DATABASE_UNAVAILABLE: {
    kind: 'infra',
    retryable: true,
    hint: 'Check that PostgreSQL runs, that this machine reaches it, and the user, password and database name in BERTH_DATABASE_URL.',
  },
  BERTH_INTERNAL: {
    kind: 'internal',
    retryable: false,
    hint: 'This is a bug in berth. Please report it with the output of the run (secrets are masked).',
  },
} as const satisfies Record<string, CatalogueEntry>;

export type ErrorCode = keyof typeof ERROR_CATALOGUE;

export interface BerthErrorOptions {
  cause?: unknown;
  /** Replaces the catalogue's hint when the situation allows a more precise one. */
  hint?: string;
}

export class BerthError extends Error {
  readonly code: ErrorCode;
  readonly kind: ErrorKind;
  readonly retryable: boolean;
  readonly hint: string;

  constructor(code: ErrorCode, message: string, options: BerthErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'BerthError';
    const entry: CatalogueEntry = ERROR_CATALOGUE[code];
    this.code = code;
    this.kind = entry.kind;
    this.retryable = entry.retryable;
    this.hint = options.hint ?? entry.hint;
  }
}

/** Why a `fetch` failed, in a word: the system error code (ECONNREFUSED, ENOTFOUND) or its name. */
export function fetchFailureCause(err: unknown): string {
  return (err as { cause?: { code?: string } }).cause?.code ?? (err as Error).name;
}

/** Turns anything thrown into a BerthError, keeping the original as `cause`. */
export function coerceError(err: unknown): BerthError {
  if (err instanceof BerthError) return err;
  const code = (err as { code?: unknown } | null)?.code;
  if (err instanceof Error && (code === 'ENOSPC' || code === 'EDQUOT')) {
    // A write on this machine (berth's state directory: tool cache, saved workspace) found no room.
    return new BerthError('BERTH_DISK_FULL', `no space left on this machine: ${err.message}`, {
      cause: err,
    });
  }
  if (err instanceof Error && err.name === 'DockerApiError') {
    // An answer of the Docker engine (4xx/5xx, executor/docker/daemon-errors.ts) that no caller
    // gave a meaning: the engine refused, which is never "a bug in berth".
    return new BerthError('BERTH_DOCKER_API', err.message, { cause: err });
  }
  if (err instanceof Error) return new BerthError('BERTH_INTERNAL', err.message, { cause: err });
  return new BerthError('BERTH_INTERNAL', String(err));
}

/**
 * Process exit codes of `berth run`, documented in docs/usage.md. 124 and 130 follow the
 * conventions of timeout(1) and of a shell interrupted by Ctrl-C.
 */
export const EXIT_CODES = {
  success: 0,
  jobFailed: 1,
  usage: 2,
  image: 3,
  infra: 4,
  internal: 5,
  timedOut: 124,
  canceled: 130,
} as const;

export function exitCodeForError(err: BerthError): number {
  switch (err.kind) {
    case 'usage':
    case 'config':
      return EXIT_CODES.usage;
    case 'image':
      return EXIT_CODES.image;
    case 'infra':
      return EXIT_CODES.infra;
    case 'internal':
      return EXIT_CODES.internal;
  }
}
