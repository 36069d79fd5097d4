/**
 * The text pipeline of a run's output: UTF-8 decoding (a character may be split across chunks),
 * `::add-mask` directives, and secret masking, per stream. A value masked on one stream or in one
 * phase is masked everywhere from then on.
 */
import { StringDecoder } from 'node:string_decoder';
import { ADD_MASK_LINE_LIMIT, AddMaskFilter } from '../domain/hook-script.js';
import { ADD_MASK_LIMITS, MaskValues, SecretMasker, maskAll } from '../domain/log-masker.js';
import type { OutputStream } from '../executor/executor.js';
import { BerthError, coerceError } from '../domain/errors.js';

interface StreamState {
  decoder: StringDecoder;
  directives: AddMaskFilter;
  masker: SecretMasker;
}

export interface PhaseOutputPipe {
  /** Raw bytes of a stream in; masked text out through `deliver`. */
  write(stream: OutputStream, chunk: Buffer): void;
  /** The phase ended: releases whatever was held back. */
  end(): void;
}

export class OutputMasking {
  /** One set for the whole run: every stream's masker sees a value as soon as it is added. */
  private readonly values: MaskValues;
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
    this.values = new MaskValues(secrets);
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

  /** A pipe for one phase's output. */
  forPhase(deliver: (stream: OutputStream, text: string) => void): PhaseOutputPipe {
    const streams = new Map<OutputStream, StreamState>();
    const send = (stream: OutputStream, text: string): void => {
      if (text.length > 0) deliver(stream, text);
    };
    return {
      write: (stream, chunk) => {
        let state = streams.get(stream);
        if (!state) {
          state = {
            decoder: new StringDecoder('utf8'),
            masker: new SecretMasker(this.values),
            directives: new AddMaskFilter({
              mask: (value) => this.addSecret(value),
              overlong: () =>
                this.warnOnce(
                  'line',
                  `::add-mask: a line longer than ${ADD_MASK_LINE_LIMIT} characters was hidden and its value not added; print the directive on a line of its own with a shorter value`,
                ),
            }),
          };
          streams.set(stream, state);
        }
        send(stream, state.masker.write(state.directives.write(state.decoder.write(chunk))));
      },
      end: () => {
        for (const [stream, state] of streams) {
          const rest = state.directives.write(state.decoder.end()) + state.directives.flush();
          send(stream, state.masker.write(rest) + state.masker.flush());
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
