/**
 * The commands that talk to a berth server through the typed API client: `berth login`,
 * `berth stack …`, `berth runs …`, `berth pool …`, and `berth worker list|drain|undrain`. The
 * server and token come from BERTH_SERVER / BERTH_TOKEN, else from `berth login`'s file (0600).
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import path from 'node:path';
import type { Command } from 'commander';
import { ApiClient, ApiClientError, type Run, type Stack } from '../api/client.js';
import { BerthError } from '../domain/errors.js';
import { fetchTrusting, trustedCas } from '../net/tls-files.js';
import type { RunStateName } from '../domain/run-state.js';
import type { Output } from './render.js';
import { registerTokens } from './tokens.js';

interface Login {
  server: string;
  token: string;
  /** The CA to trust for the server (a file), beside the system's. */
  caCert?: string;
}

export function loginFile(env: NodeJS.ProcessEnv): string {
  const configHome =
    env.XDG_CONFIG_HOME?.trim() || path.join(env.HOME?.trim() || homedir(), '.config');
  return path.join(configHome, 'berth', 'login.json');
}

function readLogin(env: NodeJS.ProcessEnv): Login {
  // An empty variable counts as unset (as `BERTH_SERVER= berth …` means).
  const server = env.BERTH_SERVER?.trim() || undefined;
  const token = env.BERTH_TOKEN?.trim() || undefined;
  const caCert = env.BERTH_CA_CERT?.trim() || undefined;
  if (server && token) return { server, token, ...(caCert ? { caCert } : {}) };
  let saved: Partial<Login> = {};
  try {
    saved = JSON.parse(readFileSync(loginFile(env), 'utf8')) as Partial<Login>;
  } catch {
    // No login yet: said below.
  }
  const login = {
    server: server ?? saved.server,
    token: token ?? saved.token,
    caCert: caCert ?? saved.caCert,
  };
  if (!login.server || !login.token) {
    throw new BerthError('BERTH_USAGE', 'no berth server to talk to', {
      hint: 'Run `berth login --server URL` (it reads the token from BERTH_TOKEN or standard input), or set BERTH_SERVER and BERTH_TOKEN.',
    });
  }
  return login as Login;
}

/** The typed client for a login: the server verified against its CA when one was given. */
function apiClient(login: Login, env: NodeJS.ProcessEnv): ApiClient {
  return new ApiClient(login.server, login.token, fetchTrusting(trustedCas(login.caCert, env)));
}

/**
 * Fixes for the command line, for refusals whose answer names no fix or one for API clients (the
 * OpenAPI document): what to run to see what exists or what is accepted.
 */
const COMMAND_LINE_FIXES: Record<string, string> = {
  BAD_REQUEST:
    'Correct the value named above; `berth COMMAND --help` (e.g. `berth stack create --help`) lists the options and the values they take.',
  NOT_FOUND:
    'Check the name or id: `berth stack list`, `berth runs list`, `berth pool list` and `berth worker list` show what exists.',
  ALREADY_EXISTS:
    'Pick another id, or use the one that exists (`berth stack show ID`, `berth pool list`).',
  RUN_TRANSITION_INVALID:
    '`berth runs show RUN` shows its state: only an UNCONFIRMED run can be confirmed or discarded, and only a run that has not ended can be cancelled.',
};

/** The server's refusal as a berth error (its code kept), or an unreachable server. */
function asBerthError(err: unknown): unknown {
  if (!(err instanceof ApiClientError)) return err;
  if (err.code === 'SERVER_NOT_TRUSTED')
    return new BerthError('BERTH_SERVER_NOT_TRUSTED', err.message, { cause: err });
  if (err.status === 0)
    return new BerthError('BERTH_SERVER_UNREACHABLE', err.message, {
      cause: err,
      ...(err.hint ? { hint: err.hint } : {}),
    });
  const hint =
    (err.code === 'BAD_REQUEST' ? undefined : err.hint) ?? COMMAND_LINE_FIXES[err.code] ?? null;
  return new BerthError('BERTH_SERVER_REFUSED', `${err.message} [${err.code}]`, {
    cause: err,
    ...(hint ? { hint } : {}),
  });
}

function print(io: Output, json: boolean | undefined, value: unknown, human: () => string): void {
  io.stdout.write(json ? `${JSON.stringify(value)}\n` : `${human()}\n`);
}

