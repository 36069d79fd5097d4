/**
 * Streaming secret masking in linear time. A job writes its output in arbitrary chunks, so a
 * secret can arrive split across two writes ("hunt" then "er2"). One Aho–Corasick automaton over
 * all values finds every occurrence of every value in one pass over the output, each character
 * looked at once (plus at most one failure step per character, amortised), whatever the number
 * or the length of the values: a job cannot make masking slow by choosing what it prints or
 * which values it adds with `::add-mask`.
 *
 * What is hidden: every character inside an occurrence of any value. Overlapping occurrences
 * ("abc" and "cde" in "abcde") are hidden as one `*****`, so no part of either value shows.
 * Only the text that may still become part of an occurrence is held back (at most the longest
 * value, less one character), and it is released as soon as the next chunk or the end of the
 * stream decides it.
 */

export const MASK = '*****';

/** Limits on the values a job adds with `::add-mask` (configured secrets are not limited). */
export const ADD_MASK_LIMITS = {
  /** Longest value a job may add. */
  valueChars: 4096,
  /** Values a job may add in one run. */
  values: 100,
} as const;

const CODES = 0x10000;

/** The automaton over a fixed set of values. Node 0 is the root; 0 also means "no node". */
class Automaton {
  /** Children of the root, indexed by UTF-16 code unit: the hot path of every scan. */
  readonly rootNext = new Int32Array(CODES);
  /** Children of the other nodes, keyed node * 0x10000 + code unit. */
  readonly next = new Map<number, number>();
  /**
   * Most nodes of a value's chain have one child: its code unit (-1: no child; -2: several,
   * look in `next`) and index, so following a value needs no map lookup.
   */
  readonly onlyCode: Int32Array;
  readonly onlyChild: Int32Array;
  readonly fail: Int32Array;
  /** Length of the longest value that ends at this node (0: none). */
  readonly longest: Int32Array;
  /** Depth of the deepest node on this node's failure chain that has children: how far back
   * an occurrence that is not complete yet may start. */
  readonly live: Int32Array;
  /**
   * Finds the next character that starts some value. At the root every other character leads
   * back to the root, so a scan skips straight to the next match of this (global) expression:
   * the regular expression engine's native search instead of a step per character.
   */
  readonly firstChars: RegExp;
  /** The only character that starts a value, when there is one (indexOf is faster still). */
  readonly firstChar: string | null;
  /** Length of the longest value. */
  readonly longestValue: number;
  /**
   * The values, longest first, when the engine's own string search can mask them (see
   * `replaceable`); null: only the automaton can.
   */
  readonly plain: readonly string[] | null;

  constructor(values: readonly string[]) {
    const size = 1 + values.reduce((sum, v) => sum + v.length, 0);
    const depth = new Int32Array(size);
    const firstChild = new Int32Array(size);
    const sibling = new Int32Array(size);
    const label = new Uint16Array(size);
    const parent = new Int32Array(size);
    const ends = new Int32Array(size);
    this.fail = new Int32Array(size);
    this.longest = new Int32Array(size);
    this.live = new Int32Array(size);
    this.onlyCode = new Int32Array(size).fill(-1);
    this.onlyChild = new Int32Array(size);
    let nodes = 1;
    for (const value of values) {
      let node = 0;
      for (let i = 0; i < value.length; i += 1) {
        const code = value.charCodeAt(i);
        let child = this.goto(node, code);
        if (child === 0) {
          child = nodes;
          nodes += 1;
          depth[child] = (depth[node] as number) + 1;
          label[child] = code;
          parent[child] = node;
          sibling[child] = firstChild[node] as number;
          firstChild[node] = child;
          if (node === 0) this.rootNext[code] = child;
          else this.next.set(node * CODES + code, child);
          this.onlyCode[node] = this.onlyCode[node] === -1 ? code : -2;
          this.onlyChild[node] = child;
        }
        node = child;
      }
      ends[node] = value.length;
    }
    this.longestValue = values.reduce((max, v) => Math.max(max, v.length), 0);
    const firsts: string[] = [];
    for (let c = firstChild[0] as number; c !== 0; c = sibling[c] as number) {
      firsts.push(`\\u${(label[c] as number).toString(16).padStart(4, '0')}`);
    }
    this.firstChar =
      firsts.length === 1 ? String.fromCharCode(label[firstChild[0] as number] as number) : null;
    // Without the u flag the class is of UTF-16 code units, as the automaton is.
    this.firstChars = new RegExp(firsts.length > 0 ? `[${firsts.join('')}]` : '[^\\s\\S]', 'g');
    // Breadth first, so a node's failure target (always shallower) is complete before it.
    const queue = new Int32Array(size);
    let head = 0;
    let tail = 0;
    for (let c = firstChild[0] as number; c !== 0; c = sibling[c] as number) queue[tail++] = c;
    while (head < tail) {
      const node = queue[head++] as number;
      if ((depth[node] as number) > 1) {
        const code = label[node] as number;
        let f = this.fail[parent[node] as number] as number;
        for (;;) {
          const t = this.goto(f, code);
          if (t !== 0 || f === 0) {
            this.fail[node] = t;
            break;
          }
          f = this.fail[f] as number;
        }
      }
      const f = this.fail[node] as number;
      this.longest[node] =
        (ends[node] as number) > 0 ? (ends[node] as number) : (this.longest[f] as number);
      this.live[node] = firstChild[node] !== 0 ? (depth[node] as number) : (this.live[f] as number);
      for (let c = firstChild[node] as number; c !== 0; c = sibling[c] as number) queue[tail++] = c;
    }
    this.plain = replaceable(values, ends, this.fail, this.live)
      ? [...values].sort((a, b) => b.length - a.length)
      : null;
  }

