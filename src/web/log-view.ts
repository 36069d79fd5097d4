/**
 * The run page's log: colours rendered from ANSI codes (ansi.ts), every text in text nodes,
 * masked values (`*****`) and berth's own notes (`[berth: …]`, such as the mark where a long
 * log was cut between its head and tail) marked. It keeps a bounded window of lines in the page
 * (`maxLines`), so the page stays usable while it follows a run that writes 50 MB: text arrives
 * in batches, is drawn once per frame, at most LINES_PER_FRAME lines a frame; text that would
 * scroll out of the window at once is never drawn; lines out of view are not laid out (CSS
 * content-visibility). The whole log is one click away (the download link).
 *
 * Auto-scroll follows the end while the reader is there; scrolling up stops it (a button leads
 * back), and scrolling to the end again resumes it.
 */
import { AnsiParser, type Segment } from './ansi.js';
import { h } from './dom.js';

const MASK = '*****';
/** Lines drawn in one frame at most: the rest waits for the next frames. */
const LINES_PER_FRAME = 400;
/** How close to the end (in pixels) still counts as "at the end". */
const END_SLACK = 24;

export class LogView {
  readonly element: HTMLElement;
  private readonly lines: HTMLElement;
  private readonly notice: HTMLElement;
  private readonly jump: HTMLButtonElement;
  private readonly parser = new AnsiParser();
  private pending: string[] = [];
  private scheduled = false;
  /** The last line, still open: the next text continues it. */
  private open: HTMLElement | null = null;
  private hidden = 0;
  private count = 0;
  private following = true;
  /** Called after each drawing with the number of lines drawn (for measuring). */
  onDrawn: (() => void) | null = null;

  constructor(
    private readonly maxLines = 5000,
    downloadUrl: string,
  ) {
    this.lines = h('div', { class: 'log-lines' });
    this.notice = h(
      'p',
      { class: 'log-notice', hidden: true },
      h('span', { class: 'log-hidden' }),
      ' ',
      h('a', { href: downloadUrl, download: '' }, 'download the whole log'),
    );
    this.jump = h(
      'button',
      { type: 'button', class: 'log-jump', hidden: true, onclick: () => this.follow() },
      'Follow the end of the log',
    );
    const scroller = h(
      'div',
      {
        class: 'log',
        tabindex: 0,
        role: 'log',
        'aria-live': 'off',
        'aria-label': 'Run log',
        onscroll: () => this.scrolled(),
      },
      this.notice,
      this.lines,
    );
    this.element = h('div', { class: 'log-frame' }, scroller, this.jump);
  }

  private get scroller(): HTMLElement {
    return this.element.firstElementChild as HTMLElement;
  }

  /** Adds text as the job wrote it (lines end with \n; a chunk may end mid-line). */
  append(text: string): void {
    if (text.length === 0) return;
    this.pending.push(text);
    if (!this.scheduled) {
      this.scheduled = true;
      requestAnimationFrame(() => this.draw());
    }
  }

  /** The number of lines the page holds now. */
  get shownLines(): number {
    return this.count;
  }

  private draw(): void {
    this.scheduled = false;
    let text = this.pending.join('');
    this.pending = [];
    const cut = startOfLastLines(text, this.maxLines);
    if (cut >= 0) {
      // Everything before the last maxLines lines would leave the window at once: draw none of
      // it, and drop what the page holds; only its colours carry on.
      const skipped = text.slice(0, cut);
      this.hidden += this.count + countLines(skipped);
      this.parser.skip(skipped);
      this.lines.replaceChildren();
      this.count = 0;
      this.open = null;
      text = text.slice(cut + 1);
    }
    // Only so many lines this frame; the rest is drawn in the next ones (or skipped, if more
    // text arrives meanwhile than the window holds).
    const later = indexAfterLines(text, LINES_PER_FRAME);
    if (later >= 0) {
      this.pending.push(text.slice(later));
      text = text.slice(0, later);
      this.scheduled = true;
      requestAnimationFrame(() => this.draw());
    }
    const pieces = text.split('\n');
    // pieces[0] continues the open line; each later piece starts a new line.
    if (pieces[0]) this.fill(this.openLine(), pieces[0]);
    const fragment = document.createDocumentFragment();
    for (const piece of pieces.slice(1)) {
      const line = h('div', { class: 'line' });
      this.fill(line, piece);
      fragment.appendChild(line);
      this.open = line;
      this.count += 1;
    }
    this.lines.appendChild(fragment);
    while (this.count > this.maxLines && this.lines.firstChild) {
      this.lines.firstChild.remove();
      this.count -= 1;
      this.hidden += 1;
    }
    if (this.hidden > 0) {
      this.notice.hidden = false;
      (this.notice.firstElementChild as HTMLElement).textContent =
        `${this.hidden.toLocaleString()} earlier lines are not shown here:`;
    }
    if (this.following) this.scroller.scrollTop = this.scroller.scrollHeight;
    this.onDrawn?.();
  }

  private openLine(): HTMLElement {
    if (!this.open) {
      this.open = h('div', { class: 'line' });
      this.lines.appendChild(this.open);
      this.count += 1;
    }
    return this.open;
  }

  private fill(line: HTMLElement, text: string): void {
    if (text.startsWith('[berth: ')) line.classList.add('note');
    for (const segment of this.parser.parse(text.replace(/\r$/, ''))) {
      line.appendChild(segmentNode(segment));
    }
  }

  private scrolled(): void {
    const s = this.scroller;
    const atEnd = s.scrollTop + s.clientHeight >= s.scrollHeight - END_SLACK;
    this.following = atEnd;
    this.jump.hidden = atEnd;
  }

  /** Scrolls to the end and follows it again. */
  follow(): void {
    this.following = true;
    this.jump.hidden = true;
    this.scroller.scrollTop = this.scroller.scrollHeight;
  }
}

/**
 * Where the last `lines` lines of `text` start: the index of the newline before them, or -1 when
 * the text has no more than that many newlines (cheap: it looks only at the end of the text).
 */
export function startOfLastLines(text: string, lines: number): number {
  let at = text.length;
  for (let n = 0; n <= lines; n += 1) {
    at = text.lastIndexOf('\n', at - 1);
    if (at < 0) return -1;
  }
  return at;
}

/** The index just after the `lines`-th newline of `text`, or -1 when it has no more. */
function indexAfterLines(text: string, lines: number): number {
  let at = -1;
  for (let n = 0; n < lines; n += 1) {
    at = text.indexOf('\n', at + 1);
    if (at < 0) return -1;
  }
  return at + 1 < text.length ? at + 1 : -1;
}

function countLines(text: string): number {
  let count = 0;
  for (let at = text.indexOf('\n'); at >= 0; at = text.indexOf('\n', at + 1)) count += 1;
  return count;
}

/** A segment's text in its style, with masked values marked for the eye and screen readers. */
function segmentNode(segment: Segment): Node {
  const parts = segment.text.split(MASK);
  const span = h('span', segment.classes.length ? { class: segment.classes.join(' ') } : {});
  parts.forEach((part, i) => {
    if (i > 0) span.appendChild(h('span', { class: 'masked', title: 'masked value' }, MASK));
    if (part) span.appendChild(document.createTextNode(part));
  });
  return segment.classes.length === 0 && parts.length === 1
    ? document.createTextNode(segment.text)
    : span;
}
