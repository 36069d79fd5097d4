/**
 * The shell text of a phase with its hooks, with the reference product's chaining semantics:
 * each hook wrapped in `{ }` and chained with `&&` around the phase's command, so a failing
 * before-hook skips the command and a failing command skips the after-hooks. The status of a
 * non-strict multi-line hook is that of its last line (a failure in the middle is hidden, as in
 * the reference); with strict hooks each hook runs under `set -eu`, so any failing line, or an
 * unset variable, fails the hook and the phase.
 */

export interface PhaseScriptParts {
  before: readonly string[];
  command: string;
  after: readonly string[];
  strict: boolean;
}

function block(text: string): string {
  // The newline before `}` keeps a trailing comment in the hook from swallowing the brace.
  return `{\n${text}\n}`;
}

/**
 * A strict hook: `set -eu` in a function body does not survive `&&` lists (POSIX ignores -e
 * there), so the hook runs in a subshell with -eu and hands back what it exported through a
 * temporary file that the phase's shell then reads. Variables the hook exports still reach the
 * rest of the phase and later phases.
 */
function strictBlock(text: string): string {
  return [
    '{',
    'berth_hook_env=$(mktemp 2>/dev/null || echo "${TMPDIR:-/tmp}/berth-hook-env.$$")',
    `( set -eu\n${text}\nexport -p > "$berth_hook_env" )`,
    'berth_hook_status=$?',
    'if [ "$berth_hook_status" -eq 0 ]; then . "$berth_hook_env"; fi',
    'rm -f "$berth_hook_env"',
    '( exit "$berth_hook_status" )',
    '}',
  ].join('\n');
}

export function phaseScript(parts: PhaseScriptParts): string {
  const hook = parts.strict ? strictBlock : block;
  const chain = [...parts.before.map(hook), block(parts.command), ...parts.after.map(hook)];
  return `${chain.join(' &&\n')}\n`;
}

/** Hooks alone, chained the same way (for after_run). */
export function hookChain(hooks: readonly string[], strict: boolean): string {
  return `${hooks.map(strict ? strictBlock : block).join(' &&\n')}\n`;
}

/** The marker a job prints to mask a value from then on: `echo "::add-mask VALUE"`. */
export const ADD_MASK = '::add-mask ';

/**
 * Finds `::add-mask VALUE` lines in a job's output as it streams (a line may arrive in pieces),
 * reports VALUE so it is masked from then on, and shows the line with the value masked. Only a
 * line that may still turn out to be a directive is held back, until its end.
 */
export class AddMaskFilter {
  private pending: string | null = null;
  private atLineStart = true;

  constructor(private readonly onMask: (value: string) => void) {}

  write(text: string): string {
    let out = '';
    let i = 0;
    while (i < text.length) {
      if (this.pending === null && this.atLineStart) this.pending = '';
      if (this.pending !== null) {
        const newline = text.indexOf('\n', i);
        if (newline < 0) {
          this.pending += text.slice(i);
          if (!ADD_MASK.startsWith(this.pending) && !this.pending.startsWith(ADD_MASK)) {
            out += this.pending;
            this.pending = null;
            this.atLineStart = false;
          }
          break;
        }
        out += this.finishLine(this.pending + text.slice(i, newline + 1));
        this.pending = null;
        this.atLineStart = true;
        i = newline + 1;
        continue;
      }
      const newline = text.indexOf('\n', i);
      if (newline < 0) {
        out += text.slice(i);
        this.atLineStart = false;
        break;
      }
      out += text.slice(i, newline + 1);
      this.atLineStart = true;
      i = newline + 1;
    }
    return out;
  }

  flush(): string {
    const rest = this.pending === null ? '' : this.finishLine(this.pending);
    this.pending = null;
    return rest;
  }

  private finishLine(line: string): string {
    if (!line.startsWith(ADD_MASK)) return line;
    const ending = line.endsWith('\r\n') ? '\r\n' : line.endsWith('\n') ? '\n' : '';
    const value = line.slice(ADD_MASK.length, line.length - ending.length).trim();
    if (value === '') return line;
    this.onMask(value);
    return `${ADD_MASK}*****${ending}`;
  }
}
