/** `berth run [DIR] [options] [-- COMMAND …]`: one job from a local directory, now. */
import { stat } from 'node:fs/promises';
import path from 'node:path';
import type { Command } from 'commander';
import { BerthError } from '../domain/errors.js';
import { shellQuote } from '../domain/hook-script.js';
import { DockerExecutor } from '../executor/docker/docker-executor.js';
import { EngineClient } from '../executor/docker/engine-client.js';
import { PUBLIC_POOL_DEFAULT_LIMITS } from '../domain/pool-policy.js';
import { dockerConfigDirFrom } from '../registry/docker-config.js';
import { readJobFile } from '../launcher/job-files.js';
import { FileJobUserCache } from '../launcher/job-user-cache.js';
import { currentLauncherId, isLauncherAlive } from '../launcher/launcher-identity.js';
import {
  buildRunnerImage,
  readSettings,
  readWorkspaceDelivery,
  workspaceRoot,
} from '../launcher/runner-image.js';
import { newRunId, startRun } from '../launcher/run-job.js';
import { maskError } from '../launcher/output-masking.js';
import { MaskValues, maskAll } from '../domain/log-masker.js';
import { planRun } from '../launcher/plan-run.js';
import { makeDirectory } from '../store/make-directory.js';
import {
  claimRunDirectory,
  keepRunsFrom,
  pruneRunDirectories,
  releaseRunDirectory,
} from '../launcher/run-history.js';
import { RUN_TYPES, type PlanSummary, type RunType } from '../domain/workflow.js';
import { APPLY_QUESTION, appliesPlan } from './apply-question.js';
import { humanView, jsonRenderer, type Output } from './render.js';
import { checkRunOptions, secretValuesOf, taskScript, type RawRunOptions } from './run-options.js';

/** Where a directory keeps its default task (documented in docs/usage.md). */
export const TASK_FILE = path.join('.berth', 'task.sh');

export function registerRun(
  program: Command,
  io: Output,
  env: NodeJS.ProcessEnv,
  setExit: (code: number) => void,
): void {
  const run = program
    .command('run')
    .description('run one job from a local directory in a fresh container')
    .argument('[dir]', 'directory copied into the job workspace (never modified)', '.')
    .argument('[command...]', 'the task, after --; default: the contents of DIR/.berth/task.sh')
    .option(
      '--image <ref>',
      'runner image (default: $BERTH_DEFAULT_RUNNER_IMAGE or the standard runner image)',
    )
    .option(
      '--runner-image <ref>',
      "the stack's runner image setting (the runtime configuration may override it)",
    )
    .option(
      '--stack <id>',
      'stack id whose entry in .berth/config.yml applies (default: the directory name)',
    )
    .option(
      '--stack-settings <file>',
      "YAML file with the stack's own settings (same keys as a stack entry)",
    )
    .option('--project-root <path>', "the stack's project root, relative to DIR")
    .option('--tool <tool>', "the stack's workflow tool: terraform | opentofu | custom")
    .option(
      '--tool-version <version>',
      "the stack's Terraform or OpenTofu version or constraint, e.g. 1.6.2 or '~> 1.8'",
    )
    .option('--type <type>', 'task | proposed | tracked | destroy', 'task')
    .option('--auto-deploy', 'tracked runs: apply without asking')
    .option(
      '--env <name[=value]>',
      "variable for the job; NAME alone takes the value from berth's environment (repeatable)",
      collect,
      [],
    )
    .option(
      '--secret-env <name[=value]>',
      "variable masked everywhere; NAME alone takes the value from berth's environment (repeatable)",
      collect,
      [],
    )
    .option('--env-file <file>', 'variables from a Docker env-file (repeatable)', collect, [])
    .option(
      '--secret-env-file <file>',
      'masked variables from a Docker env-file (repeatable)',
      collect,
      [],
    )
    .option('--timeout <duration>', 'the whole run may take at most this long', '70m')
    .option('--logs-timeout <duration>', 'stop the job after this long without output', '7m')
    .option('--grace <duration>', 'after SIGINT, wait this long before SIGKILL', '30s')
    .option(
      '--pool <kind>',
      'public | private: the worker pool kind whose policy applies',
      'private',
    )
    .option(
      '--docker-config-dir <dir>',
      'Docker config directory with registry credentials (private pools)',
    )
    .option(
      '--allowed-registries <list>',
      'public pools: allow-list, e.g. default,registry.example.com',
    )
    // No commander default: it would show a second, internal default ("auto") in the help.
    .option(
      '--pull <policy>',
      'always | if-not-present | never (default: always for tags on private pools, else if-not-present)',
    )
    .option('--pull-timeout <duration>', 'a pull may take at most this long', '10m')
    .option('--cpus <n>', 'CPU limit, e.g. 1.5')
    .option('--memory <size>', 'memory limit, e.g. 512m or 2g')
    .option('--pids-limit <n>', 'maximum number of processes in the container', '1024')
    .option('--network <name>', 'Docker network for the job container', 'bridge')
    .option('--runtime <name>', 'OCI runtime, e.g. runsc (must be registered with the engine)')
    .option('--log-limit <size>', 'bound of the stored log (head and tail are kept)', '4MiB')
    .option(
      '--saved-workspace-limit <size>',
      'tracked runs: most the workspace kept between plan and apply may be (default: $BERTH_SAVED_WORKSPACE_LIMIT or 1GiB)',
    )
    .option('--json', 'print one JSON event per line instead of the human view')
    .action(async (dir: string, words: string[], raw: RawRunOptions & { json?: boolean }) => {
      // Errors before the run starts (options, configuration, engine) are shown by main: they
      // are masked like the run's own.
      const secrets = new MaskValues(secretValuesOf(raw, env));
      const exit = await runCommand(dir, words, raw, io, env).catch((err: unknown) => {
        throw maskError(err, (text) => maskAll(text, secrets));
      });
      setExit(exit);
    });
  splitAtDoubleDash(run);
}

