/**
 * The pipeline of a run's output, per stream: `::add-mask` directives and secret masking, on the
 * job's bytes. It works on byte strings (see domain/byte-string.ts): a Buffer taken in and given
 * out as `latin1` is a plain copy, where decoding UTF-8 and encoding it back cost most of the
 * pipeline's time; a character split across chunks needs no care, and bytes that are not UTF-8
 * pass unchanged. Secrets are matched in their UTF-8 form. A value masked on one stream or in one
 * phase is masked everywhere from then on.
 */
import { StringDecoder } from 'node:string_decoder';
import { toByteString } from '../domain/byte-string.js';
import { ADD_MASK_LINE_LIMIT, AddMaskFilter, BYTE_LINES } from '../domain/hook-script.js';
import { ADD_MASK_LIMITS, MaskValues, SecretMasker, maskAll } from '../domain/log-masker.js';
import type { OutputStream } from '../executor/executor.js';
import { BerthError, coerceError } from '../domain/errors.js';

interface StreamState {
  directives: AddMaskFilter;
  masker: SecretMasker;
}

export interface PhaseOutputPipe {
  /** Raw bytes of a stream in; masked bytes out through `deliver`, as a byte string. */
  write(stream: OutputStream, chunk: Buffer): void;
  /** The phase ended: releases whatever was held back. */
  end(): void;
}

export class OutputMasking {
  /** One set for the whole run: every stream's masker sees a value as soon as it is added. */
  private readonly values: MaskValues;
  /** The same values as UTF-8 byte strings, for the job's output. */
  private readonly byteValues: MaskValues;
  private learnt = 0;
  private readonly warned = new Set<string>();

  /**
   * `secrets` are the run's configured values (masked whatever their size); `warn` reports, once
   * per kind, an `::add-mask` the job asked for that berth did not take (see ADD_MASK_LIMITS).
   */
  constructor(
    secrets: Iterable<string>,
    private readonly warn: (message: string) => void = () => {},
    /** Told each value `::add-mask` added (output emitted before may hold it). */
    private readonly added: (value: string) => void = () => {},
  ) {
    const list = [...secrets];
    this.values = new MaskValues(list);
    this.byteValues = new MaskValues(list.map(toByteString));
  }

  /** Whether `::add-mask` added a value during the run (output before it was not masked). */
  get learntDuringRun(): boolean {
    return this.learnt > 0;
  }

  /** A value from `::add-mask`, within the limits on what a job may add. */
  addSecret(value: string): void {
    if (this.values.has(value)) return;
    if (value.length > ADD_MASK_LIMITS.valueChars) {
      this.warnOnce(
        'value',
        `::add-mask: a value longer than ${ADD_MASK_LIMITS.valueChars} characters was not added (its own line is hidden, other output is not masked for it); mask a shorter value, such as a token rather than a whole file`,
      );
      return;
    }
    if (this.learnt >= ADD_MASK_LIMITS.values) {
      this.warnOnce(
        'count',
        `::add-mask: more than ${ADD_MASK_LIMITS.values} values in one run; later ones were not added (their own lines are hidden, other output is not masked for them)`,
      );
      return;
    }
    if (this.values.add(value)) {
      this.byteValues.add(toByteString(value));
      this.learnt += 1;
      this.added(value);
    }
  }

  private warnOnce(kind: string, message: string): void {
    if (this.warned.has(kind)) return;
    this.warned.add(kind);
    this.warn(message);
  }

  /** Masks a complete text (messages, warnings). */
  mask(text: string): string {
    return maskAll(text, this.values);
  }

  /**
   * A pipe for one phase's output. `deliver` gets the masked bytes as a byte string (one
   * character per byte): what the consumers copy out of (the stored log's ring, the human
   * view's writes) without a Buffer in between.
   */
  forPhase(deliver: (stream: OutputStream, bytes: string) => void): PhaseOutputPipe {
    const streams = new Map<OutputStream, StreamState>();
    const stateOf = (stream: OutputStream): StreamState => {
      let state = streams.get(stream);
      if (!state) {
        state = {
          masker: new SecretMasker(this.byteValues),
          directives: new AddMaskFilter(
            {
              mask: (value) => this.addSecret(value),
              overlong: () =>
                this.warnOnce(
                  'line',
                  `::add-mask: a line longer than ${ADD_MASK_LINE_LIMIT} characters was hidden and its value not added; print the directive on a line of its own with a shorter value`,
                ),
            },
            BYTE_LINES,
          ),
        };
        streams.set(stream, state);
      }
      return state;
    };
    return {
      write: (stream, chunk) => {
        const state = stateOf(stream);
        const out = state.masker.write(state.directives.write(chunk.toString('latin1')));
        if (out.length > 0) deliver(stream, out);
      },
      end: () => {
        for (const [stream, state] of streams) {
          const out = state.masker.write(state.directives.flush()) + state.masker.flush();
          if (out.length > 0) deliver(stream, out);
        }
      },
    };
  }
}

/** An error with secrets masked in its message and its hint (both are shown and stored). */
export function maskError(err: unknown, mask: (text: string) => string): BerthError {
  const error = coerceError(err);
  const message = mask(error.message);
  const hint = mask(error.hint);
  if (message === error.message && hint === error.hint) return error;
  return new BerthError(error.code, message, { cause: error.cause, hint });
}

/** Masked bytes to text per stream, a character split between chunks joined again. */
export class OutputText {
  private readonly decoders = new Map<OutputStream, StringDecoder>();

  constructor(private readonly deliver: (stream: OutputStream, text: string) => void) {}

  /** `bytes`: a byte string. */
  write(stream: OutputStream, bytes: string): void {
    let decoder = this.decoders.get(stream);
    if (!decoder) {
      decoder = new StringDecoder('utf8');
      this.decoders.set(stream, decoder);
    }
    const text = decoder.write(Buffer.from(bytes, 'latin1'));
    if (text.length > 0) this.deliver(stream, text);
  }

  end(): void {
    for (const [stream, decoder] of this.decoders) {
      const text = decoder.end();
      if (text.length > 0) this.deliver(stream, text);
    }
  }
}
