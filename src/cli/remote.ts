/**
 * The commands that talk to a berth server through the typed API client: `berth login`,
 * `berth stack …`, `berth runs …`, `berth pool …`, and `berth worker list|drain|undrain`. The
 * server and token come from BERTH_SERVER / BERTH_TOKEN, else from `berth login`'s file (0600).
 */
import { existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import path from 'node:path';
import { Option, type Command } from 'commander';
import {
  ApiClient,
  ApiClientError,
  ANSWER_UNEXPECTED,
  type LogChunk,
  type Pool,
  type Run,
  type Stack,
  type Worker,
} from '../api/client.js';
import { BerthError } from '../domain/errors.js';
import { stackImageRefusal } from '../domain/pool-policy.js';
import { gitVariableTypo } from '../domain/git-source.js';
import { parseServerAddress } from '../domain/server-address.js';
import { parseWorkflowTool, TOOL_SPELLINGS, type WorkflowTool } from '../domain/runtime-config.js';
import { fetchTrusting, trustedCas } from '../net/tls-files.js';
import { isTerminal, type RunStateName } from '../domain/run-state.js';
import { APPLY_QUESTION, appliesPlan } from './apply-question.js';
import type { Output } from './render.js';
import { registerTokens } from './tokens.js';
import { shortSecretWarnings } from '../domain/log-masker.js';

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
  const file = loginFile(env);
  let saved: Partial<Login> = {};
  try {
    saved = JSON.parse(readFileSync(file, 'utf8')) as Partial<Login>;
  } catch {
    // No login yet: said by loginFrom if BERTH_SERVER and BERTH_TOKEN do not make up for it.
  }
  return loginFrom(env, saved, file);
}

/**
 * The login a remote command uses: BERTH_SERVER, BERTH_TOKEN and BERTH_CA_CERT over what `berth
 * login` saved in `file`; the server's address as every client reads it. What is missing is said
 * with how to give it.
 */
export function loginFrom(env: NodeJS.ProcessEnv, saved: Partial<Login>, file: string): Login {
  // An empty variable counts as unset (as `BERTH_SERVER= berth …` means).
  const fromEnv = env.BERTH_SERVER?.trim() || undefined;
  // Both given: the saved login (its CA too) may be another server's.
  let stored = fromEnv && env.BERTH_TOKEN?.trim() ? {} : saved;
  // The saved token goes only to the server it was saved for: BERTH_SERVER naming another server
  // must not be handed it (nor its CA trusted for it).
  const elsewhere = fromEnv !== undefined && stored.token && !sameServer(fromEnv, stored.server);
  if (elsewhere) stored = {};
  const given = fromEnv ?? (stored.server || undefined);
  const token = env.BERTH_TOKEN?.trim() || stored.token || undefined;
  const caCert = env.BERTH_CA_CERT?.trim() || stored.caCert || undefined;
  if (!given && !token) {
    throw new BerthError('BERTH_USAGE', 'no berth server to talk to', {
      hint: 'Run `berth login --server URL` (it reads the token from BERTH_TOKEN or standard input), or set BERTH_SERVER and BERTH_TOKEN.',
    });
  }
  if (!given) {
    throw new BerthError(
      'BERTH_USAGE',
      'no berth server to talk to: a token is given, but no server',
      {
        hint: 'Set BERTH_SERVER to the address berth server printed (e.g. http://127.0.0.1:8080), or run `berth login --server URL` to save it.',
      },
    );
  }
  const server = parseServerAddress(
    given,
    fromEnv ? 'BERTH_SERVER' : `the server saved by berth login in ${file}`,
  );
  if (!token) {
    const why = elsewhere ? ` (the login saved in ${file} is for another server)` : '';
    throw new BerthError('BERTH_USAGE', `no token for the berth server at ${server}${why}`, {
      hint: `Set BERTH_TOKEN to your API token (the admin token berth server printed, or one \`berth token create\` made), or run \`berth login --server ${server}\` once with the token in BERTH_TOKEN or on standard input to save it.`,
    });
  }
  return { server, token, ...(caCert ? { caCert } : {}) };
}

/** Whether two addresses name the same server (as read for a request); unreadable: not. */
function sameServer(a: string, b: string | undefined): boolean {
  if (!b) return false;
  try {
    return parseServerAddress(a, 'BERTH_SERVER') === parseServerAddress(b, 'the saved login');
  } catch {
    return false;
  }
}

/** The CA file a command's client trusts its server with (for the commands it suggests). */
const caCertOf = new WeakMap<ApiClient, string>();

/** The typed client for a login: the server verified against its CA when one was given. */
function apiClient(login: Login, env: NodeJS.ProcessEnv, io: Output): ApiClient {
  const client = new ApiClient(
    login.server,
    login.token,
    fetchTrusting(trustedCas(login.caCert, env)),
  );
  client.onSlowAnswer = (message) => io.stderr.write(`berth: ${message}\n`);
  // The CA the client trusts (loginFrom has put BERTH_CA_CERT there already).
  if (login.caCert) caCertOf.set(client, login.caCert);
  return client;
}

/**
 * The fix of a value the server refused (BAD_REQUEST): the help of `words` (`berth stack
 * create`), or, not knowing the command, of any (main.ts puts in the command that was run).
 */
export function refusedValueFix(words?: string): string {
  return words
    ? `Correct the value named above; \`${words} --help\` lists the options and the values they take.`
    : 'Correct the value named above; `berth COMMAND --help` (e.g. `berth stack create --help`) lists the options and the values they take.';
}

/**
 * Fixes for the command line, for refusals whose answer names no fix or one for API clients (the
 * OpenAPI document): what to run to see what exists or what is accepted.
 */
const COMMAND_LINE_FIXES: Record<string, string> = {
  BAD_REQUEST: refusedValueFix(),
  NOT_FOUND:
    "Check the name or id: `berth stack list`, `berth runs list`, `berth pool list` and `berth worker list` show what exists (`berth stack show ID` a stack's variables).",
  ALREADY_EXISTS:
    'Pick another id, or use the one that exists: `berth stack list` and `berth pool list` show them; `berth stack update ID` and `berth pool update ID` change their settings.',
  RUN_TRANSITION_INVALID:
    '`berth runs show RUN` shows its state: only an UNCONFIRMED run can be confirmed or discarded, and only a run that has not ended can be cancelled.',
  POOL_IN_USE:
    "`berth stack list` shows the stacks and their pools: move the pool's stacks (`berth stack update ID --pool POOL`) or delete them; `berth worker list` shows its workers: stop those online first. A pool that ran runs of stacks since moved stays while those stacks (and their history) do.",
  // A server before its answer named the run (its own hint wins: it names the command).
  STACK_HAS_RUNS:
    "Cancel the run named above (`berth runs cancel RUN`; `berth runs list --stack ID` shows the stack's runs) or wait for it to end, then delete the stack again.",
  BRANCH_NOT_FOUND:
    'Push the branch to the repository, or point the stack at one it has (`berth stack update ID --branch NAME`); `berth stack trigger ID --commit SHA` runs a given commit.',
  IMAGE_NOT_ALLOWED:
    "Give the stack an image from a registry on the pool's allow-list (`berth stack update ID --runner-image REF`, or that option of `berth stack create`), put it in a private pool (`--pool POOL`), or ask the pool's operator to allow-list the registry named above (`berth pool update POOL --allowed-registries LIST`).",
};

