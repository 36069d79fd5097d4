/**
 * git's environment for a repository a tenant named: no terminal prompt, no system or user
 * configuration, no SSH agent or keys of the machine's user. Pure: the caller passes its own
 * environment (only PATH, the proxy settings and BERTH_GIT_CA_FILE are taken from it).
 */
export function gitEnvironment(env: Record<string, string | undefined>): Record<string, string> {
  const kept: Record<string, string> = {};
  for (const name of ['PATH', 'HTTPS_PROXY', 'https_proxy', 'NO_PROXY', 'no_proxy']) {
    const value = env[name];
    if (value !== undefined) kept[name] = value;
  }
  // A private forge's CA (BERTH_GIT_CA_FILE): git trusts it instead of the system's bundle.
  const caFile = env.BERTH_GIT_CA_FILE?.trim();
  return {
    PATH: '/usr/bin:/bin',
    ...kept,
    ...(caFile ? { GIT_SSL_CAINFO: caFile } : {}),
    HOME: '/nonexistent',
    GIT_TERMINAL_PROMPT: '0',
    GIT_CONFIG_NOSYSTEM: '1',
    GIT_CONFIG_GLOBAL: '/dev/null',
    GIT_SSH_COMMAND: 'ssh -o BatchMode=yes -o IdentitiesOnly=yes -o IdentityFile=/dev/null',
  };
}

/** git's own options for such a repository: no hooks, no fsmonitor command, no file:// transport. */
export function gitSafetyOptions(allowFileTransport = false): string[] {
  return [
    '-c',
    'core.hooksPath=/dev/null',
    '-c',
    'core.fsmonitor=false',
    ...(allowFileTransport ? [] : ['-c', 'protocol.file.allow=never']),
  ];
}