/**
 * Words after `--` are the command, always; DIR is only what comes before it. Commander hands
 * the words after `--` on as plain operands, so `berth run -- printf x` would make `printf` the
 * directory: here the operands before `--` are parsed apart and DIR is filled in when absent.
 */
function splitAtDoubleDash(run: Command): void {
  const valued = new Set(
    run.options.filter((o) => o.required).flatMap((o) => [o.long, o.short].filter(Boolean)),
  );
  const parse = run.parseOptions.bind(run);
  run.parseOptions = (args: string[]) => {
    let at = -1;
    for (let i = 0; i < args.length; i++) {
      if (args[i] === '--') {
        at = i;
        break;
      }
      if (valued.has(args[i])) i++; // the option's value, even when it is `--`
    }
    if (at < 0) return parse(args);
    const before = parse(args.slice(0, at));
    if (before.operands.length > 1) {
      throw new BerthError(
        'BERTH_USAGE',
        `more than one directory before --: ${before.operands.map((o) => JSON.stringify(o)).join(' ')}`,
        {
          hint: 'Give one DIR, then options, then -- and the command: berth run DIR [options] -- COMMAND …',
        },
      );
    }
    const dir = before.operands[0] ?? '.';
    // Unknown options stay where commander reports them; the command's words are operands.
    return { operands: [dir, ...args.slice(at + 1)], unknown: before.unknown };
  };
}

/** Asks on the terminal (or whatever stdin is) whether to apply (apply-question.ts). */
async function askToApply(
  plan: PlanSummary | null,
  io: Output,
  signal: AbortSignal,
): Promise<boolean> {
  const summary = plan
    ? ` (${plan.add} to add, ${plan.change} to change, ${plan.destroy} to destroy)`
    : '';
  io.stderr.write(`berth: the run is UNCONFIRMED${summary}. ${APPLY_QUESTION} `);
  const { createInterface } = await import('node:readline');
  const lines = createInterface({ input: process.stdin });
  // A stopped run (Ctrl-C while asking) closes the question: no answer, nothing applied.
  const onAbort = (): void => {
    io.stderr.write('\n');
    lines.close();
  };
  signal.addEventListener('abort', onAbort, { once: true });
  const answer = await new Promise<string>((resolve) => {
    lines.once('line', resolve);
    lines.once('close', () => resolve(''));
    if (signal.aborted) onAbort();
  });
  signal.removeEventListener('abort', onAbort);
  lines.close();
  return appliesPlan(answer);
}

/**
 * Resolves once stdout and stderr have room again; undefined when they have room now. A stream
 * that was closed (its reader went away) never drains: it is not waited for.
 */
function drained(io: Output): Promise<void> | undefined {
  const full = [io.stdout, io.stderr].filter((s) => {
    const state = s as { writableNeedDrain?: boolean; destroyed?: boolean };
    return state.writableNeedDrain && !state.destroyed;
  });
  if (full.length === 0) return undefined;
  return Promise.all(full.map(roomOrGone)).then(() => undefined);
}

const waitingForRoom = new WeakMap<NodeJS.WritableStream, Promise<void>>();

/**
 * Resolves when a stream drains, or fails or closes (then nothing will ever drain it). Callers
 * waiting at the same time share one promise, so a slow reader does not pile up listeners.
 */