/**
 * Codes whose hint from the server speaks to API clients (fields, PATCH): the fix above wins,
 * unless the server's hint names the command itself (it then knows the command-line fix).
 */
const API_CLIENT_HINTS = new Set(['BAD_REQUEST', 'BRANCH_NOT_FOUND', 'IMAGE_NOT_ALLOWED']);

function speaksToApiClients(err: ApiClientError): boolean {
  return API_CLIENT_HINTS.has(err.code) && !(err.hint ?? '').includes('`berth ');
}

/** The API's fields that the command line sets with an option of another name. */
const OPTION_OF_FIELD: Record<string, string> = {
  repository: '--repo',
  localDir: '--dir',
  projectRoot: '--project-root',
  toolVersion: '--tool-version',
  runnerImage: '--runner-image',
  labels: '--label',
  autoDeploy: '--auto-deploy',
  allowList: '--allowed-registries',
  defaultImage: '--default-image',
  pullPolicy: '--pull',
};

/**
 * A refusal that names the API's field it starts with (`runnerImage: invalid image reference`,
 * `labels.1 is not valid`), said with the option the user gave (`--runner-image`,
 * `--label (its value 2)`); the command line has no null to give.
 */
function asOptionNames(message: string): string {
  return message
    .replace(/^([a-zA-Z]+)((?:\.\d+)?)(?=[: ])/, (whole, field: string, index: string) => {
      const option = OPTION_OF_FIELD[field];
      if (!option) return whole;
      return index ? `${option} (its value ${Number(index.slice(1)) + 1})` : option;
    })
    .replace(/ \(or null\)$/, '');
}

/** The server's refusal as a berth error (its code kept), or an unreachable server. */
function asBerthError(err: unknown, env: NodeJS.ProcessEnv): unknown {
  if (!(err instanceof ApiClientError)) return err;
  // A token refused while BERTH_TOKEN is set: logging in again would change nothing, since the
  // variable wins over the saved login.
  if (err.code === 'UNAUTHENTICATED' && env.BERTH_TOKEN?.trim())
    return new BerthError('BERTH_SERVER_REFUSED', `${err.message} [${err.code}]`, {
      cause: err,
      hint: 'The token comes from BERTH_TOKEN, which wins over the login `berth login` saved: set it to a valid token (the admin token, or one `berth token create` made), or unset it to use the saved login.',
    });
  // Not berth's answer: a proxy's error page (5xx) is a server out of reach, worth another try.
  if (err.code === ANSWER_UNEXPECTED)
    return new BerthError(
      err.status >= 500 ? 'BERTH_SERVER_UNREACHABLE' : 'BERTH_SERVER_ANSWER_UNEXPECTED',
      err.message,
      { cause: err, ...(err.status >= 500 && err.hint ? { hint: err.hint } : {}) },
    );
  if (err.code === 'SERVER_NOT_TRUSTED')
    return new BerthError('BERTH_SERVER_NOT_TRUSTED', err.message, { cause: err });
  if (err.status === 0)
    return new BerthError('BERTH_SERVER_UNREACHABLE', err.message, {
      cause: err,
      ...(err.hint ? { hint: err.hint } : {}),
    });
  // The server away for a while (its database, a restart): worth another try soon. (A 500 is
  // a bug of the server's, said with its code as a refusal.)
  if (err.status === 502 || err.status === 503 || err.status === 504)
    return new BerthError('BERTH_SERVER_UNAVAILABLE', `${err.message} [${err.code}]`, {
      cause: err,
      ...(err.hint ? { hint: err.hint } : {}),
    });
  const hint =
    (speaksToApiClients(err) ? undefined : err.hint) ?? COMMAND_LINE_FIXES[err.code] ?? null;
  const message = err.code === 'BAD_REQUEST' ? asOptionNames(err.message) : err.message;
  return new BerthError('BERTH_SERVER_REFUSED', `${message} [${err.code}]`, {
    cause: err,
    ...(hint ? { hint } : {}),
  });
}

function print(io: Output, json: boolean | undefined, value: unknown, human: () => string): void {
  if (json) printJson(io, value);
  else io.stdout.write(`${human()}\n`);
}

/** A delete's answer: `{"id", "deleted": true}` with `--json`, else a line on stderr. */
function printDeleted(io: Output, json: boolean | undefined, what: string, id: string): void {
  if (json) printJson(io, { id, deleted: true });
  else io.stderr.write(`berth: ${what} ${id} deleted\n`);
}

/** `--json`: one object (or array) on one line of stdout. */
function printJson(io: Output, value: unknown): void {
  io.stdout.write(`${JSON.stringify(value)}\n`);
}

function runLine(run: Run): string {
  const why = reasonText(run);
  return `${run.id}  ${run.type.padEnd(8)} ${run.state.padEnd(15)} ${run.stack}${run.commit ? `  ${run.commit.slice(0, 12)}` : ''}${why ? `  (${why})` : ''}`;
}

/** Why the run is as it is: a stop on its way to the worker first, else the state's reason. */
function reasonText(run: Run): string | null {
  if (run.stopRequested && !isTerminal(run.state)) return `stopping: ${run.stopRequested.reason}`;
  return run.stateReason;
}

/** What a stack without a tool of its own runs (launcher/run-config.ts, docs/workflow.md). */
const DEFAULT_TOOL =
  "OpenTofu, newest stable unless a version is set, when the source's .berth/config.yml names no tool; a task run gets none";

function stackText(stack: Stack): string {
  const lines = [
    `${stack.id}  pool ${stack.pool}`,
    `  source        ${stack.repository ? `${stack.repository} (${stack.branch ?? 'main'})` : stack.localDir}`,
    `  project root  ${stack.projectRoot || '.'}`,
    `  tool          ${stack.tool ?? 'default'}${stack.toolVersion ? ` ${stack.toolVersion}` : ''}${stack.tool ? '' : ` (${DEFAULT_TOOL})`}`,
    `  runner image  ${stack.runnerImage ?? "the pool's or berth's default"}`,
    `  auto-deploy   ${stack.autoDeploy ? 'yes' : 'no'}`,
  ];
  if (stack.labels.length) lines.push(`  labels        ${stack.labels.join(', ')}`);
  for (const v of stack.variables)
    lines.push(`  env           ${v.name}${v.secret ? ' (secret, set)' : `=${v.value ?? ''}`}`);
  return lines.join('\n');
}