  /** One transition (with failure steps); returns the new state and counts the steps taken. */
  step(state: number, code: number, steps: { n: number }): number {
    let at = state;
    for (;;) {
      steps.n += 1;
      const to = this.goto(at, code);
      if (to !== 0 || at === 0) return to;
      at = this.fail[at] as number;
    }
  }

  goto(node: number, code: number): number {
    return node === 0 ? (this.rootNext[code] as number) : (this.next.get(node * CODES + code) ?? 0);
  }
}

/** At most this many values are masked by string search (one pass per value). */
const PLAIN_VALUES = 8;
/**
 * Longest value masked by string search. The engine's search is not linear in the worst case: a
 * value of 1024 characters (`a` then `b`s) in text made of its near misses went at 1 MB/s, one
 * of 64 at 40 MB/s or more in every shape tried; longer values take the automaton.
 */
const PLAIN_LENGTH = 64;

/**
 * Whether masking the values one after the other with the engine's string search (longest first)
 * gives exactly what the automaton gives: true when no two occurrences can overlap in part (no
 * proper suffix of a value is a proper prefix of a value, itself included: then occurrences are
 * disjoint or one lies inside another, which the longer value's pass hides whole), no value holds
 * the mask's `*` (a mask next to text could then form a new occurrence), and there are few, short
 * values (see PLAIN_LENGTH).
 * A value's proper suffixes that are prefixes of values are the nodes on its end node's failure
 * chain; `live` says whether any of them has children (is a proper prefix).
 */
function replaceable(
  values: readonly string[],
  ends: Int32Array,
  fail: Int32Array,
  live: Int32Array,
): boolean {
  if (values.length === 0 || values.length > PLAIN_VALUES) return false;
  if (values.some((v) => v.length > PLAIN_LENGTH || v.includes('*'))) return false;
  for (let node = 1; node < ends.length; node += 1) {
    if ((ends[node] as number) > 0 && (live[fail[node] as number] as number) > 0) return false;
  }
  return true;
}

/**
 * A growing set of values to mask, shared by every stream of a run, with its automaton built
 * when first needed after a change (once per change, however many streams use it).
 */
export class MaskValues {
  private readonly values: string[] = [];
  private readonly known = new Set<string>();
  private built: Automaton | null = null;
  private changes = 0;

  constructor(values: Iterable<string> = []) {
    for (const value of values) this.add(value);
  }

  /** Adds a value; false when it was empty (it would mask everything) or already there. */
  add(value: string): boolean {
    if (value.length === 0 || this.known.has(value)) return false;
    this.known.add(value);
    this.values.push(value);
    this.built = null;
    this.changes += 1;
    return true;
  }

  has(value: string): boolean {
    return this.known.has(value);
  }

  get size(): number {
    return this.values.length;
  }

  /** Counts changes, so a masker knows when its automaton is out of date. */
  get version(): number {
    return this.changes;
  }

  /** @internal */
  automaton(): Automaton {
    this.built ??= new Automaton(this.values);
    return this.built;
  }
}

/**
 * Masks one stream. Positions are counted from the start of the stream (never rebased, so a
 * write costs the same however much is held back).
 */