function runLine(run: Run): string {
  return `${run.id}  ${run.type.padEnd(8)} ${run.state.padEnd(15)} ${run.stack}${run.commit ? `  ${run.commit.slice(0, 12)}` : ''}${run.stateReason ? `  (${run.stateReason})` : ''}`;
}

function stackText(stack: Stack): string {
  const lines = [
    `${stack.id}  pool ${stack.pool}`,
    `  source        ${stack.repository ? `${stack.repository} (${stack.branch ?? 'main'})` : stack.localDir}`,
    `  project root  ${stack.projectRoot || '.'}`,
    `  tool          ${stack.tool ?? 'default'}${stack.toolVersion ? ` ${stack.toolVersion}` : ''}`,
    `  runner image  ${stack.runnerImage ?? "the pool's or berth's default"}`,
    `  auto-deploy   ${stack.autoDeploy ? 'yes' : 'no'}`,
  ];
  if (stack.labels.length) lines.push(`  labels        ${stack.labels.join(', ')}`);
  for (const v of stack.variables)
    lines.push(`  env           ${v.name}${v.secret ? ' (secret, set)' : `=${v.value ?? ''}`}`);
  return lines.join('\n');
}

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

async function readStdin(): Promise<string> {
  if (process.stdin.isTTY) return askHidden('token (not shown): ');
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8').split('\n')[0]?.trim() ?? '';
}

/**
 * Asks on the terminal for one line without echoing it (a token pasted there stays off the
 * screen and out of the terminal's scroll-back). Ctrl-C or Ctrl-D gives an empty answer.
 */
function askHidden(prompt: string): Promise<string> {
  const input = process.stdin;
  process.stderr.write(prompt);
  input.setRawMode(true);
  input.resume();
  return new Promise((resolve) => {
    let typed = '';
    const done = (answer: string): void => {
      input.off('data', onData);
      input.setRawMode(false);
      input.pause();
      process.stderr.write('\n');
      resolve(answer.trim());
    };
    const onData = (chunk: Buffer): void => {
      for (const char of chunk.toString('utf8')) {
        if (char === '\r' || char === '\n') return done(typed);
        if (char === '\u0003' || char === '\u0004') return done('');
        if (char === '\u007f' || char === '\b') typed = typed.slice(0, -1);
        else typed += char;
      }
    };
    input.on('data', onData);
  });
}

/**
 * Follows a run's log and states live (server-sent events, resumed after a cut without a line
 * lost or doubled) until it ends; returns the final run. A plan waiting for confirmation is shown,
 * then `decide` asks (a terminal) or says how to decide; following goes on until the run ends (or
 * the user stops following: Ctrl-C, which leaves the run as it is).
 */
export async function followRun(
  client: ApiClient,
  id: string,
  io: Output,
  decide: (run: Run) => Promise<void> = (run) => Promise.resolve(sayHowToDecide(run, io)),
): Promise<Run> {
  let state: RunStateName | null = null;
  let last: Run | null = null;
  let deciding: Promise<void> = Promise.resolve();
  let failed: { error: unknown } | null = null;
  // A decision that failed ends the following: the run would otherwise wait for ever.
  const stop = new AbortController();
  try {
    await client.followLogs(
      id,
      {
        log: (chunk) => io.stdout.write(chunk.text),
        run: (run) => {
          last = run;
          if (run.state === state) return;
          state = run.state;
          io.stderr.write(
            `berth: run ${id} ${state}${run.stateReason ? ` (${run.stateReason})` : ''}\n`,
          );
          if (state !== 'UNCONFIRMED') return;
          deciding = deciding
            .then(() => decide(run))
            .catch((error: unknown) => {
              failed = { error };
              stop.abort();
            });
        },
      },
      { signal: stop.signal },
    );
  } catch (err) {
    if (!failed) throw err;
  }
  await deciding;
  if (failed) throw (failed as { error: unknown }).error;
  return last ?? (await client.getRun(id));
}

function planLine(run: Run): string {
  return run.plan
    ? `${run.plan.add} to add, ${run.plan.change} to change, ${run.plan.destroy} to destroy${run.plan.replace ? ` (${run.plan.replace} replaced)` : ''}`
    : 'no plan summary';
}

function sayHowToDecide(run: Run, io: Output): void {
  io.stderr.write(
    `berth: the plan of run ${run.id} waits for confirmation (${planLine(run)}); apply it with \`berth runs confirm ${run.id}\`, or \`berth runs discard ${run.id}\`. Still following (Ctrl-C stops following; the run waits).\n`,
  );
}