function collect(value: string, previous: string[] = []): string[] {
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

/** How a follower shows what it hears: the job's text and berth's lines, or `--json` events. */
interface FollowView {
  log(chunk: LogChunk): void;
  /** The run changed state. */
  state(run: Run): void;
  /** The run has ended (the last thing shown). */
  ended(run: Run): void;
}

/** Log text on stdout as it came; states on stderr. */
function textView(io: Output): FollowView {
  return {
    log: (chunk) => io.stdout.write(chunk.text),
    state: (run) => {
      // The plan's counts with the end: a proposed run's main answer, an applied one's record.
      const said = [
        reasonText(run),
        isTerminal(run.state) && run.plan ? `plan: ${planLine(run)}` : '',
      ].filter(Boolean);
      io.stderr.write(
        `berth: run ${run.id} ${run.state}${said.length ? ` (${said.join('; ')})` : ''}\n`,
      );
    },
    ended: () => undefined,
  };
}

/** One log chunk as a `--json` line (`berth runs logs`, following). */
function logEvent(runId: string, chunk: LogChunk): string {
  return `${JSON.stringify({ type: 'log', runId, seq: chunk.seq, at: chunk.at, text: chunk.text })}\n`;
}

/**
 * One JSON object a line on stdout (docs/server.md): `run.state` at each state (the whole run,
 * plan summary included), `log` per chunk (seq, at, text), `run.ended` last. A script gets the run
 * id, the states and the output apart; berth's own lines stay on stderr.
 */
function jsonView(io: Output, runId: string): FollowView {
  const runEvent = (type: string, run: Run): string =>
    `${JSON.stringify({ type, runId: run.id, state: run.state, stateReason: run.stateReason, run })}\n`;
  return {
    log: (chunk) => io.stdout.write(logEvent(runId, chunk)),
    state: (run) => io.stdout.write(runEvent('run.state', run)),
    ended: (run) => io.stdout.write(runEvent('run.ended', run)),
  };
}

/** How long a run may wait for a worker before the follower looks at why (a lease takes ms). */
export const WORKER_WAIT_HINT_MS = 2000;

/**
 * Why a READY run of `pool` is not taken, when the pool's workers say so: none has registered,
 * none is online, or every online one is drained. Null when some worker could take it (they are
 * busy: the run's turn comes).
 */
export function noWorkerHint(
  run: Run,
  workers: readonly Worker[],
  server: string,
  /** The CA file this command trusts the server with: a worker needs it too. */
  caCert: string | null = null,
): string | null {
  const ours = workers.filter((w) => w.pool === run.pool);
  const start = `BERTH_POOL_TOKEN=<the pool's token> berth worker --server ${server}${caCert ? ` --ca-cert ${caCert}` : ''}`;
  const lostToken = `(\`berth pool rotate-token ${run.pool}\` gives a new token if it is lost)`;
  const head = `run ${run.id} waits for a worker of pool ${run.pool}`;
  const still = 'Still following (Ctrl-C stops following; the run stays queued).';
  if (ours.length === 0)
    return `${head}, and no worker has registered in that pool: start one on a machine with Docker: \`${start}\` ${lostToken}. ${still}`;
  const online = ours.filter((w) => w.status !== 'OFFLINE');
  if (online.length === 0) {
    const last = [...ours].sort((a, b) => b.lastHeartbeatAt.localeCompare(a.lastHeartbeatAt))[0];
    return `${head}, and ${ours.length === 1 ? 'its only worker is offline' : `none of its ${ours.length} workers is online`} (last heard of: ${last?.id} on ${last?.host} at ${last?.lastHeartbeatAt}): start one again: \`${start}\`. ${still}`;
  }
  if (online.every((w) => w.drained))
    return `${head}, and every online worker of it is drained: \`${online.map((w) => `berth worker undrain ${w.id}`).join('` or `')}\` lets ${online.length === 1 ? 'it' : 'them'} take runs again. ${still}`;
  return null;
}

/**
 * Once a run has waited WORKER_WAIT_HINT_MS for a worker, says why when no worker of its pool can
 * take it (once). `state` hears of each run the follower gets; `stop` ends the watch.
 */
function watchWorkerWait(client: ApiClient, io: Output): { state(run: Run): void; stop(): void } {
  let timer: NodeJS.Timeout | null = null;
  let said = false;
  let current: string | null = null;
  const clear = (): void => {
    if (timer) clearTimeout(timer);
    timer = null;
  };
  return {
    state(run) {
      current = run.state;
      if (run.state !== 'READY') return clear();
      if (timer || said) return;
      timer = setTimeout(() => {
        timer = null;
        void client.listWorkers().then(
          (workers) => {
            const hint = noWorkerHint(run, workers, client.baseUrl, caCertOf.get(client) ?? null);
            // Taken (or ended) while the list was on its way: nothing to explain any more.
            if (!hint || current !== 'READY') return;
            said = true;
            io.stderr.write(`berth: ${hint}\n`);
          },
          // The worker list is a help, not the point: following goes on without it.
          () => undefined,
        );
      }, WORKER_WAIT_HINT_MS);
      timer.unref();
    },
    stop() {
      clear();
      current = null;
    },
  };
}

/** What a Ctrl-C while following says: the run is left as it is, and the commands that reach it. */
export function stoppedFollowing(id: string, state: RunStateName | null): string {
  if (state === 'UNCONFIRMED')
    // An answer given just before may be on its way: the run's own state is the word on it.
    return `berth: stopped following; run ${id} was waiting for confirmation (\`berth runs show ${id}\` says where it stands): \`berth runs confirm ${id}\` applies its plan, \`berth runs discard ${id}\` discards it`;
  if (state !== null && isTerminal(state)) return `berth: stopped following; run ${id} is ${state}`;
  return `berth: stopped following; run ${id} goes on${state ? ` (${state})` : ''}: \`berth runs logs ${id} --follow\` follows it again, \`berth runs cancel ${id}\` stops it`;
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
  view: FollowView = textView(io),
): Promise<Run> {
  let state: RunStateName | null = null;
  let stopping = false;
  let last: Run | null = null;
  let deciding: Promise<void> = Promise.resolve();
  let failed: { error: unknown } | null = null;
  // A decision that failed ends the following: the run would otherwise wait for ever.
  const stop = new AbortController();
  const waiting = watchWorkerWait(client, io);
  // Ctrl-C stops following, not the run: say so, and how to reach the run again.
  const interrupted = (): void => {
    io.stderr.write(`\n${stoppedFollowing(id, last?.state ?? state)}\n`);
    process.exit(130);
  };
  process.once('SIGINT', interrupted);
  try {
    try {
      await client.followLogs(
        id,
        {
          log: (chunk) => view.log(chunk),
          run: (run) => {
            last = run;
            waiting.state(run);
            // A stop asked of the worker is news too (the state stays until the job ends).
            const nowStopping = Boolean(run.stopRequested);
            if (run.state === state && nowStopping === stopping) return;
            state = run.state;
            stopping = nowStopping;
            view.state(run);
            if (state !== 'UNCONFIRMED') return;
            deciding = deciding
              .then(() => decide(run))
              .catch((error: unknown) => {
                failed = { error };
                stop.abort();
              });
          },
          lost: (why) => io.stderr.write(`berth: warning: ${why}\n`),
          retrying: (message, back) =>
            io.stderr.write(`berth: ${back ? '' : 'warning: '}${message}\n`),
        },
        { signal: stop.signal },
      );
    } catch (err) {
      if (!failed) throw err;
    } finally {
      waiting.stop();
    }
    await deciding;
  } finally {
    process.off('SIGINT', interrupted);
  }
  if (failed) throw (failed as { error: unknown }).error;
  const end = last ?? (await client.getRun(id));
  if (isTerminal(end.state)) view.ended(end);
  return end;
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

/** On a terminal: the question `berth run` asks, its answer read the same way (apply-question.ts). */
async function askToConfirm(client: ApiClient, run: Run, io: Output): Promise<void> {
  io.stderr.write(`berth: run ${run.id} is UNCONFIRMED (${planLine(run)}). ${APPLY_QUESTION} `);
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
  const yes = appliesPlan(answer);
  try {
    await client.decide(run.id, yes ? 'confirm' : 'discard');
  } catch (err) {
    // Someone else decided (or canceled) meanwhile: following shows what happened.
    if (!(err instanceof ApiClientError) || err.status !== 409) throw err;
    io.stderr.write(`berth: ${err.message}\n`);
  }
}

/** What every remote command's action gets: the client, the output, the environment. */
interface Remote {
  client: () => ApiClient;
  io: Output;
  env: NodeJS.ProcessEnv;
  setExit: (code: number) => void;
  /** Wraps an action: the server's refusals become berth errors with a command-line fix. */
  act: <A extends unknown[]>(fn: (...args: A) => Promise<void>) => (...args: A) => Promise<void>;
}

export function registerRemote(
  program: Command,
  io: Output,
  env: NodeJS.ProcessEnv,
  setExit: (code: number) => void,
): void {
  const remote: Remote = {
    client: () => apiClient(readLogin(env), env, io),
    io,
    env,
    setExit,
    act:
      (fn) =>
      async (...args) => {
        try {
          await fn(...args);
        } catch (err) {
          throw asBerthError(err, env);
        }
      },
  };
  registerLogin(program, remote);
  registerStack(program, remote);
  registerRuns(program, remote);
  registerPool(program, remote);
  registerTokens(program, io, remote.client, remote.act);
}

function registerLogin(program: Command, { io, env, act }: Remote): void {
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
    .option('--json', 'say where the login was saved as one JSON object (never the token)')
    .action(
      act(async (opts: { server: string; caCert?: string; json?: boolean }) => {
        const server = parseServerAddress(opts.server, '--server');
        const token = env.BERTH_TOKEN?.trim() || (await readStdin());
        if (!token)
          throw new BerthError(
            'BERTH_USAGE',
            process.stdin.isTTY
              ? 'no token: set BERTH_TOKEN or pipe it in'
              : 'no token: standard input was empty and BERTH_TOKEN is not set',
            {
              hint: 'Give the token on standard input (`berth login --server URL < token-file`) or in BERTH_TOKEN; the admin token was printed once when the server first started.',
            },
          );
        const caFile = opts.caCert ?? env.BERTH_CA_CERT?.trim();
        const caCert = caFile ? path.resolve(caFile) : undefined;
        const login: Login = { server, token, ...(caCert ? { caCert } : {}) };
        // Saved only once the server answered as berth's API does, with this token.
        await apiClient(login, env, io).listStacks();
        const file = loginFile(env);
        mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
        writeFileSync(file, `${JSON.stringify(login)}\n`, { mode: 0o600 });
        if (opts.json) printJson(io, { server, file, caCert: caCert ?? null });
        else io.stderr.write(`berth: logged in to ${server} (saved in ${file})\n`);
      }),
    );
  program
    .command('logout')
    .description('forget the server and token `berth login` saved (the token itself stays valid)')
    .option('--json', 'say what was forgotten as one JSON object')
    .action(
      act((opts: { json?: boolean }) => {
        const file = loginFile(env);
        let server: string | null = null;
        try {
          server = (JSON.parse(readFileSync(file, 'utf8')) as Partial<Login>).server ?? null;
        } catch {
          // None saved, or not readable as a login: removed all the same.
        }
        const existed = existsSync(file);
        rmSync(file, { force: true });
        if (opts.json) printJson(io, { file, loggedOut: existed, server });
        else
          io.stderr.write(
            existed
              ? `berth: logged out${server ? ` of ${server}` : ''} (removed ${file}); the token still works until an admin revokes it (\`berth token revoke\`)\n`
              : `berth: not logged in (no ${file})\n`,
          );
        // BERTH_SERVER and BERTH_TOKEN, set in the environment, still log every command in.
        if (env.BERTH_TOKEN?.trim())
          io.stderr.write('berth: note: BERTH_TOKEN is set, and still gives commands a token\n');
        return Promise.resolve();
      }),
    );
}

/** The options `stack create` and `stack update` share (update: only those given change). */
interface StackFlags {
  repo?: string;
  branch?: string;
  dir?: string;
  pool?: string;
  projectRoot?: string;
  tool?: string;
  toolVersion?: string;
  runnerImage?: string;
  label?: string[];
  autoDeploy?: boolean;
  json?: boolean;
}

type StackPatch = Parameters<ApiClient['updateStack']>[1];

/**
 * Adds the stack settings as options. For `update`, an empty value ('') puts a setting back to
 * its default (no runner image, tool or version of its own; the branch main; no labels; the
 * source's root) and `--no-auto-deploy` turns auto-deploy off.
 */
function stackSettingOptions(command: Command, update: boolean): Command {
  const clears = update ? " ('' clears)" : '';
  command
    .option(
      '--repo <url>',
      "git repository: https:// or ssh://; file:// (a repository on the workers' machines) only with an admin token, for a stack of a private pool",
    )
    .option(
      '--branch <name>',
      `branch of the repository${update ? " ('' puts it back to main)" : ''}`,
      ...(update ? [] : ['main']),
    )
    .option(
      '--dir <path>',
      "instead of a repository: a directory on the workers' machines (a relative path is resolved against the current directory here); only with an admin token, for a stack of a private pool",
    );
  if (update) command.option('--pool <id>', 'move the stack to this worker pool');
  else command.requiredOption('--pool <id>', 'worker pool');
  command
    .option('--project-root <path>', `directory of the stack inside the source${clears}`)
    .option('--tool <tool>', `terraform | opentofu | custom, as for berth run${clears}`)
    .option('--tool-version <version>', `the tool's version or constraint${clears}`)
    .option(
      '--runner-image <ref>',
      `the image the stack's jobs run in${update ? " ('' clears: the pool's or berth's default)" : ''}`,
    )
    .option(
      '--label <label>',
      update ? "repeatable; replaces the stack's labels ('' clears them)" : 'repeatable',
      collect,
    )
    .option('--auto-deploy', 'apply a tracked run without waiting for confirmation');
  if (update) command.option('--no-auto-deploy', 'wait for confirmation before applying');
  return command.option('--json', 'print the stack as one JSON object');
}

/** `--tool` as `berth run` takes it, sent as the API's canonical name. */
function toolOf(text: string): WorkflowTool {
  const tool = parseWorkflowTool(text);
  if (!tool)
    throw new BerthError('BERTH_USAGE', `--tool ${JSON.stringify(text)} is not a workflow tool`, {
      hint: `Use ${TOOL_SPELLINGS}.`,
    });
  return tool;
}

/** The change `stack update` asks for: only the options given, '' as "back to the default". */
export function stackPatch(o: StackFlags): StackPatch {
  if (o.repo !== undefined && o.dir !== undefined)
    throw new BerthError('BERTH_USAGE', 'give --repo or --dir, not both: a stack has one source');
  if (o.repo === '' || o.dir === '')
    throw new BerthError(
      'BERTH_USAGE',
      `--${o.repo === '' ? 'repo' : 'dir'} is empty: a stack's source can be replaced (--repo URL or --dir DIR), not removed`,
    );
  const orNull = (value: string): string | null => (value === '' ? null : value);
  const patch: StackPatch = {
    ...(o.repo !== undefined ? { repository: o.repo, localDir: null } : {}),
    ...(o.dir !== undefined
      ? { localDir: path.resolve(o.dir), repository: null, branch: null }
      : {}),
    ...(o.branch !== undefined ? { branch: orNull(o.branch) } : {}),
    ...(o.pool !== undefined ? { pool: o.pool } : {}),
    ...(o.projectRoot !== undefined ? { projectRoot: o.projectRoot } : {}),
    ...(o.tool !== undefined ? { tool: o.tool === '' ? null : toolOf(o.tool) } : {}),
    ...(o.toolVersion !== undefined ? { toolVersion: orNull(o.toolVersion) } : {}),
    ...(o.runnerImage !== undefined ? { runnerImage: orNull(o.runnerImage) } : {}),
    ...(o.label !== undefined ? { labels: o.label.filter((l) => l !== '') } : {}),
    ...(o.autoDeploy !== undefined ? { autoDeploy: o.autoDeploy } : {}),
  };
  if (Object.keys(patch).length === 0)
    throw new BerthError('BERTH_USAGE', 'nothing to change: give at least one setting', {
      hint: 'Run `berth stack update --help` for the settings; `berth stack show ID` shows the current ones.',
    });
  return patch;
}

/**
 * A directory stack whose directory is not on this machine: said, since runs read it on the
 * pool's workers and fail there (often this machine too, with `berth up`). Not refused: the
 * workers may be other machines.
 */
function warnOfMissingDirectory(io: Output, stack: Stack): void {
  if (!stack.localDir) return;
  let kind: string;
  try {
    if (statSync(stack.localDir).isDirectory()) return;
    kind = 'is not a directory';
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    kind =
      code === 'ENOENT' || code === 'ENOTDIR'
        ? 'does not exist'
        : `cannot be read (${code ?? String(err)})`;
  }
  io.stderr.write(
    `berth: warning: ${stack.localDir} ${kind} on this machine: runs of stack ${stack.id} read it on the machines of pool ${stack.pool}'s workers and fail where it is missing (\`berth stack update ${stack.id} --dir DIR\` changes it)\n`,
  );
}

function registerStack(program: Command, remote: Remote): void {
  const { client, io, env, act } = remote;
  const stack = program.command('stack').description('stacks on the berth server');
  stackSettingOptions(
    stack
      .command('create')
      .description('create a stack: its source (a repository or a directory), pool and settings')
      .argument('<id>'),
    false,
  ).action(
    act(async (id: string, o: StackFlags & { branch: string; pool: string }) => {
      const created = await client().createStack({
        id,
        pool: o.pool,
        ...(o.repo ? { repository: o.repo, branch: o.branch } : {}),
        ...(o.dir ? { localDir: path.resolve(o.dir) } : {}),
        ...(o.projectRoot ? { projectRoot: o.projectRoot } : {}),
        ...(o.tool ? { tool: toolOf(o.tool) } : {}),
        ...(o.toolVersion ? { toolVersion: o.toolVersion } : {}),
        ...(o.runnerImage ? { runnerImage: o.runnerImage } : {}),
        labels: o.label ?? [],
        autoDeploy: o.autoDeploy === true,
      });
      print(io, o.json, created, () => stackText(created));
      warnOfMissingDirectory(io, created);
    }),
  );
  stack
    .command('list')
    .description('list the stacks, their pools and their last runs')
    .option('--pool <pool>', "only the pool's stacks")
    .option('--json', 'print the stacks as one JSON array')
    .action(
      act(async (o: { pool?: string; json?: boolean }) => {
        const stacks = await client().listStacks(o.pool !== undefined ? { pool: o.pool } : {});
        print(
          io,
          o.json,
          stacks,
          () =>
            stacks
              .map(
                (s) =>
                  `${s.id}  pool ${s.pool}${s.lastRun ? `  last run ${s.lastRun.id} ${s.lastRun.type} ${s.lastRun.state}` : '  never run'}`,
              )
              .join('\n') || 'no stacks',
        );
      }),
    );
  stack
    .command('show')
    .description("show a stack's settings and variables (secret values never)")
    .argument('<id>')
    .option('--json', 'print the stack as one JSON object')
    .action(
      act(async (id: string, o: { json?: boolean }) => {
        const found = await client().getStack(id);
        print(io, o.json, found, () => stackText(found));
      }),
    );
  stackSettingOptions(
    stack
      .command('update')
      .description(
        "change a stack's settings (only the options given; its variables and runs stay)",
      )
      .argument('<id>'),
    true,
  ).action(
    act(async (id: string, o: StackFlags) => {
      const patch = stackPatch(o);
      const updated = await client().updateStack(id, patch);
      print(io, o.json, updated, () => stackText(updated));
      if (patch.localDir) warnOfMissingDirectory(io, updated);
    }),
  );
  stack
    .command('delete')
    .description('delete a stack with its variables and runs (none may be active)')
    .argument('<id>')
    .option('--json', 'print {"id", "deleted": true} as one JSON object')
    .action(
      act(async (id: string, o: { json?: boolean }) => {
        const api = client();
        // Its run history goes with it: said, with how much (a look first; not the command's
        // failure if it fails).
        const runs = await api
          .listRuns({ stack: id, limit: 500 })
          .then((list) => list.length)
          .catch(() => null);
        await api.deleteStack(id);
        printDeleted(io, o.json, 'stack', id);
        if (!o.json && runs)
          io.stderr.write(
            `berth: its ${runs === 500 ? '500 or more' : runs} run(s), their logs and state histories were deleted with it\n`,
          );
      }),
    );
  const stackEnv = stack.command('env').description("a stack's environment variables");
  stackEnv
    .command('set')
    .description('set a variable of a stack (plain, or --secret: write-only and masked)')
    .argument('<id>')
    .argument('<name[=value]>', "NAME alone takes the value from berth's environment")
    .option('--secret', 'write-only, sealed at rest, masked in every log')
    .option('--json', 'print the stack as one JSON object (secret values never)')
    .action(
      act(async (id: string, pair: string, o: { secret?: boolean; json?: boolean }) => {
        const eq = pair.indexOf('=');
        const name = eq < 0 ? pair : pair.slice(0, eq);
        const value = eq < 0 ? env[name] : pair.slice(eq + 1);
        if (value === undefined)
          throw new BerthError('BERTH_USAGE', `${name} is not set in berth's environment`, {
            hint: o.secret
              ? `Export ${name} first: a secret given as ${name}=VALUE is seen by \`ps\` and kept in the shell's history (\`read -rs ${name} && export ${name}\` asks for it without showing it).`
              : `Export ${name} first (keeps the value out of the command line), or pass ${name}=VALUE.`,
          });
        const updated = await client().setVariable(id, name, value, o.secret === true);
        const typo = gitVariableTypo(name);
        if (typo) io.stderr.write(`berth: warning: ${typo}\n`);
        // Said now, not only in the log of every run it will be masked in.
        if (o.secret)
          for (const warning of shortSecretWarnings({ [name]: value }))
            io.stderr.write(`berth: warning: ${warning}\n`);
        if (o.secret && eq >= 0)
          io.stderr.write(
            `berth: warning: the secret's value was on the command line, where \`ps\` and the shell's history see it: next time give ${name} alone, with its value in berth's environment (\`${name}="$(cat FILE)" berth stack env set ${id} ${name} --secret\`, or \`read -rs ${name} && export ${name}\`, which asks for one line without showing it)\n`,
          );
        if (o.json) printJson(io, updated);
        else io.stderr.write(`berth: ${name} set on stack ${id}${o.secret ? ' (secret)' : ''}\n`);
      }),
    );
  stackEnv
    .command('unset')
    .description('remove a variable from a stack')
    .argument('<id>')
    .argument('<name>')
    .option('--json', 'print the stack as one JSON object (secret values never)')
    .action(
      act(async (id: string, name: string, o: { json?: boolean }) => {
        const updated = await client().unsetVariable(id, name);
        if (o.json) printJson(io, updated);
        else io.stderr.write(`berth: ${name} unset on stack ${id}\n`);
      }),
    );
  registerTrigger(stack, remote);
}

function registerTrigger(stack: Command, { client, io, setExit, act }: Remote): void {
  stack
    .command('trigger')
    .description('start a run of a stack (and follow it to its end with --follow)')
    .argument('<id>')
    .option('--type <type>', 'task | proposed | tracked | destroy', 'proposed')
    .option('--commit <sha>', 'the commit to run (default: the branch head now)')
    .option('--follow', 'show the log and states until the run ends')
    .option(
      '--json',
      'print the run as one JSON object; with --follow, one JSON event a line (run.state, log, run.ended)',
    )
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
          // A script (--json) is never asked: it is told how to decide, on stderr.
          const ask = process.stdin.isTTY && !o.json;
          const end = await followRun(
            api,
            run.id,
            io,
            (waiting) =>
              ask ? askToConfirm(api, waiting, io) : Promise.resolve(sayHowToDecide(waiting, io)),
            o.json ? jsonView(io, run.id) : textView(io),
          );
          setExit(followedExit(end.state));
        },
      ),
    );
}

