/**
 * A stack's git source, the pure part: which of the stack's variables are berth's credentials for
 * its repository (and so stay out of the job), how the repository URL is named in messages, and
 * what a failed git command means. The I/O (temporary key files, git processes, the cache) lives
 * in src/git and src/worker.
 */
import { BerthError } from './errors.js';
import { nearVariable } from './worker-settings.js';

/** The stack variables berth reads for the checkout; none of them reaches the job. */
export const GIT_VARIABLES = {
  /** HTTPS: the token (or password), sent as HTTP Basic authentication. Secret. */
  token: 'BERTH_GIT_TOKEN',
  /** HTTPS: the user name sent with the token (default `x-access-token`, which forges accept). */
  username: 'BERTH_GIT_USERNAME',
  /** SSH: the deploy key's private key (OpenSSH or PEM text). Secret. */
  sshKey: 'BERTH_GIT_SSH_KEY',
  /** SSH: known_hosts lines pinning the server's host key (`ssh-keyscan HOST`). */
  knownHosts: 'BERTH_GIT_KNOWN_HOSTS',
} as const;

export const DEFAULT_GIT_USERNAME = 'x-access-token';

/**
 * A stack variable named like one of GIT_VARIABLES but not one (`BERTH_GIT_TOKNE`): berth does
 * not read it, and it reaches the job. Null for the real names and for names nowhere near.
 */
export function gitVariableTypo(name: string): string | null {
  const known: string[] = Object.values(GIT_VARIABLES);
  if (known.includes(name)) return null;
  const near = nearVariable(name, known, 2);
  if (near === null && !name.startsWith('BERTH_GIT_')) return null;
  return `berth reads no stack variable ${name}${near ? ` (did you mean ${near}?)` : ''}: it is not used for the checkout, and it reaches the job as a variable of its own; berth's are ${known.join(', ')}`;
}

/** Names of the variables that must be secret (their values would show in the API otherwise). */
export const SECRET_GIT_VARIABLES: readonly string[] = [GIT_VARIABLES.token, GIT_VARIABLES.sshKey];

export type GitCredentials =
  | { kind: 'none' }
  | { kind: 'token'; username: string; token: string }
  | { kind: 'ssh-key'; privateKey: string; knownHosts: string | null };

export interface StackVariable {
  name: string;
  value: string;
  secret: boolean;
}

export type RepositoryTransport = 'http' | 'ssh' | 'file' | 'git';

/** The transport a repository URL uses: `scheme://`, or the scp-like `user@host:path` of SSH. */
export function repositoryTransport(url: string): RepositoryTransport {
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(url)?.[1]?.toLowerCase();
  if (scheme === 'https' || scheme === 'http') return 'http';
  if (scheme === 'ssh' || scheme === 'git+ssh' || scheme === 'ssh+git') return 'ssh';
  if (scheme === 'file') return 'file';
  if (scheme === 'git') return 'git';
  return 'ssh';
}

/**
 * Why a repository URL must not be stored as given, or null: one that is not a URL (an address
 * whose user info has a `/` in it reads as a host and a port), a password or token written into
 * it (every reader of the stack sees its URL), or, for `http(s)://`, any user info (a token is
 * often given as the user name; BERTH_GIT_USERNAME and BERTH_GIT_TOKEN carry them). `ssh://`
 * keeps its user (the SSH login, `ssh://git@host/…`); the scp-like `git@host:path` has no other.
 */
export function repositoryUrlProblem(url: string): string | null {
  if (!/^[a-z][a-z0-9+.-]*:\/\//i.test(url)) return null;
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return "the URL's host, port or user info cannot be read (a / in a password is written %2F)";
  }
  const seen = 'which everyone who may read the stack would see';
  if (parsed.password !== '')
    return `${displayRepository(url)} has a password or token written into it, ${seen}`;
  if (parsed.username !== '' && repositoryTransport(url) === 'http')
    return `${displayRepository(url)} has a user name written into it (often a token), ${seen}`;
  // `https://user:4711/rest@host/…` parses as host `user`, port 4711: a password with a / in it.
  if (repositoryTransport(url) === 'http' && parsed.pathname.includes('@'))
    return 'the URL has an @ in its path, as a password with a / in it would (an @ in a path is written %40)';
  // `?private_token=…`, `#…`: a git remote needs neither, and a token there is as readable.
  if (repositoryTransport(url) === 'http' && (parsed.search !== '' || parsed.hash !== ''))
    return `${displayRepository(url)} has a query string or fragment (often a token: ?private_token=…), ${seen}; a repository URL needs neither`;
  return null;
}