export class SecretMasker {
  private readonly values: MaskValues;
  private version = -1;
  private auto: Automaton | null = null;
  private state = 0;
  /** Characters seen so far. */
  private pos = 0;
  /** Characters released so far; the text from here to `pos` is held in `pieces`. */
  private base = 0;
  private pieces: string[] = [];
  private pieceHead = 0;
  /** Offset already released within pieces[pieceHead]. */
  private pieceOffset = 0;
  /** Occurrences not released yet: [starts[k], ends[k]), disjoint, in order, from `first`. */
  private starts: number[] = [];
  private ends: number[] = [];
  private first = 0;
  private work = 0;

  constructor(secrets: Iterable<string> | MaskValues = []) {
    this.values = secrets instanceof MaskValues ? secrets : new MaskValues(secrets);
  }

  /** Adds a value to mask from now on. Empty values are ignored (they would mask everything). */
  addSecret(secret: string): void {
    this.values.add(secret);
  }

  /**
   * Automaton steps taken so far (one per character, plus one per failure transition): linear
   * in the output, which the tests check.
   */
  get steps(): number {
    return this.work;
  }

  /** Feeds a chunk; returns the text that is now safe to show. */
  write(chunk: string): string {
    if (this.values.size === 0 && this.pos === this.base) {
      // Nothing to mask and nothing held: the chunk passes as it is.
      this.pos += chunk.length;
      this.base = this.pos;
      return chunk;
    }
    if (this.version !== this.values.version) this.rescan();
    const auto = this.auto as Automaton;
    if (auto.plain !== null && this.first === this.ends.length) return this.replace(chunk, auto);
    this.pieces.push(chunk);
    this.scan(chunk);
    return this.release(this.pos - (auto.live[this.state] as number));
  }

  /**
   * The fast way, for values string search can mask (see `replaceable`), while no occurrence is
   * pending: each value replaced in one native pass over the text, and only the end of the text
   * run through the automaton, to find how much of it may still become a value (its state there
   * depends on the last `longestValue` characters only). That part is held back as the
   * automaton's way holds it, so the two ways can take turns when the values change.
   */
  private replace(chunk: string, auto: Automaton): string {
    const held = this.heldText();
    const text = held.length > 0 ? held + chunk : chunk;
    const steps = { n: 0 };
    let state = 0;
    for (let i = Math.max(0, text.length - auto.longestValue); i < text.length; i += 1) {
      state = auto.step(state, text.charCodeAt(i), steps);
    }
    const keep = auto.live[state] as number;
    const out = replaceAll(keep > 0 ? text.slice(0, text.length - keep) : text, auto);
    this.work += steps.n;
    this.state = state;
    this.pos += chunk.length;
    this.base = this.pos - keep;
    this.pieces = keep > 0 ? [text.slice(text.length - keep)] : [];
    this.pieceHead = 0;
    this.pieceOffset = 0;
    return out;
  }

  /** Ends the stream: whatever was held back cannot become a secret any more. */
  flush(): string {
    const auto = this.auto;
    if (auto?.plain && this.first === this.ends.length) {
      // Held text may hold a whole shorter value (the start of a longer one that never came).
      const out = replaceAll(this.heldText(), auto);
      this.pieces = [];
      this.pieceHead = 0;
      this.pieceOffset = 0;
      this.base = this.pos;
      this.state = 0;
      return out;
    }
    const out = this.release(this.pos, true);
    this.state = 0;
    return out;
  }

  /** True while some text is held back waiting for the next chunk. */
  get holding(): boolean {
    return this.pos > this.base;
  }

  /**
   * The values changed: a new automaton, and the held text (not shown yet) scanned again with
   * it, so a value added now is masked in it too. Held text is shorter than the longest value,
   * and the number of changes is bounded (see ADD_MASK_LIMITS), so this stays linear.
   */
  private rescan(): void {
    this.version = this.values.version;
    this.auto = this.values.automaton();
    const held = this.heldText();
    this.state = 0;
    this.starts.length = this.first;
    this.ends.length = this.first;
    this.pos = this.base;
    this.pieces = held.length > 0 ? [held] : [];
    this.pieceHead = 0;
    this.pieceOffset = 0;
    this.scan(held);
  }