function roomOrGone(stream: NodeJS.WritableStream): Promise<void> {
  const pending = waitingForRoom.get(stream);
  if (pending) return pending;
  const room = new Promise<void>((resolve) => {
    const done = (): void => {
      for (const event of ['drain', 'error', 'close']) stream.off(event, done);
      waitingForRoom.delete(stream);
      resolve();
    };
    for (const event of ['drain', 'error', 'close']) stream.on(event, done);
  });
  waitingForRoom.set(stream, room);
  return room;
}

/**
 * Calls `onGone` once when stdout or stderr can no longer be written (`| head`, a closed
 * terminal: EPIPE, EIO). A reader who went away is treated like Ctrl-C: the job is stopped the
 * documented way instead of berth dying with the container left behind.
 */
function watchOutput(io: Output, onGone: (stream: 'stdout' | 'stderr', why: string) => void) {
  let gone = false;
  for (const name of ['stdout', 'stderr'] as const) {
    // Closed before the job started (an error main() already swallowed).
    if ((io[name] as { destroyed?: boolean }).destroyed && !gone) {
      gone = true;
      onGone(name, 'closed');
    }
  }
  const listeners = (['stdout', 'stderr'] as const).map((name) => {
    const listener = (err: NodeJS.ErrnoException): void => {
      if (gone) return;
      gone = true;
      onGone(name, err.code ?? err.message);
    };
    io[name].on('error', listener);
    return () => io[name].off('error', listener);
  });
  return (): void => {
    for (const off of listeners) off();
  };
}

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