/** The URL for messages: a user name or password written into it is replaced by `***`. */
export function displayRepository(url: string): string {
  // A URL that does not parse, or has an @ after a /, may hide user info anywhere (a / in a
  // password): all but the scheme.
  const scheme = /^[a-z][a-z0-9+.-]*:\/\//i.exec(url)?.[0];
  const rest = scheme ? url.slice(scheme.length) : '';
  if (scheme && rest.includes('@') && (!URL.canParse(url) || /\/.*@/.test(rest)))
    return `${scheme}***`;
  // Up to the last @ before the path: a password written with an unencoded @ in it is hidden too.
  const shown = url.replace(/^([a-z][a-z0-9+.-]*:\/\/)[^/]*@/i, '$1***@');
  // An HTTP(S) URL's query or fragment (a token, stored before such URLs were refused).
  return /^https?:\/\//i.test(shown) ? shown.replace(/[?#][\s\S]*$/, '?***') : shown;
}

/**
 * The scheme, host and port of an HTTP(S) URL with a trailing slash: the scope git's
 * `http.<url>.extraHeader` takes, so the token goes to the repository's host only (never to a
 * host a redirect names).
 */
export function httpCredentialScope(url: string): string {
  const match = /^(https?:\/\/)(?:[^/]*@)?([^/]+)/i.exec(url);
  if (!match) throw new Error(`not an HTTP(S) URL: ${url}`);
  return `${match[1]}${match[2]}/`;
}

/**
 * Splits a run's variables into berth's git credentials and the job's own variables. The
 * credentials must fit the URL's transport (a token for HTTPS, a deploy key for SSH) and be
 * secret; anything else is a clear error now rather than a puzzling git failure later.
 */
export function gitCredentialsFrom(
  repository: string | null,
  variables: readonly StackVariable[],
): { credentials: GitCredentials; jobVariables: StackVariable[] } {
  const named = new Map(variables.map((v) => [v.name, v]));
  const jobVariables = variables.filter(
    (v) => !(Object.values(GIT_VARIABLES) as string[]).includes(v.name),
  );
  const token = named.get(GIT_VARIABLES.token);
  const sshKey = named.get(GIT_VARIABLES.sshKey);
  const username = named.get(GIT_VARIABLES.username);
  const knownHosts = named.get(GIT_VARIABLES.knownHosts);
  for (const variable of [token, sshKey]) {
    if (variable && !variable.secret)
      throw credentialsInvalid(
        `${variable.name} is a plain variable of the stack, so the API shows its value`,
        `Set it again as a secret: berth stack env set STACK ${variable.name} --secret.`,
      );
  }
  if (!repository || (!token && !sshKey)) return { credentials: { kind: 'none' }, jobVariables };
  const transport = repositoryTransport(repository);
  const shown = displayRepository(repository);
  if (token && sshKey)
    throw credentialsInvalid(
      `the stack has both ${GIT_VARIABLES.token} and ${GIT_VARIABLES.sshKey}`,
      `Keep the one that fits ${shown}: a token for https://, a deploy key for ssh://.`,
    );
  if (token) {
    if (transport !== 'http')
      throw credentialsInvalid(
        `${GIT_VARIABLES.token} is set but ${shown} is not an https:// URL`,
        `Use the repository's https:// URL, or a deploy key in ${GIT_VARIABLES.sshKey} for SSH.`,
      );
    const user = username?.value.trim() || DEFAULT_GIT_USERNAME;
    if (/[:\r\n]/.test(user))
      throw credentialsInvalid(
        `${GIT_VARIABLES.username} ${JSON.stringify(user)} has a colon or a line break`,
        'Use the user name the git host gave with the token (no colon), or leave the variable out.',
      );
    if (/[\r\n]/.test(token.value) || token.value.trim() === '')
      throw credentialsInvalid(
        `${GIT_VARIABLES.token} is empty or has a line break`,
        'Set the token alone, without quotes or a trailing newline.',
      );
    return {
      credentials: { kind: 'token', username: user, token: token.value.trim() },
      jobVariables,
    };
  }
  if (transport !== 'ssh')
    throw credentialsInvalid(
      `${GIT_VARIABLES.sshKey} is set but ${shown} is not an SSH URL`,
      `Use the repository's ssh:// (or git@host:path) URL, or a token in ${GIT_VARIABLES.token} for https://.`,
    );
  const privateKey = (sshKey as StackVariable).value.replace(/\r\n/g, '\n').trim();
  if (
    !/^-----BEGIN [A-Z ]*PRIVATE KEY-----\n[\s\S]+\n-----END [A-Z ]*PRIVATE KEY-----$/.test(
      privateKey,
    )
  )
    throw credentialsInvalid(
      `${GIT_VARIABLES.sshKey} is not a private key (it must start with -----BEGIN … PRIVATE KEY-----)`,
      'Put the whole private key file in the variable, e.g. BERTH_GIT_SSH_KEY="$(cat deploy_key)" berth stack env set STACK BERTH_GIT_SSH_KEY --secret.',
    );
  return {
    credentials: {
      kind: 'ssh-key',
      privateKey: `${privateKey}\n`,
      knownHosts: knownHosts?.value.trim() || null,
    },
    jobVariables,
  };
}