/**
 * The exit code of a command that followed a run to its end (`stack trigger --follow`, `runs logs
 * -f`): 0 when it ended as it should (FINISHED, or DISCARDED: a plan a person turned down), 1
 * when it failed or was stopped or canceled, so that a script can tell.
 */
function followedExit(state: string): number {
  return state === 'FINISHED' || state === 'DISCARDED' ? 0 : 1;
}

function runText(run: Run): string {
  return [
    runLine(run),
    ...(run.image.reference
      ? [`  image  ${run.image.reference}${run.image.digest ? ` (${run.image.digest})` : ''}`]
      : []),
    ...(run.worker ? [`  worker ${run.worker}`] : []),
    ...(run.plan
      ? [
          `  plan   ${run.plan.add} to add, ${run.plan.change} to change, ${run.plan.destroy} to destroy`,
        ]
      : []),
    ...(run.states ?? []).map((s) => `  ${s.at}  ${s.state}`),
  ].join('\n');
}

/**
 * The stored log, page by page, as text or `--json` log events. An empty log says on stderr why:
 * the run ended before any output (its state and reason), or has not started yet.
 */
async function printStoredLog(
  api: ApiClient,
  id: string,
  io: Output,
  json: boolean,
): Promise<void> {
  let after = 0;
  for (;;) {
    const log = await api.logs(id, after);
    for (const chunk of log.chunks) io.stdout.write(json ? logEvent(id, chunk) : chunk.text);
    if (log.chunks.length === 0) break;
    after = log.next;
  }
  if (after > 0) return;
  const run = await api.getRun(id);
  const reason = run.stateReason ? `: ${run.stateReason}` : '';
  io.stderr.write(
    isTerminal(run.state)
      ? `berth: run ${id} has no log: it ended ${run.state} before any output${reason}\n`
      : `berth: run ${id} has no log yet (it is ${run.state}${reason}); \`berth runs logs ${id} -f\` follows it\n`,
  );
}

