/**
 * The shell text of a phase with its hooks, with the reference product's chaining semantics:
 * each hook wrapped in `{ }` and chained with `&&` around the phase's command, so a failing
 * before-hook skips the command and a failing command skips the after-hooks. The status of a
 * non-strict multi-line hook is that of its last line (a failure in the middle is hidden, as in
 * the reference); with strict hooks each hook runs under `set -eu`, so any failing line, or an
 * unset variable, fails the hook and the phase.
 */

import { fromByteString, textLength } from './byte-string.js';

/** Quotes one word for /bin/sh. */
export function shellQuote(word: string): string {
  if (/^[A-Za-z0-9_@%+=:,./-]+$/.test(word)) return word;
  return `'${word.replace(/'/g, `'\\''`)}'`;
}

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
 * Strict hooks run at the top level of the phase's shell under `set -eu`, one after another:
 * inside an `&&` list POSIX shells ignore -e (even in subshells), so chaining cannot be used
 * here. A failing line ends the phase with its status at once, which skips what follows exactly
 * as the chain does; variables the hooks export stay in the session.
 */
function strictSequence(hooks: readonly string[]): string {
  return hooks.map((hook) => `set -eu\n${hook}\nset +eu\n`).join('');
}

export function phaseScript(parts: PhaseScriptParts): string {
  if (!parts.strict) {
    const chain = [...parts.before.map(block), block(parts.command), ...parts.after.map(block)];
    return `${chain.join(' &&\n')}\n`;
  }
  const after =
    parts.after.length === 0
      ? ''
      : `berth_status=$?\n[ "$berth_status" -eq 0 ] || exit "$berth_status"\n${strictSequence(parts.after)}`;
  return `${strictSequence(parts.before)}${block(parts.command)}\n${after}`;
}

/** Hooks alone, chained the same way (for after_run). */
export function hookChain(hooks: readonly string[], strict: boolean): string {
  return strict ? strictSequence(hooks) : `${hooks.map(block).join(' &&\n')}\n`;
}

/** The marker a job prints to mask a value from then on: `echo "::add-mask VALUE"`. */
export const ADD_MASK = '::add-mask ';

/**
 * The longest `::add-mask` line held back to read its value (line ending excluded). A longer one
 * is not buffered: it shows as `::add-mask *****` and the rest of it is dropped, so a job cannot
 * make berth hold an endless line in memory, nor show a value it asked to hide.
 */
export const ADD_MASK_LINE_LIMIT = 8192;

const COLON = 0x3a;
const NEWLINE = 0x0a;

export interface AddMaskEvents {
  /** A value to mask from now on. */
  mask(value: string): void;
  /** An `::add-mask` line longer than ADD_MASK_LINE_LIMIT was hidden without reading its value. */
  overlong(): void;
}

/** How the filter reads the strings it is given: text, or byte strings (see byte-string.ts). */
export interface LineForm {
  /** Length of a line in characters (UTF-16 code units), for ADD_MASK_LINE_LIMIT. */
  length(line: string): number;
  /** The line as text, for the value it names. */
  text(line: string): string;
}

const TEXT: LineForm = { length: (line) => line.length, text: (line) => line };

/** Byte strings: values and lengths are those of the text the bytes' UTF-8 holds. */
export const BYTE_LINES: LineForm = { length: textLength, text: fromByteString };

/**
 * Finds `::add-mask VALUE` lines in a job's output as it streams (a line may arrive in pieces),
 * reports VALUE so it is masked from then on, and shows the line with the value masked. Only a
 * line that may still turn out to be a directive is held back, until its end or the line limit.
 */
export class AddMaskFilter {
  private pending: string | null = null;
  /** Length of `pending` in characters (see LineForm.length). */
  private pendingLength = 0;
  private atLineStart = true;
  /** Inside an overlong directive line: dropped up to its newline. */
  private dropping = false;
  private readonly events: AddMaskEvents;

  /** `form`: byte strings in (and out) with BYTE_LINES; values are reported as text either way. */
  constructor(
    events: AddMaskEvents | ((value: string) => void),
    private readonly form: LineForm = TEXT,
  ) {
    this.events = typeof events === 'function' ? { mask: events, overlong: () => {} } : events;
  }

  write(text: string): string {
    let out = '';
    let i = 0;
    while (i < text.length) {
      if (this.dropping) {
        const newline = text.indexOf('\n', i);
        if (newline < 0) break;
        out += '\n';
        this.dropping = false;
        this.atLineStart = true;
        i = newline + 1;
        continue;
      }
      if (this.pending === null && this.atLineStart) {
        // Only a line that starts with ':' can be a directive; any other is passed on whole.
        if (text.charCodeAt(i) !== COLON) this.atLineStart = false;
        else {
          this.pending = '';
          this.pendingLength = 0;
        }
      }
      if (this.pending !== null) {
        const newline = text.indexOf('\n', i);
        if (newline < 0) {
          const piece = text.slice(i);
          this.pending += piece;
          // Counted piece by piece: a line's length is the same however it was cut.
          this.pendingLength += this.form.length(piece);
          if (!ADD_MASK.startsWith(this.pending) && !this.pending.startsWith(ADD_MASK)) {
            out += this.pending;
            this.pending = null;
            this.atLineStart = false;
          } else if (
            this.pendingLength - (this.pending.endsWith('\r') ? 1 : 0) >
            ADD_MASK_LINE_LIMIT
          ) {
            out += this.hideOverlong('');
            this.pending = null;
            this.dropping = true;
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
      // Inside a line: skip to the next line that may be a directive (this is the hot path: most
      // output has none, and a chunk then passes as one string).
      const candidate = text.indexOf('\n:', i);
      if (candidate < 0) {
        out += i === 0 ? text : text.slice(i);
        this.atLineStart = text.charCodeAt(text.length - 1) === NEWLINE;
        break;
      }
      out += text.slice(i, candidate + 1);
      this.atLineStart = true;
      i = candidate + 1;
    }
    return out;
  }

  /** Characters held back (at most one directive line within the limit). */
  get held(): number {
    return this.pending?.length ?? 0;
  }

  flush(): string {
    const rest = this.pending === null ? '' : this.finishLine(this.pending);
    this.pending = null;
    this.dropping = false;
    return rest;
  }

  private finishLine(line: string): string {
    if (!line.startsWith(ADD_MASK)) return line;
    const ending = line.endsWith('\r\n') ? '\r\n' : line.endsWith('\n') ? '\n' : '';
    // The same answer however the line was cut: an overlong line never shows its ending's \r.
    if (this.form.length(line) - ending.length > ADD_MASK_LINE_LIMIT)
      return this.hideOverlong(ending === '' ? '' : '\n');
    const value = this.form.text(line.slice(ADD_MASK.length, line.length - ending.length)).trim();
    if (value === '') return line;
    this.events.mask(value);
    return `${ADD_MASK}*****${ending}`;
  }

  private hideOverlong(ending: string): string {
    this.events.overlong();
    return `${ADD_MASK}*****${ending}`;
  }
}