/** On a terminal: y applies the plan, anything else discards it (as `berth run` asks). */
async function askToConfirm(client: ApiClient, run: Run, io: Output): Promise<void> {
  io.stderr.write(
    `berth: run ${run.id} is UNCONFIRMED (${planLine(run)}). Apply this plan? [y/N] (N discards) `,
  );
  const { createInterface } = await import('node:readline');
  const lines = createInterface({ input: process.stdin });
  // Decided elsewhere meanwhile (another terminal, the API): the question closes unanswered.
  let elsewhere = false;
  const watch = setInterval(() => {
    void client.getRun(run.id).then(
      (now) => {
        if (now.state === 'UNCONFIRMED') return;
        elsewhere = true;
        lines.close();
      },
      () => undefined,
    );
  }, 1000);
  const answer = await new Promise<string>((resolve) => {
    lines.once('line', resolve);
    lines.once('close', () => resolve(''));
  });
  clearInterval(watch);
  lines.close();
  if (elsewhere) {
    io.stderr.write('\nberth: the run was decided elsewhere\n');
    return;
  }
  const yes = /^y(es)?$/i.test(answer.trim());
  try {
    await client.decide(run.id, yes ? 'confirm' : 'discard');
  } catch (err) {
    // Someone else decided (or canceled) meanwhile: following shows what happened.
    if (!(err instanceof ApiClientError) || err.status !== 409) throw err;
    io.stderr.write(`berth: ${err.message}\n`);
  }
}

