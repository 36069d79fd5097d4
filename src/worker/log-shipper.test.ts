import { describe, expect, it } from 'vitest';
import { BATCH_CHUNKS, LogRefused, LogShipper } from './log-shipper.js';

/** A server that stores chunks by sequence number once, and may fail some calls. */
function server(failures: (call: number) => Error | null = () => null) {
  const stored = new Map<number, string>();
  let calls = 0;
  return {
    stored,
    get calls() {
      return calls;
    },
    send: (first: number, texts: string[]): Promise<number> => {
      calls += 1;
      const error = failures(calls);
      // A lost answer: stored, but the worker hears an error.
      texts.forEach((t, i) => {
        if (!stored.has(first + i)) stored.set(first + i, t);
      });
      return error ? Promise.reject(error) : Promise.resolve(first + texts.length);
    },
  };
}

describe('LogShipper', () => {
  it('sends batches of at most the chunks the server takes, in order, each chunk once', async () => {
    const s = server();
    const shipper = new LogShipper(s.send, { retryDelayMs: 1 });
    for (let i = 1; i <= 2500; i += 1) shipper.add(`${i}\n`);
    await shipper.close();
    expect(s.stored.size).toBe(2500);
    expect([...s.stored.keys()].sort((a, b) => a - b)).toEqual(
      Array.from({ length: 2500 }, (_, i) => i + 1),
    );
    expect(s.calls).toBe(Math.ceil(2500 / BATCH_CHUNKS));
  });

  it('sends a batch again after a lost answer without doubling anything', async () => {
    const s = server((call) => (call === 1 ? new Error('socket hang up') : null));
    const shipper = new LogShipper(s.send, { retryDelayMs: 1 });
    shipper.add('a\n');
    shipper.add('b\n');
    await shipper.close();
    expect([...s.stored.values()]).toEqual(['a\n', 'b\n']);
    expect(s.calls).toBe(2);
  });

  it('continues a log handed on from another worker at the sequence number given', async () => {
    const s = server();
    const shipper = new LogShipper(s.send, { firstSeq: 41 });
    shipper.add('more\n');
    await shipper.close();
    expect([...s.stored.entries()]).toEqual([[41, 'more\n']]);
  });

  it('stops at a refusal instead of retrying it for ever', async () => {
    const s = server(() => new LogRefused('RUN_CHANGED'));
    const shipper = new LogShipper(s.send, { retryDelayMs: 1 });
    shipper.add('x\n');
    await shipper.close();
    expect(s.calls).toBe(1);
    expect(shipper.failure?.message).toBe('RUN_CHANGED');
    shipper.add('y\n');
    expect(s.calls).toBe(1);
  });
});
