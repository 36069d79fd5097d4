/**
 * Masking a log that is already stored as chunks, for values learnt after it was written (a job's
 * `::add-mask` mid-run): a value is found in the run's whole text, so one split across two chunks
 * (a batch boundary) is hidden too. Each chunk keeps its place (the same count of chunks comes
 * back, so sequence numbers stay); an occurrence becomes one MASK in the chunk where it starts
 * and nothing in the chunks it runs on into.
 */
import { MASK } from './log-masker.js';

interface Span {
  start: number;
  end: number;
}

/** Where the values occur in `text`, overlapping occurrences merged, in order. */
function occurrences(text: string, values: readonly string[]): Span[] {
  const spans: Span[] = [];
  for (const value of values) {
    if (value.length === 0) continue;
    for (let at = text.indexOf(value); at !== -1; at = text.indexOf(value, at + 1))
      spans.push({ start: at, end: at + value.length });
  }
  spans.sort((a, b) => a.start - b.start);
  const merged: Span[] = [];
  for (const span of spans) {
    const last = merged.at(-1);
    if (last && span.start <= last.end) last.end = Math.max(last.end, span.end);
    else merged.push({ ...span });
  }
  return merged;
}

/** The chunks with every occurrence of `values` masked; unchanged chunks are returned as they are. */
export function remaskChunks(texts: readonly string[], values: readonly string[]): string[] {
  const whole = texts.join('');
  const spans = occurrences(whole, values);
  if (spans.length === 0) return [...texts];
  const out: string[] = [];
  let offset = 0;
  let next = 0;
  for (const text of texts) {
    const start = offset;
    const end = offset + text.length;
    offset = end;
    let pos = start;
    let result = '';
    while (next < spans.length && (spans[next] as Span).start < end) {
      const span = spans[next] as Span;
      if (span.start >= pos) {
        result += whole.slice(pos, span.start) + MASK;
      }
      pos = Math.max(pos, Math.min(span.end, end));
      if (span.end <= end) next += 1;
      else break;
    }
    out.push(pos === start && result === '' ? text : result + whole.slice(pos, end));
  }
  return out;
}
