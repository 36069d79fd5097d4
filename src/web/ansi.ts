/**
 * Terminal colours in a log, made safe for the page: SGR sequences (ESC [ … m) become style
 * classes on text segments; every other escape sequence (cursor moves, titles, hyperlinks) is
 * dropped. The text itself is never interpreted: the page puts it in text nodes. The parser is
 * a state machine fed line by line, so colours carry across lines and chunks as in a terminal.
 */
export interface Style {
  fg: number | null;
  bg: number | null;
  bold: boolean;
  dim: boolean;
  italic: boolean;
  underline: boolean;
}

export interface Segment {
  text: string;
  /** Class names for the segment's style ("fg-1", "bold"…), empty for plain text. */
  classes: string[];
}

const PLAIN: Style = {
  fg: null,
  bg: null,
  bold: false,
  dim: false,
  italic: false,
  underline: false,
};

// CSI … final byte, OSC … BEL/ST, or a lone two-byte escape.
const ESCAPE = /\u001b(?:\[([0-9;:?]*)([@-~])|\][^\u0007\u001b]*(?:\u0007|\u001b\\)?|[@-Z\\-_])/g;

export class AnsiParser {
  private style: Style = { ...PLAIN };

  /** The segments of one piece of text, in the style left by the pieces before it. */
  parse(text: string): Segment[] {
    const segments: Segment[] = [];
    let last = 0;
    for (const match of text.matchAll(ESCAPE)) {
      const index = match.index ?? 0;
      if (index > last) segments.push(this.segment(text.slice(last, index)));
      last = index + match[0].length;
      if (match[2] === 'm') this.apply(match[1] ?? '');
    }
    if (last < text.length) segments.push(this.segment(text.slice(last)));
    // Other control characters (a lone ESC cut off at a chunk's end, bells, backspaces) go.
    return segments
      .map((s) => ({ ...s, text: s.text.replace(/[\u0000-\u0008\u000b-\u001f\u007f]/g, '') }))
      .filter((s) => s.text.length > 0);
  }

  /**
   * Text that is not shown (it scrolled out of the page's window before it was drawn): only its
   * effect on the style counts. Only its last 64 KiB are read, so a 50 MB log costs no more than
   * a short one; a colour set earlier than that and never reset is the one thing lost.
   */
  skip(text: string): void {
    this.parse(text.slice(-65_536));
  }

  private segment(text: string): Segment {
    const s = this.style;
    const classes: string[] = [];
    if (s.fg !== null) classes.push(`fg-${s.fg}`);
    if (s.bg !== null) classes.push(`bg-${s.bg}`);
    if (s.bold) classes.push('bold');
    if (s.dim) classes.push('dim');
    if (s.italic) classes.push('italic');
    if (s.underline) classes.push('underline');
    return { text, classes };
  }

  private apply(parameters: string): void {
    const codes = parameters === '' ? [0] : parameters.split(/[;:]/).map((p) => Number(p) || 0);
    for (let i = 0; i < codes.length; i += 1) {
      const code = codes[i] as number;
      if (code === 0) this.style = { ...PLAIN };
      else if (code === 1) this.style.bold = true;
      else if (code === 2) this.style.dim = true;
      else if (code === 3) this.style.italic = true;
      else if (code === 4) this.style.underline = true;
      else if (code === 22) this.style.bold = this.style.dim = false;
      else if (code === 23) this.style.italic = false;
      else if (code === 24) this.style.underline = false;
      else if (code >= 30 && code <= 37) this.style.fg = code - 30;
      else if (code >= 90 && code <= 97) this.style.fg = code - 90 + 8;
      else if (code === 39) this.style.fg = null;
      else if (code >= 40 && code <= 47) this.style.bg = code - 40;
      else if (code >= 100 && code <= 107) this.style.bg = code - 100 + 8;
      else if (code === 49) this.style.bg = null;
      else if (code === 38 || code === 48) {
        // 256 colours: the first 16 map to the palette; others and true colour are left plain.
        const mode = codes[i + 1];
        const colour = mode === 5 && (codes[i + 2] ?? 99) < 16 ? (codes[i + 2] as number) : null;
        if (code === 38) this.style.fg = colour;
        else this.style.bg = colour;
        i += mode === 5 ? 2 : mode === 2 ? 4 : 1;
      }
    }
  }
}
