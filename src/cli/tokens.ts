/**
 * `berth token create|list|revoke`: API tokens on the berth server, so that each person or script
 * has a token of its own instead of everyone sharing the admin token. The login, the client and
 * the translation of the server's refusals into berth errors are remote.ts's, handed in.
 */
import type { Command } from 'commander';
import type { ApiClient, ApiToken } from '../api/client.js';
import { BerthError } from '../domain/errors.js';
import type { Output } from './render.js';

/** Wraps an action so that a refusal of the server becomes a berth error (remote.ts's `act`). */
type Act = <A extends unknown[]>(
  fn: (...args: A) => Promise<void>,
) => (...args: A) => Promise<void>;

const ROLES = ['user', 'admin'] as const;
type Role = (typeof ROLES)[number];

function roleOf(value: string): Role {
  const role = ROLES.find((r) => r === value);
  if (!role) {
    throw new BerthError('BERTH_USAGE', `--role ${value}: a token's role is user or admin`, {
      hint: 'user manages stacks and runs; admin may also create pools and tokens.',
    });
  }
  return role;
}

function tokenLine(t: ApiToken): string {
  return `${t.id}  ${t.role.padEnd(5)}  ${t.name}  created ${t.createdAt}`;
}

/**
 * The token `given` names: its id in any letter case (ids are lowercase; run and worker ids are
 * not, and people copy their style), else its name when one token has it. Several of that name
 * (made before names were unique) are refused with their ids, as is a token of neither.
 */
export function tokenToRevoke(tokens: readonly ApiToken[], given: string): string {
  const id = given.toLowerCase();
  if (tokens.some((t) => t.id === id)) return id;
  const named = tokens.filter((t) => t.name === given);
  if (named.length === 1) return (named[0] as ApiToken).id;
  if (named.length > 1) {
    throw new BerthError(
      'BERTH_USAGE',
      `${named.length} tokens are named ${JSON.stringify(given)}: ${named.map((t) => `${t.id} (${t.role}, created ${t.createdAt})`).join(', ')}`,
      { hint: 'Give the id of the one to revoke: `berth token revoke ID`.' },
    );
  }
  throw new BerthError('BERTH_USAGE', `no token has the id or the name ${JSON.stringify(given)}`, {
    hint: '`berth token list` shows each token: its id, then its role and name.',
  });
}

function write(io: Output, json: boolean | undefined, value: unknown, human: () => string): void {
  io.stdout.write(json ? `${JSON.stringify(value)}\n` : `${human()}\n`);
}

export function registerTokens(
  program: Command,
  io: Output,
  client: () => ApiClient,
  act: Act,
): void {
  const token = program
    .command('token')
    .description('API tokens on the berth server, one per person or script (admin token only)');
  token
    .command('create')
    .description('make a token (shown this once), stored hashed on the server')
    .argument('<name>', 'who or what the token is for, e.g. ci-deploy')
    .option('--role <role>', 'user | admin', 'user')
    .option('--json')
    .action(
      act(async (name: string, o: { role: string; json?: boolean }) => {
        const created = await client().createToken({ name, role: roleOf(o.role) });
        write(
          io,
          o.json,
          created,
          () =>
            `token ${created.apiToken.id} "${created.apiToken.name}" (role ${created.apiToken.role})\n` +
            'shown this once, keep it (e.g. as BERTH_TOKEN for `berth login --server URL`):\n' +
            created.token,
        );
      }),
    );
  token
    .command('list')
    .description('the tokens: id, name, role, when made (never the token)')
    .option('--json')
    .action(
      act(async (o: { json?: boolean }) => {
        const tokens = await client().listTokens();
        write(io, o.json, tokens, () => tokens.map(tokenLine).join('\n') || 'no tokens');
      }),
    );
  token
    .command('revoke')
    .description('end a token at once (not the one you use, not the last admin token)')
    .argument('<token>', 'its id (as `berth token list` shows it, in any letter case) or its name')
    .option('--json')
    .action(
      act(async (given: string, o: { json?: boolean }) => {
        const api = client();
        const id = tokenToRevoke(await api.listTokens(), given);
        await api.revokeToken(id);
        write(io, o.json, { id, revoked: true }, () => `token ${id} revoked: it no longer works`);
      }),
    );
}