export function registerRemote(
  program: Command,
  io: Output,
  env: NodeJS.ProcessEnv,
  setExit: (code: number) => void,
): void {
  const client = (): ApiClient => apiClient(readLogin(env), env);
  const act =
    <A extends unknown[]>(fn: (...args: A) => Promise<void>) =>
    async (...args: A): Promise<void> => {
      try {
        await fn(...args);
      } catch (err) {
        throw asBerthError(err);
      }
    };

  program
    .command('login')
    .description(
      'remember a berth server and a token (from BERTH_TOKEN, asked for on a terminal, or read from standard input)',
    )
    .requiredOption('--server <url>', "the server's URL, e.g. http://127.0.0.1:8080")
    .option(
      '--ca-cert <file>',
      "a CA to trust for the server's TLS certificate, beside the system's (default: $BERTH_CA_CERT)",
    )
    .action(
      act(async (opts: { server: string; caCert?: string }) => {
        const token = env.BERTH_TOKEN?.trim() || (await readStdin());
        if (!token) throw new BerthError('BERTH_USAGE', 'no token: set BERTH_TOKEN or pipe it in');
        const caFile = opts.caCert ?? env.BERTH_CA_CERT?.trim();
        const caCert = caFile ? path.resolve(caFile) : undefined;
        const login: Login = { server: opts.server, token, ...(caCert ? { caCert } : {}) };
        await apiClient(login, env).listStacks();
        const file = loginFile(env);
        mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
        writeFileSync(file, `${JSON.stringify(login)}\n`, { mode: 0o600 });
        io.stderr.write(`berth: logged in to ${opts.server} (saved in ${file})\n`);
      }),
    );

  const stack = program.command('stack').description('stacks on the berth server');
  stack
    .command('create')
    .argument('<id>')
    .option('--repo <url>', 'git repository (https:// or ssh://)')
    .option('--branch <name>', 'branch of the repository', 'main')
    .option('--dir <path>', "a directory on the server's machine instead of a repository")
    .requiredOption('--pool <id>', 'worker pool')
    .option('--project-root <path>', 'directory of the stack inside the source')
    .option('--tool <tool>', 'TERRAFORM_FOSS | OPEN_TOFU | CUSTOM')
    .option('--tool-version <version>')
    .option('--runner-image <ref>')
    .option('--label <label>', 'repeatable', collect, [])
    .option('--auto-deploy')
    .option('--json')
    .action(
      act(
        async (
          id: string,
          o: {
            repo?: string;
            branch: string;
            dir?: string;
            pool: string;
            projectRoot?: string;
            tool?: string;
            toolVersion?: string;
            runnerImage?: string;
            label: string[];
            autoDeploy?: boolean;
            json?: boolean;
          },
        ) => {
          const created = await client().createStack({
            id,
            pool: o.pool,
            ...(o.repo ? { repository: o.repo, branch: o.branch } : {}),
            ...(o.dir ? { localDir: path.resolve(o.dir) } : {}),
            ...(o.projectRoot ? { projectRoot: o.projectRoot } : {}),
            ...(o.tool ? { tool: o.tool as 'OPEN_TOFU' } : {}),
            ...(o.toolVersion ? { toolVersion: o.toolVersion } : {}),
            ...(o.runnerImage ? { runnerImage: o.runnerImage } : {}),
            labels: o.label,
            autoDeploy: o.autoDeploy === true,
          });
          print(io, o.json, created, () => stackText(created));
        },
      ),
    );
  stack
    .command('list')
    .option('--json')
    .action(
      act(async (o: { json?: boolean }) => {
        const stacks = await client().listStacks();
        print(
          io,
          o.json,
          stacks,
          () => stacks.map((s) => `${s.id}  pool ${s.pool}`).join('\n') || 'no stacks',
        );
      }),
    );
  stack
    .command('show')
    .argument('<id>')
    .option('--json')
    .action(
      act(async (id: string, o: { json?: boolean }) => {
        const found = await client().getStack(id);
        print(io, o.json, found, () => stackText(found));
      }),
    );
  stack
    .command('delete')
    .argument('<id>')
    .action(
      act(async (id: string) => {
        await client().deleteStack(id);
        io.stderr.write(`berth: stack ${id} deleted\n`);
      }),
    );
  const stackEnv = stack.command('env').description("a stack's environment variables");
  stackEnv
    .command('set')
    .argument('<id>')
    .argument('<name[=value]>', "NAME alone takes the value from berth's environment")
    .option('--secret', 'write-only, sealed at rest, masked in every log')
    .action(
      act(async (id: string, pair: string, o: { secret?: boolean }) => {
        const eq = pair.indexOf('=');
        const name = eq < 0 ? pair : pair.slice(0, eq);
        const value = eq < 0 ? env[name] : pair.slice(eq + 1);
        if (value === undefined)
          throw new BerthError('BERTH_USAGE', `${name} is not set in berth's environment`, {
            hint: `Export ${name} first (keeps the value out of the command line), or pass ${name}=VALUE.`,
          });
        await client().setVariable(id, name, value, o.secret === true);
        io.stderr.write(`berth: ${name} set on stack ${id}${o.secret ? ' (secret)' : ''}\n`);
      }),
    );
  stackEnv
    .command('unset')
    .argument('<id>')
    .argument('<name>')
    .action(
      act(async (id: string, name: string) => {
        await client().unsetVariable(id, name);
        io.stderr.write(`berth: ${name} unset on stack ${id}\n`);
      }),
    );
  stack
    .command('trigger')
    .argument('<id>')
    .option('--type <type>', 'task | proposed | tracked | destroy', 'proposed')
    .option('--commit <sha>', 'the commit to run (default: the branch head now)')
    .option('--follow', 'show the log and states until the run ends')
    .option('--json')
    .action(
      act(
        async (
          id: string,
          o: { type: string; commit?: string; follow?: boolean; json?: boolean },
        ) => {
          const api = client();
          const run = await api.trigger(id, {
            type: o.type as 'proposed',
            ...(o.commit ? { commit: o.commit } : {}),
          });
          if (!o.follow) {
            print(io, o.json, run, () => runLine(run));
            return;
          }
          const end = await followRun(api, run.id, io, (waiting) =>
            process.stdin.isTTY
              ? askToConfirm(api, waiting, io)
              : Promise.resolve(sayHowToDecide(waiting, io)),
          );
          setExit(end.state === 'FINISHED' || end.state === 'DISCARDED' ? 0 : 1);
        },
      ),
    );

  const runs = program.command('runs').description('runs on the berth server');
  runs
    .command('list')
    .option('--stack <id>')
    .option('--json')
    .action(
      act(async (o: { stack?: string; json?: boolean }) => {
        const list = await client().listRuns({ ...(o.stack ? { stack: o.stack } : {}), limit: 50 });
        print(io, o.json, list, () => list.map(runLine).join('\n') || 'no runs');
      }),
    );
  runs
    .command('show')
    .argument('<run>')
    .option('--json')
    .action(
      act(async (id: string, o: { json?: boolean }) => {
        const run = await client().getRun(id);
        print(io, o.json, run, () =>
          [
            runLine(run),
            ...(run.image.reference
              ? [
                  `  image  ${run.image.reference}${run.image.digest ? ` (${run.image.digest})` : ''}`,
                ]
              : []),
            ...(run.worker ? [`  worker ${run.worker}`] : []),
            ...(run.plan
              ? [
                  `  plan   ${run.plan.add} to add, ${run.plan.change} to change, ${run.plan.destroy} to destroy`,
                ]
              : []),
            ...(run.states ?? []).map((s) => `  ${s.at}  ${s.state}`),
          ].join('\n'),
        );
      }),
    );
  runs
    .command('logs')
    .argument('<run>')
    .option('-f, --follow', 'keep showing output until the run ends')
    .action(
      act(async (id: string, o: { follow?: boolean }) => {
        const api = client();
        if (o.follow) {
          await followRun(api, id, io);
          return;
        }
        let after = 0;
        for (;;) {
          const log = await api.logs(id, after);
          for (const chunk of log.chunks) io.stdout.write(chunk.text);
          if (log.chunks.length === 0) break;
          after = log.next;
        }
      }),
    );
  for (const decision of ['confirm', 'discard', 'cancel'] as const) {
    runs
      .command(decision)
      .argument('<run>')
      .action(
        act(async (id: string) => {
          const run = await client().decide(id, decision);
          io.stdout.write(`${runLine(run)}\n`);
        }),
      );
  }

  const pool = program.command('pool').description('worker pools on the berth server');
  pool
    .command('create')
    .argument('<id>')
    .requiredOption('--kind <kind>', 'public | private')
    .option('--allowed-registries <list>', 'public pools: allow-list, e.g. default,quay.io')
    .option('--default-image <ref>')
    .option('--pull <policy>', 'always | if-not-present | never')
    .option('--json')
    .action(
      act(
        async (
          id: string,
          o: {
            kind: string;
            allowedRegistries?: string;
            defaultImage?: string;
            pull?: string;
            json?: boolean;
          },
        ) => {
          const created = await client().createPool({
            id,
            kind: o.kind as 'private',
            ...(o.allowedRegistries
              ? { allowList: o.allowedRegistries.split(',').map((s) => s.trim()) }
              : {}),
            ...(o.defaultImage ? { defaultImage: o.defaultImage } : {}),
            ...(o.pull ? { pullPolicy: o.pull as 'never' } : {}),
          });
          print(
            io,
            o.json,
            created,
            () =>
              `pool ${created.pool.id} (${created.pool.kind})\npool token (shown once; give it to the pool's workers as BERTH_POOL_TOKEN): ${created.token}`,
          );
        },
      ),
    );
  pool
    .command('list')
    .option('--json')
    .action(
      act(async (o: { json?: boolean }) => {
        const pools = await client().listPools();
        print(io, o.json, pools, () =>
          pools
            .map((p) => `${p.id}  ${p.kind}${p.defaultImage ? `  ${p.defaultImage}` : ''}`)
            .join('\n'),
        );
      }),
    );
  pool
    .command('rotate-token')
    .argument('<id>')
    .action(
      act(async (id: string) => {
        const rotated = await client().rotatePoolToken(id);
        io.stdout.write(
          `new pool token for ${id} (the old one no longer works): ${rotated.token}\n`,
        );
      }),
    );
  registerTokens(program, io, client, act);
}

/** `berth worker list|drain|undrain`: the server's view of its workers. */
export async function workerAdmin(
  verb: string,
  id: string | undefined,
  json: boolean | undefined,
  io: Output,
  env: NodeJS.ProcessEnv,
): Promise<void> {
  const api = apiClient(readLogin(env), env);
  try {
    if (verb === 'list') {
      const workers = await api.listWorkers();
      print(
        io,
        json,
        workers,
        () =>
          workers
            .map(
              (w) =>
                `${w.id}  ${w.pool}  ${w.status.padEnd(7)} ${w.host}  last heartbeat ${w.lastHeartbeatAt}${w.runs.length ? `  running ${w.runs.join(', ')}` : ''}`,
            )
            .join('\n') || 'no workers',
      );
      return;
    }
    if ((verb === 'drain' || verb === 'undrain') && id) {
      const worker = await api.setDrained(id, verb === 'drain');
      print(io, json, worker, () => `${worker.id}  ${worker.status}`);
      return;
    }
  } catch (err) {
    throw asBerthError(err);
  }
  throw new BerthError(
    'BERTH_USAGE',
    `berth worker ${verb}${id ? ` ${id}` : ''}: use list, drain ID or undrain ID`,
  );
}
