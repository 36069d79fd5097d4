/**
 * The text pipeline of a run's output: UTF-8 decoding (a character may be split across chunks),
 * `::add-mask` directives, and secret masking, per stream. A value masked on one stream or in one
 * phase is masked everywhere from then on.
 */
import { StringDecoder } from 'node:string_decoder';
import { AddMaskFilter } from '../domain/hook-script.js';
import { SecretMasker, maskAll } from '../domain/log-masker.js';
import type { OutputStream } from '../executor/executor.js';

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
  private readonly secrets: string[];
  private readonly live = new Set<SecretMasker>();

  constructor(secrets: Iterable<string>) {
    this.secrets = [...secrets].filter((s) => s.length > 0);
  }

  private learnt = false;

  /** Whether `::add-mask` added a value during the run (output before it was not masked). */
  get learntDuringRun(): boolean {
    return this.learnt;
  }

  addSecret(value: string): void {
    if (!this.secrets.includes(value)) {
      this.secrets.push(value);
      this.learnt = true;
    }
    for (const masker of this.live) masker.addSecret(value);
  }

  /** Masks a complete text (messages, warnings). */
  mask(text: string): string {
    return maskAll(text, this.secrets);
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
          const masker = new SecretMasker(this.secrets);
          this.live.add(masker);
          state = {
            decoder: new StringDecoder('utf8'),
            masker,
            directives: new AddMaskFilter((value) => this.addSecret(value)),
          };
          streams.set(stream, state);
        }
        send(stream, state.masker.write(state.directives.write(state.decoder.write(chunk))));
      },
      end: () => {
        for (const [stream, state] of streams) {
          const rest = state.directives.write(state.decoder.end()) + state.directives.flush();
          send(stream, state.masker.write(rest) + state.masker.flush());
          this.live.delete(state.masker);
        }
      },
    };
  }
}