function credentialsInvalid(message: string, hint: string): BerthError {
  return new BerthError('BERTH_GIT_CREDENTIALS_INVALID', message, { hint });
}

export type GitFailureKind =
  'auth' | 'not-found' | 'host-key-mismatch' | 'host-key-unknown' | 'ref-not-found' | 'other';

/** What a failed git command's standard error says went wrong (git 2.x and OpenSSH wording). */
export function classifyGitFailure(stderr: string): GitFailureKind {
  if (/REMOTE HOST IDENTIFICATION HAS CHANGED|Host key for \S+ has changed/i.test(stderr))
    return 'host-key-mismatch';
  if (/host key is known for|Host key verification failed/i.test(stderr)) return 'host-key-unknown';
  if (
    /Authentication failed|could not read (Username|Password)|Permission denied \((publickey|password)|returned error: 40[13]\b|HTTP Basic: Access denied|Invalid username or password/i.test(
      stderr,
    )
  )
    return 'auth';
  if (
    /repository '[^']*' not found|Repository not found|does not appear to be a git repository|repository not exported|returned error: 404\b|No such repository/i.test(
      stderr,
    )
  )
    return 'not-found';
  if (/not our ref|couldn't find remote ref|no such remote ref|unadvertised object/i.test(stderr))
    return 'ref-not-found';
  return 'other';
}

/**
 * git's closing words after a failed fetch over SSH or from a path, said whatever the cause:
 * the line before them says what went wrong.
 */
const GIT_BOILERPLATE =
  /^(fatal: Could not read from remote repository\.?|Please make sure you have the correct access rights|and the repository exists\.?)$/i;

/** The last meaningful line of git's standard error, for a message. */
export function lastGitLine(stderr: string): string {
  const lines = stderr
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l !== '' && !/^(hint|warning):/i.test(l));
  return lines.filter((l) => !GIT_BOILERPLATE.test(l)).at(-1) ?? lines.at(-1) ?? 'no output';
}