const DECISIONS = {
  confirm: 'apply the plan of an UNCONFIRMED run',
  discard: 'discard the plan of an UNCONFIRMED run (nothing is applied)',
  cancel: 'cancel a run that has not ended',
} as const;

/** A run id as typed: ULIDs are read in any case (token ids print in lower case), sent upper. */
function runIdOf(text: string): string {
  return /^[0-9A-HJKMNP-TV-Z]{26}$/i.test(text.trim()) ? text.trim().toUpperCase() : text;
}

/** `--limit`'s value: a whole number from 1 to 500 (what the server lists at most). */
function runListLimit(text: string): number {
  const limit = Number(text);
  if (!/^\d+$/.test(text) || limit < 1 || limit > 500)
    throw new BerthError('BERTH_USAGE', `--limit ${text} is not a number of runs from 1 to 500`, {
      hint: 'Give --limit 1 to 500; for more, page with --before RUN (the last run shown).',
    });
  return limit;
}

function registerRuns(program: Command, { client, io, act, setExit }: Remote): void {
  const runs = program.command('runs').description('runs on the berth server');
  runs
    .command('list')
    .description('list runs, newest first (the latest 50 unless --limit)')
    .option('--stack <id>', "only this stack's runs")
    .option('--limit <n>', 'how many runs, 1 to 500', '50')
    .option('--before <run>', 'only runs older than this one: the next page', runIdOf)
    .option('--json', 'print the runs as one JSON array')
    .action(
      act(async (o: { stack?: string; limit: string; before?: string; json?: boolean }) => {
        const limit = runListLimit(o.limit);
        const list = await client().listRuns({
          ...(o.stack ? { stack: o.stack } : {}),
          ...(o.before ? { before: o.before } : {}),
          limit,
        });
        print(io, o.json, list, () => list.map(runLine).join('\n') || 'no runs');
        // A full page may have more behind it: said on stderr (stdout stays one run a line).
        const last = list.at(-1);
        if (!o.json && list.length === limit && last)
          io.stderr.write(
            `berth: older runs: berth runs list${o.stack ? ` --stack ${o.stack}` : ''} --before ${last.id}${limit === 50 ? '' : ` --limit ${limit}`}\n`,
          );
      }),
    );
  runs
    .command('show')
    .description('show a run: its state, image, worker, plan summary and state history')
    .argument('<run>', 'a run id, as `berth runs list` shows it (any case)', runIdOf)
    .option('--json', 'print the run as one JSON object')
    .action(
      act(async (id: string, o: { json?: boolean }) => {
        const run = await client().getRun(id);
        print(io, o.json, run, () => runText(run));
      }),
    );
  runs
    .command('logs')
    .description("show a run's stored log (masked), or follow it live with -f")
    .argument('<run>', 'a run id, as `berth runs list` shows it (any case)', runIdOf)
    .option('-f, --follow', 'keep showing output until the run ends')
    .option(
      '--json',
      'one JSON object a line: a log event per chunk (seq, at, text); with -f also run.state and run.ended',
    )
    .action(
      act(async (id: string, o: { follow?: boolean; json?: boolean }) => {
        const api = client();
        if (o.follow) {
          const end = await followRun(
            api,
            id,
            io,
            undefined,
            o.json ? jsonView(io, id) : textView(io),
          );
          setExit(followedExit(end.state));
          return;
        }
        await printStoredLog(api, id, io, o.json === true);
      }),
    );
  for (const [decision, what] of Object.entries(DECISIONS) as [keyof typeof DECISIONS, string][]) {
    runs
      .command(decision)
      .description(what)
      .argument('<run>', 'a run id, as `berth runs list` shows it (any case)', runIdOf)
      .option('--json', 'print the run as one JSON object')
      .action(
        act(async (id: string, o: { json?: boolean }) => {
          // A cancel of a run already stopping changes nothing (but for one stuck before its
          // job): said, so that it does not read as a new stop.
          const before = decision === 'cancel' ? await client().getRun(id) : null;
          const run = await client().decide(id, decision);
          print(io, o.json, run, () => runLine(run));
          if (!o.json && before?.stopRequested && !isTerminal(run.state)) {
            io.stderr.write(
              `berth: run ${run.id} was already asked to stop at ${before.stopRequested.at} (${before.stopRequested.reason}); asking again changes nothing${run.state === 'PREPARING' || run.state === 'PREPARING_APPLY' ? ' until the lease time and the 30 s grace have passed since then' : ': the worker stops it, or the run ends when its lease runs out'}\n`,
            );
          } else if (run.stopRequested && !isTerminal(run.state) && !o.json) {
            io.stderr.write(
              `berth: worker ${run.worker ?? '?'} hears of it within a heartbeat, stops the run (its job, if started: SIGINT, then SIGKILL after its 30 s grace) and reports its end; the stack stays locked until then. \`berth runs logs ${run.id} -f\` follows it to the end. ${run.state === 'PREPARING' || run.state === 'PREPARING_APPLY' ? `If the worker stays stuck before the job, \`berth runs cancel ${run.id}\` again once the lease time and the grace have passed ends the run on the server.` : 'If the worker stops answering, the run ends when its lease runs out.'}\n`,
            );
          }
        }),
      );
  }
}

/** `--allowed-registries a, b,`: its entries, trimmed, empty ones left out ('' is none). */
function commaList(text: string): string[] {
  return text
    .split(',')
    .map((entry) => entry.trim())
    .filter(Boolean);
}

/** A pool and what decides its runs' images, as `pool create` or `pool update` set it. */
function poolLine(p: Pool): string {
  const settings = [
    p.kind === 'public'
      ? `allows ${p.allowList.length > 0 ? p.allowList.map((e) => (e === 'default' ? "berth's default list" : e)).join(', ') : "berth's default list"}`
      : null,
    p.pullPolicy ? `pull ${p.pullPolicy}` : null,
    p.defaultImage ? `default image ${p.defaultImage}` : null,
  ].filter(Boolean);
  const named = p.name !== p.id ? ` "${p.name}"` : '';
  return `${p.id}${named}  ${p.kind}${settings.length > 0 ? `  (${settings.join('; ')})` : ''}`;
}

function registerPool(program: Command, { client, io, act }: Remote): void {
  const pool = program.command('pool').description('worker pools on the berth server');
  pool
    .command('create')
    .description("create a worker pool and print its token (shown once: the pool's workers use it)")
    .argument('<id>')
    .requiredOption('--kind <kind>', 'public | private')
    .option('--allowed-registries <list>', 'public pools: allow-list, e.g. default,quay.io')
    .option('--default-image <ref>')
    .option('--pull <policy>', 'always | if-not-present | never')
    .option('--json', 'print the pool and its token as one JSON object')
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
            ...(o.allowedRegistries ? { allowList: commaList(o.allowedRegistries) } : {}),
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
    .description('list the worker pools')
    .option('--json', 'print the pools as one JSON array')
    .action(
      act(async (o: { json?: boolean }) => {
        const pools = await client().listPools();
        print(io, o.json, pools, () => pools.map(poolLine).join('\n'));
      }),
    );
  pool
    .command('update')
    .description(
      "change a pool's settings (only the options given; its kind, token, stacks and workers stay)",
    )
    .argument('<id>')
    .option('--name <name>')
    .option(
      '--allowed-registries <list>',
      "public pools: allow-list, e.g. default,quay.io ('' for berth's default list)",
    )
    .option('--default-image <ref>', "'' for none (berth's default runner image)")
    .option('--pull <policy>', "always | if-not-present | never ('' for berth's default)")
    .option('--json', 'print the pool as one JSON object')
    // Not a setting that changes: taken only to say so, and what to do instead.
    .addOption(new Option('--kind <kind>').hideHelp())
    .action(
      act(
        async (
          id: string,
          o: {
            kind?: string;
            name?: string;
            allowedRegistries?: string;
            defaultImage?: string;
            pull?: string;
            json?: boolean;
          },
        ) => {
          if (o.kind !== undefined)
            throw new BerthError(
              'BERTH_USAGE',
              `--kind is set when a pool is created and does not change: pool update takes no --kind (pool ${id}: ${JSON.stringify(o.kind)} given)`,
              {
                hint: `Create a pool of that kind (\`berth pool create NEW --kind ${o.kind === 'public' || o.kind === 'private' ? o.kind : 'public|private'}\`), move the stacks to it (\`berth stack update ID --pool NEW\`) and start its workers with its token; then \`berth pool delete ${id}\` once nothing holds it.`,
              },
            );
          const patch = {
            ...(o.name !== undefined ? { name: o.name } : {}),
            ...(o.allowedRegistries !== undefined
              ? { allowList: commaList(o.allowedRegistries) }
              : {}),
            ...(o.defaultImage !== undefined ? { defaultImage: o.defaultImage || null } : {}),
            ...(o.pull !== undefined ? { pullPolicy: (o.pull || null) as 'never' | null } : {}),
          };
          if (Object.keys(patch).length === 0)
            throw new BerthError('BERTH_USAGE', 'nothing to change: give at least one setting', {
              hint: 'Run `berth pool update --help` for the settings; `berth pool list` shows the current ones.',
            });
          const api = client();
          const updated = await api.updatePool(id, patch);
          print(io, o.json, updated, () => poolLine(updated));
          // A narrower allow-list: said now, not at each stack's next trigger. (Stacks without
          // an image of their own run the pool's default, which the server checks against the
          // list.)
          const stacks =
            patch.allowList === undefined
              ? []
              : await api.listStacks({ pool: id }).catch((err: unknown) => {
                  // The pool did change: a failed look at its stacks is not the command's failure.
                  io.stderr.write(
                    `berth: warning: could not list the stacks to check them against the new allow-list: ${err instanceof Error ? err.message : String(err)}\n`,
                  );
                  return [];
                });
          // (An older server answers every stack: ?pool= is new.)
          for (const stack of stacks.filter((s) => s.pool === id)) {
            const refusal = stackImageRefusal(stack.runnerImage, updated);
            if (refusal)
              io.stderr.write(
                `berth: warning: stack ${stack.id}'s runner image ${stack.runnerImage} is not allowed any more (${refusal.reason}): its runs are refused until it changes (\`berth stack update ${stack.id} --runner-image REF\`)\n`,
              );
          }
        },
      ),
    );
  pool
    .command('delete')
    .description(
      'delete a pool no stack uses, no run ran in and no online worker holds (its token ends)',
    )
    .argument('<id>')
    .option('--json', 'print {"id", "deleted": true} as one JSON object')
    .action(
      act(async (id: string, o: { json?: boolean }) => {
        await client().deletePool(id);
        printDeleted(io, o.json, 'pool', id);
      }),
    );
  pool
    .command('rotate-token')
    .description(
      'give a pool a new token (the old one stops working: restart its workers with the new)',
    )
    .argument('<id>')
    .option('--json', 'print the pool and its new token as one JSON object')
    .action(
      act(async (id: string, o: { json?: boolean }) => {
        const api = client();
        const rotated = await api.rotatePoolToken(id);
        print(
          io,
          o.json,
          rotated,
          () => `new pool token for ${id} (the old one no longer works): ${rotated.token}`,
        );
        // Its running workers hold the old token: said, since each stops at its next call.
        const online = (await api.listWorkers()).filter(
          (w) => w.pool === id && w.status !== 'OFFLINE',
        );
        if (online.length > 0)
          io.stderr.write(
            `berth: ${online.length} worker(s) of pool ${id} hold the old token (${online.map((w) => w.id).join(', ')}): each stops its runs and exits at its next call to the server; start them again with BERTH_POOL_TOKEN set to the new token${id === 'local' ? " (berth up's own worker: berth up ends with it, its server too; start berth up again, it sets the token itself)" : ''}\n`,
          );
      }),
    );
}

/** `berth worker list|drain|undrain`: the server's view of its workers. */
export async function workerAdmin(
  verb: string,
  id: string | undefined,
  json: boolean | undefined,
  io: Output,
  env: NodeJS.ProcessEnv,
): Promise<void> {
  const api = apiClient(readLogin(env), env, io);
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
                `${w.id}  ${w.pool}  ${(w.status === 'OFFLINE' && w.drained ? 'OFFLINE (drained)' : w.status).padEnd(17)} ${w.host}  last heartbeat ${w.lastHeartbeatAt}${w.runs.length ? `  running ${w.runs.join(', ')}` : ''}`,
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
    throw asBerthError(err, env);
  }
  throw new BerthError(
    'BERTH_USAGE',
    verb === 'drain' || verb === 'undrain'
      ? `berth worker ${verb} needs the id of a worker`
      : `berth worker ${verb}${id ? ` ${id}` : ''}: use list, drain ID or undrain ID`,
    {
      hint: '`berth worker list` shows the workers and their ids; then `berth worker drain ID` or `berth worker undrain ID`.',
    },
  );
}