async function runCommand(
  dir: string,
  words: string[],
  raw: RawRunOptions & {
    json?: boolean;
    dockerConfigDir?: string;
    runnerImage?: string;
    stack?: string;
    stackSettings?: string;
    projectRoot?: string;
    tool?: string;
    toolVersion?: string;
    type?: string;
    autoDeploy?: boolean;
  },
  io: Output,
  env: NodeJS.ProcessEnv,
): Promise<number> {
  // Public pools are shared: memory and CPU limits are on unless the run or the operator sets them.
  const publicLimits =
    raw.pool === 'public'
      ? {
          memory:
            raw.memory ??
            (env.BERTH_PUBLIC_MEMORY_LIMIT?.trim() || PUBLIC_POOL_DEFAULT_LIMITS.memory),
          cpus: raw.cpus ?? (env.BERTH_PUBLIC_CPU_LIMIT?.trim() || PUBLIC_POOL_DEFAULT_LIMITS.cpus),
        }
      : {};
  const options = checkRunOptions(
    {
      ...raw,
      ...publicLimits,
      allowedRegistries: raw.allowedRegistries ?? env.BERTH_PUBLIC_ALLOWED_REGISTRIES,
      savedWorkspaceLimit:
        raw.savedWorkspaceLimit ?? (env.BERTH_SAVED_WORKSPACE_LIMIT?.trim() || undefined),
    },
    env,
  );
  const settings = readSettings(env);
  // Its run logs, tool downloads and image checks go there: a path that cannot be a directory is
  // said now (Node's own recursive mkdir never returns under /proc).
  makeDirectory(settings.stateDir, 'state directory', 'BERTH_STATE_DIR');
  const keepRuns = keepRunsFrom(env);
  const dockerConfig =
    options.pool === 'private' ? dockerConfigDirFrom(env, raw.dockerConfigDir) : null;
  const sourceDir = path.resolve(dir);
  const type = (raw.type ?? 'task') as RunType;
  if (!RUN_TYPES.includes(type)) {
    throw new BerthError(
      'BERTH_USAGE',
      `--type ${JSON.stringify(raw.type)}: use one of ${RUN_TYPES.join(', ')}`,
    );
  }
  const command = type === 'task' ? await resolveTask(sourceDir, words, dir) : '';
  const runId = newRunId();
  const engine = EngineClient.fromEnv(env);
  // The engine check and the sweep of leftovers overlap with reading the configuration; a
  // configuration error is still the one reported when both fail.
  const reached = engine.ping().then(
    () => null,
    (err: unknown) => (err instanceof Error ? err : new Error(String(err))),
  );
  const executor = new DockerExecutor(engine, {
    jobUsers: new FileJobUserCache(path.join(settings.stateDir, 'image-users')),
    workspaceRoot: workspaceRoot(settings),
    workspace: readWorkspaceDelivery(env),
  });
  // Leftovers of berth processes that died (SIGKILL, power loss) go before this run starts.
  const sweep = reached.then((err) =>
    err ? [] : executor.removeOrphans(isLauncherAlive, new Date()).catch(() => [] as string[]),
  );
  try {
    const planned = await planRun({
      type,
      sourceDir,
      runId,
      stack: raw.stack ?? (path.basename(sourceDir) || 'root'),
      stackSettingsFile: raw.stackSettings,
      runnerImage: raw.runnerImage,
      projectRoot: raw.projectRoot,
      tool: raw.tool,
      toolVersion: raw.toolVersion,
      command,
      autoDeploy: raw.autoDeploy === true,
      settings: options,
      dockerConfig,
      env,
      stateDir: settings.stateDir,
      defaultRunnerImage: settings.defaultRunnerImage,
      launcherId: currentLauncherId(),
      confirm: (plan, signal) => askToApply(plan, io, signal),
    });
    // The human view takes the job's output as bytes; --json needs it as text in its events.
    const view = raw.json ? { emit: jsonRenderer(io), output: undefined } : humanView(io);
    const unreachable = await reached;
    if (unreachable) throw unreachable;
    // The run starts now: older runs' directories beyond BERTH_KEEP_RUNS go (never throws; a
    // run refused before this point removes nothing).
    const { failed } = await pruneRunDirectories(settings.stateDir, keepRuns, new Date());
    // Best effort: a state directory that cannot be written is said by the stored log's warning.
    await claimRunDirectory(settings.stateDir, runId, currentLauncherId()).catch(() => undefined);
    const { usesDefaultImage, ...runOptions } = planned;
    const running = startRun(
      {
        ...runOptions,
        startWarnings: failed.length
          ? [
              `could not remove ${failed.length} old run director${failed.length === 1 ? 'y' : 'ies'} beyond BERTH_KEEP_RUNS, e.g. ${failed[0]?.dir} (${failed[0]?.why}); remove them yourself or fix what keeps them`,
            ]
          : undefined,
        buildMissingImage: usesDefaultImage
          ? (onLine) => buildRunnerImage(engine, planned.image, onLine)
          : undefined,
      },
      { executor, emit: view.emit, output: view.output, outputReady: () => drained(io), runId },
    );
    const onSignal = (): void => running.cancel();
    // A closed terminal stops the job as Ctrl-C does; left to its default, SIGHUP would end berth
    // at once and leave the container behind.
    const onHangup = (): void => {
      io.stderr.write('berth: SIGHUP (the terminal closed): stopping the job as on Ctrl-C\n');
      running.cancel();
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
    process.on('SIGHUP', onHangup);
    const unwatch = watchOutput(io, (stream, why) => {
      // stderr still has a reader when stdout's went away; the other way round, nothing to tell.
      if (stream === 'stdout')
        io.stderr.write(`berth: stdout was closed (${why}): stopping the job as on Ctrl-C\n`);
      running.cancel();
    });
    try {
      const removed = await sweep;
      if (removed.length > 0 && !raw.json) {
        io.stderr.write(
          `berth: removed ${removed.length} container(s) left by berth processes that are gone: ${removed.join(', ')}\n`,
        );
      }
      const summary = await running.result;
      return summary.exitCode;
    } finally {
      await releaseRunDirectory(settings.stateDir, runId);
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      process.off('SIGHUP', onHangup);
      unwatch();
    }
  } finally {
    engine.close();
  }
}

async function resolveTask(sourceDir: string, words: string[], given: string): Promise<string> {
  let info;
  try {
    info = await stat(sourceDir);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    // `berth run echo hi`: a command given without `--` before it is taken for DIR.
    const maybeCommand = code === 'ENOENT' && !given.includes('/') && given !== '.';
    throw new BerthError(
      'BERTH_WORKSPACE_UNREADABLE',
      `job directory ${sourceDir} does not exist or cannot be read (${code ?? String(err)})`,
      {
        cause: err,
        ...(maybeCommand
          ? {
              hint: `If ${given} is the command, put -- before it (words before -- are DIR and options): berth run -- ${[given, ...words].map(shellQuote).join(' ')}`,
            }
          : {}),
      },
    );
  }
  if (!info.isDirectory()) {
    throw new BerthError('BERTH_WORKSPACE_UNREADABLE', `${sourceDir} is not a directory`);
  }
  if (words.length > 0) return taskScript(words);
  const taskFile = path.join(sourceDir, TASK_FILE);
  const text = await readJobFile(sourceDir, TASK_FILE);
  if (text === null) {
    throw new BerthError(
      'BERTH_USAGE',
      `no command to run: nothing after -- and no ${TASK_FILE} in ${sourceDir}`,
      {
        hint: `Pass the command after --, e.g. \`berth run ${path.relative(process.cwd(), sourceDir) || '.'} -- terraform plan\`, or write it into ${TASK_FILE}.`,
      },
    );
  }
  if (text.trim() === '')
    throw new BerthError('BERTH_USAGE', `${taskFile} is empty`, {
      hint: 'Put the shell commands of the task in it, or pass the command after --.',
    });
  return text;
}