/** A failed git command as berth's error: what happened, the values, the fix. */
export function gitFailure(
  stderr: string,
  context: { repository: string; credentials: GitCredentials['kind']; what: string },
): BerthError {
  const shown = displayRepository(context.repository);
  // git quotes the URL whole: a query string (a token, in a URL stored before such were refused)
  // is hidden as it is everywhere else.
  const said = lastGitLine(stderr)
    .split(context.repository)
    .join(shown)
    .replace(/(https?:\/\/[^\s'"?#]*)[?#][^\s'"]*/gi, '$1?***');
  const host = hostOf(context.repository);
  switch (classifyGitFailure(stderr)) {
    case 'auth': {
      // git's "could not read Username … terminal prompts disabled" only means: HTTP 401.
      const why = /could not read (Username|Password)/i.test(said)
        ? 'HTTP 401: the server wants other credentials'
        : `git: ${said}`;
      return new BerthError(
        'BERTH_GIT_AUTH_FAILED',
        context.credentials === 'none'
          ? `${shown} asked for credentials and the stack has none (${why})`
          : `${shown} refused the stack's ${context.credentials === 'token' ? GIT_VARIABLES.token : GIT_VARIABLES.sshKey} (${why})`,
        {
          hint:
            context.credentials === 'ssh-key'
              ? `Add the deploy key's public half to the repository (read access), or set the right private key: berth stack env set STACK ${GIT_VARIABLES.sshKey} --secret.`
              : `Set a token with read access to the repository: berth stack env set STACK ${GIT_VARIABLES.token} --secret (and ${GIT_VARIABLES.username} if the host needs a particular user name).`,
        },
      );
    }
    case 'not-found':
      return new BerthError(
        'BERTH_GIT_REPOSITORY_NOT_FOUND',
        `${shown} is not a repository the worker can read (git: ${said})`,
        {
          hint: "Check the stack's repository URL (berth stack show STACK). Hosts answer \"not found\" for a private repository too when the credentials do not reach it: check the token's or deploy key's access.",
        },
      );
    case 'host-key-mismatch':
      return new BerthError(
        'BERTH_GIT_HOST_KEY_MISMATCH',
        `the SSH host key of ${host} does not match the stack's ${GIT_VARIABLES.knownHosts}: someone may be in between, or the server's key changed (git: ${said})`,
        {
          hint: `Check the server's key with its operator (${keyscanOf(context.repository)} shows what answers now); if it really changed, set the new line: berth stack env set STACK ${GIT_VARIABLES.knownHosts}="…".`,
        },
      );
    case 'host-key-unknown':
      return new BerthError(
        'BERTH_GIT_HOST_KEY_UNKNOWN',
        `the stack's ${GIT_VARIABLES.knownHosts} has no host key for ${host}, and berth does not accept unknown SSH hosts (git: ${said})`,
        {
          hint: `Pin the server's key: berth stack env set STACK ${GIT_VARIABLES.knownHosts}="$(${keyscanOf(context.repository)})" after checking it with the server's operator.`,
        },
      );
    case 'ref-not-found':
      return new BerthError(
        'BERTH_GIT_COMMIT_NOT_FOUND',
        `${context.what} is not in ${shown} (git: ${said})`,
        {
          hint: "Check the stack's branch and the run's commit (a force-push may have removed it); trigger the run again on a commit the repository has.",
        },
      );
    default:
      return new BerthError(
        'BERTH_GIT_FAILED',
        `git could not fetch ${context.what} from ${shown}: ${said}`,
      );
  }
}

/** The SSH server of a repository URL: its host and port (null: the default, 22). */
export function sshServerOf(url: string): { host: string; port: string | null } {
  const scheme = /^[a-z][a-z0-9+.-]*:\/\/(?:[^/]*@)?(\[[^\]]+\]|[^/:]+)(?::(\d+))?/i.exec(url);
  if (scheme) return { host: scheme[1] as string, port: scheme[2] ?? null };
  const scp = /^(?:[^:/]*@)?([^:/@]+):/.exec(url);
  return { host: scp?.[1] ?? url, port: null };
}

/** `host` or `[host]:port`, as known_hosts and ssh's messages name a server. */
function hostOf(url: string): string {
  const { host, port } = sshServerOf(url);
  return port ? `[${host}]:${port}` : host;
}

/** The ssh-keyscan command that shows a server's host keys. */
function keyscanOf(url: string): string {
  const { host, port } = sshServerOf(url);
  return port ? `ssh-keyscan -p ${port} ${host}` : `ssh-keyscan ${host}`;
}