  private scan(text: string): void {
    const auto = this.auto as Automaton;
    const { rootNext, next, onlyCode, onlyChild, fail, longest, firstChars, firstChar } = auto;
    let state = this.state;
    const start = this.pos;
    let work = 0;
    for (let i = 0; i < text.length; i += 1) {
      if (state === 0) {
        if (firstChar !== null) {
          i = text.indexOf(firstChar, i);
          if (i < 0) break;
        } else {
          firstChars.lastIndex = i;
          if (firstChars.exec(text) === null) break;
          i = firstChars.lastIndex - 1;
        }
      }
      const code = text.charCodeAt(i);
      for (;;) {
        work += 1;
        let to: number;
        if (state === 0) {
          to = rootNext[code] as number;
        } else {
          const only = onlyCode[state] as number;
          if (only === code) to = onlyChild[state] as number;
          else if (only === -2) to = next.get(state * CODES + code) ?? 0;
          else to = 0;
        }
        if (to !== 0 || state === 0) {
          state = to;
          break;
        }
        state = fail[state] as number;
      }
      const length = longest[state] as number;
      if (length > 0) this.occurrence(start + i + 1 - length, start + i + 1);
    }
    this.state = state;
    this.pos = start + text.length;
    this.work += work;
  }

  /** Records [start, end), merged with the held occurrences it overlaps. */
  private occurrence(start: number, end: number): void {
    let from = start;
    while (this.ends.length > this.first && (this.ends.at(-1) as number) > from) {
      from = Math.min(from, this.starts.pop() as number);
      this.ends.pop();
    }
    this.starts.push(from);
    this.ends.push(end);
  }

  /**
   * Releases the text before `safe` (no occurrence can start before it any more), except an
   * occurrence that reaches past it: a later one may still overlap and extend it.
   */
  private release(safe: number, all = false): string {
    let k = this.first;
    while (k < this.ends.length && (all || (this.ends[k] as number) <= safe)) k += 1;
    const until = k < this.ends.length ? Math.min(safe, this.starts[k] as number) : safe;
    let out = '';
    for (let j = this.first; j < k; j += 1) {
      out += this.take((this.starts[j] as number) - this.base);
      this.take((this.ends[j] as number) - this.base, false);
      out += MASK;
    }
    out += this.take(until - this.base);
    this.first = k;
    if (this.first > 1024 && this.first * 2 > this.ends.length) {
      this.starts.splice(0, this.first);
      this.ends.splice(0, this.first);
      this.first = 0;
    }
    return out;
  }

  /** Takes `count` held characters off the front (returning them, unless `keep` is false). */
  private take(count: number, keep = true): string {
    let out = '';
    let left = count;
    while (left > 0) {
      const piece = this.pieces[this.pieceHead] as string;
      const available = piece.length - this.pieceOffset;
      const n = Math.min(left, available);
      if (keep) {
        out += n === piece.length ? piece : piece.slice(this.pieceOffset, this.pieceOffset + n);
      }
      left -= n;
      this.base += n;
      if (n === available) {
        this.pieceHead += 1;
        this.pieceOffset = 0;
      } else {
        this.pieceOffset += n;
      }
    }
    if (this.pieceHead > 1024 || this.pieceHead === this.pieces.length) {
      this.pieces.splice(0, this.pieceHead);
      this.pieceHead = 0;
    }
    return out;
  }

  private heldText(): string {
    const rest = this.pieces.slice(this.pieceHead);
    if (rest.length > 0) rest[0] = (rest[0] as string).slice(this.pieceOffset);
    return rest.join('');
  }
}

/** Each of the automaton's plain values replaced by the mask, longest first. */
function replaceAll(text: string, auto: Automaton): string {
  let out = text;
  for (const value of auto.plain as readonly string[]) {
    if (out.includes(value)) out = out.replaceAll(value, MASK);
  }
  return out;
}

/** Masks every secret in a complete string (for messages, summaries, stored values). */
export function maskAll(text: string, secrets: Iterable<string> | MaskValues): string {
  const masker = new SecretMasker(secrets);
  return masker.write(text) + masker.flush();
}

/** Secret values shorter than this many characters are masked all the same, with a warning. */
export const SHORT_SECRET_CHARS = 4;

/**
 * A warning per secret whose value is so short that masking it also masks the same letters
 * inside ordinary words (a secret `eu` turns `europe` into `*****rope`): the log becomes hard to
 * read, and the mask hints at the value. Never names the value.
 */
export function shortSecretWarnings(secretEnv: Record<string, string>): string[] {
  return Object.entries(secretEnv)
    .filter(([, value]) => value.length > 0 && value.length < SHORT_SECRET_CHARS)
    .map(
      ([name, value]) =>
        `the secret ${name} is only ${value.length} character${value.length === 1 ? '' : 's'} long: every occurrence of it in the output is masked, inside other words too; if it is not secret, pass it as a plain variable`,
    );
}
