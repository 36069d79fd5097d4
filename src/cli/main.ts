/** berth's command line: parses arguments, runs one command, turns errors into exit codes. */
import { Command, CommanderError } from 'commander';
import {
  BerthError,
  ERROR_CATALOGUE,
  EXIT_CODES,
  coerceError,
  exitCodeForError,
} from '../domain/errors.js';
import { errorText, fixText, type Output } from './render.js';
import { registerDoctor } from './doctor.js';
import { registerServer, registerUp } from './server.js';
import { registerWorker } from './worker.js';
import { serverOnlyVariablesWarning, unknownVariablesWarning } from '../domain/worker-settings.js';
import { refusedValueFix, registerRemote } from './remote.js';
import { registerImage } from './image.js';
import { registerRun } from './run.js';
import { registerRunnerImage } from './runner-image.js';

export const VERSION = '0.1.0';

export async function main(argv: string[], io: Output, env: NodeJS.ProcessEnv): Promise<number> {
  let exitCode: number = EXIT_CODES.success;
  const setExit = (code: number): void => {
    exitCode = code;
  };
  const program = new Command('berth')
    .description('Run infrastructure-as-code jobs, each in a fresh, isolated container.')
    .version(VERSION)
    .exitOverride()
    // A subcommand gets all its own words, `--` included (see splitAtDoubleDash in run.ts).
    .enablePositionalOptions()
    .configureOutput({
      writeOut: (text) => io.stdout.write(text),
      writeErr: (text) => io.stderr.write(text),
      // The parser's own errors (an unknown option, a missing argument) as berth says errors.
      // One line: commander puts its "(Did you mean …?)" on a line of its own.
      outputError: (text, write) =>
        write(`berth: ${text.trim().replace(/\s*\n\s*/g, ' ')} [BERTH_USAGE]\n`),
    });
  // A reader that went away (EPIPE, a closed terminal) must not end berth with an unhandled
  // 'error' event: `berth run` stops its job in order (see watchOutput), and whatever berth
  // writes after that has nobody to read it.
  for (const stream of [io.stdout, io.stderr]) stream.on('error', ignoreOutputError);
  registerRun(program, io, env, setExit);
  registerRunnerImage(program, io, env, setExit);
  registerImage(program, io, env, setExit);
  registerDoctor(program, io, env, setExit);
  registerServer(program, io, env, VERSION);
  registerUp(program, io, env, VERSION);
  registerWorker(program, io, env, VERSION);
  registerRemote(program, io, env, setExit);
  const commandUsed = watchCommandUsed(program);
  // A misspelt BERTH_ variable sets nothing: said once, for every command, before it starts
  // (on stderr, so that a --json stream on stdout stays JSON).
  program.hook('preAction', (_program, action) => {
    // `berth stack env set STACK NAME` takes NAME's value from this environment: a variable for
    // the stack (BERTH_GIT_TOKEN, say), not a setting of berth's.
    const given = action.name() === 'set' && action.parent?.name() === 'env' ? action.args[1] : '';
    const unknown = unknownVariablesWarning(
      given && !given.includes('=')
        ? Object.fromEntries(Object.entries(env).filter(([name]) => name !== given))
        : env,
    );
    if (unknown) io.stderr.write(`berth: ${unknown}\n`);
    // A worker's own machine may carry the server's settings by mistake (the lease time and the
    // forget time read as worker settings): said, as they change nothing here.
    const elsewhere =
      action.name() === 'worker' && action.args.length === 0
        ? serverOnlyVariablesWarning(env)
        : null;
    if (elsewhere) io.stderr.write(`berth: ${elsewhere}\n`);
  });
  try {
    await program.parseAsync(argv, { from: 'user' });
    return exitCode;
  } catch (err) {
    if (err instanceof CommanderError) {
      // Help and version end here too, with their own (zero) exit code.
      if (err.exitCode === 0) return 0;
      // Commander has printed its own message on stderr already (or the help, for a command
      // given without its subcommand): the fix names the command's own help.
      const hint = usageHint(commandUsed());
      if (err.code !== 'commander.help') io.stderr.write(fixText(hint));
      if (wantsJson(argv))
        printJsonError(
          io,
          new BerthError('BERTH_USAGE', err.message.replace(/^error: /, ''), { hint }),
        );
      return EXIT_CODES.usage;
    }
    const error = withCommandHint(coerceError(err), commandUsed());
    printError(io, error);
    if (wantsJson(argv)) printJsonError(io, error);
    return exitCodeForError(error);
  }
}

/**
 * The command commander went into (`berth runs logs` for `berth runs logs RUN --bogus`), followed
 * through every level of subcommands; the program itself before any.
 */
function watchCommandUsed(program: Command): () => Command {
  let used = program;
  const watch = (command: Command): void => {
    if (command.commands.length === 0) return;
    command.hook('preSubcommand', (_parent, sub) => {
      used = sub;
    });
    for (const sub of command.commands) watch(sub);
  };
  watch(program);
  return () => used;
}

/** The words that run a command: `berth stack env set`. */
function commandWords(command: Command): string {
  const names: string[] = [];
  for (let c: Command | null = command; c?.parent; c = c.parent) names.unshift(c.name());
  return ['berth', ...names].join(' ');
}

/** The fix of a usage error: the help of the command the user ran, not of another one. */
function usageHint(command: Command): string {
  if (!command.parent)
    return 'Run `berth --help` for the commands, and `berth COMMAND --help` for the options of one.';
  const words = commandWords(command);
  return command.commands.length > 0
    ? `Run \`${words} --help\` for its subcommands (and \`${words} SUBCOMMAND --help\` for one's options).`
    : `Run \`${words} --help\` for its arguments, options and the values they take.`;
}

/**
 * A usage error with the catalogue's generic fix, or a value the server refused with the generic
 * `berth COMMAND --help` fix, gets the fix for the command used.
 */
function withCommandHint(error: BerthError, command: Command): BerthError {
  const hint =
    error.code === 'BERTH_USAGE' && error.hint === ERROR_CATALOGUE.BERTH_USAGE.hint
      ? usageHint(command)
      : error.code === 'BERTH_SERVER_REFUSED' && error.hint === refusedValueFix() && command.parent
        ? refusedValueFix(commandWords(command))
        : null;
  if (hint === null) return error;
  return new BerthError(error.code, error.message, {
    hint,
    ...(error.cause === undefined ? {} : { cause: error.cause }),
  });
}

/** `--json` among the options (not among the job's words after `--`). */
function wantsJson(argv: readonly string[]): boolean {
  const end = argv.indexOf('--');
  return (end < 0 ? argv : argv.slice(0, end)).includes('--json');
}

/**
 * A failure before the run began (bad option, bad configuration, no engine) ends a `--json`
 * stream with one object, so a script reading stdout always gets the code, message and fix.
 */
function printJsonError(io: Output, error: BerthError): void {
  const exitCode = exitCodeForError(error);
  io.stdout.write(
    `${JSON.stringify({
      type: 'error',
      ts: new Date().toISOString(),
      exitCode,
      error: { code: error.code, message: error.message, hint: error.hint },
    })}\n`,
  );
}

function ignoreOutputError(): void {}

export function printError(io: Output, error: BerthError): void {
  io.stderr.write(errorText(error));
  if (error.kind === 'internal' && error.cause instanceof Error && error.cause.stack) {
    io.stderr.write(`${error.cause.stack}\n`);
  }
}
