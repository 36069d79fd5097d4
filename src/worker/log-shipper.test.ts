import { describe, expect, it } from 'vitest';
import { BATCH_BYTES, CHUNK_CHARS, IN_FLIGHT, LogRefused, LogShipper } from './log-shipper.js';

/** A server that stores chunks by sequence number once, and may fail some calls. */
function server(failures: (call: number) => Error | null = () => null) {
  const stored = new Map<number, string>();
  const calls: string[] = [];
  const batches: string[][] = [];
  return {
    stored,
    calls,
    batches,
    text: () =>
      [...stored.entries()]
        .sort(([a], [b]) => a - b)
        .map(([, t]) => t)
        .join(''),
    send: (first: number, texts: string[]): Promise<number> => {
      calls.push(`log ${first}+${texts.length}`);
      batches.push(texts);
      const error = failures(calls.length);
      // A lost answer: stored, but the worker hears an error.
      texts.forEach((t, i) => {
        if (!stored.has(first + i)) stored.set(first + i, t);
      });
      return error ? Promise.reject(error) : Promise.resolve(first + texts.length);
    },
    remask: (values: string[]): Promise<void> => {
      calls.push(`remask ${values.join(',')}`);
      return Promise.resolve();
    },
  };
}

describe('LogShipper', () => {
  it('sends everything in order, each chunk once, in chunks the server takes', async () => {
    const s = server();
    const shipper = new LogShipper(s.send, { retryDelayMs: 1, holdMs: 1 });
    const line = `${'x'.repeat(1000)}\n`;
    for (let i = 0; i < 3000; i += 1) shipper.add(line);
    await shipper.close();
    expect(s.text()).toBe(line.repeat(3000));
    const seqs = [...s.stored.keys()].sort((a, b) => a - b);
    expect(seqs).toEqual(Array.from({ length: seqs.length }, (_, i) => i + 1));
    expect(Math.max(...[...s.stored.values()].map((t) => t.length))).toBeLessThanOrEqual(
      CHUNK_CHARS,
    );
  });

  it('sends a batch again after a lost answer without doubling anything', async () => {
    const s = server((call) => (call === 1 ? new Error('socket hang up') : null));
    const shipper = new LogShipper(s.send, { retryDelayMs: 1, holdMs: 1 });
    shipper.add('a\n');
    shipper.add('b\n');
    await shipper.close();
    expect(s.text()).toBe('a\nb\n');
    expect(s.calls).toEqual(['log 1+1', 'log 1+1']);
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
    const shipper = new LogShipper(s.send, { retryDelayMs: 1, holdMs: 1 });
    shipper.add('x\n');
    await shipper.close();
    expect(s.calls).toHaveLength(1);
    expect(shipper.failure?.message).toBe('RUN_CHANGED');
    shipper.add('y\n');
    expect(s.calls).toHaveLength(1);
  });

  it('gives up what the server cannot be reached for a while after told to stop retrying, not before', async () => {
    // A server gone: every call fails on the network, and is tried again (here every 10 s).
    const calls: string[] = [];
    const gone = (first: number): Promise<number> => {
      calls.push(`log ${first}`);
      return Promise.reject(new Error('connect ECONNREFUSED 127.0.0.1:1'));
    };
    const shipper = new LogShipper(gone, { retryDelayMs: 10_000, holdMs: 1 });
    shipper.add('last words\n');
    let closed = false;
    const closing = shipper.close().then(() => (closed = true));
    while (calls.length === 0) await new Promise((resolve) => setTimeout(resolve, 5));
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(closed).toBe(false);
    expect(shipper.failure).toBeNull();
    // Tried again at once, then a second apart at most, until the 300 ms are over: given up.
    const told = performance.now();
    shipper.stopRetrying('the worker was told to stop', AbortSignal.timeout(300));
    await closing;
    expect(performance.now() - told).toBeGreaterThanOrEqual(300);
    expect(calls.length).toBeGreaterThanOrEqual(3);
    expect(new Set(calls)).toEqual(new Set(['log 1']));
    expect(shipper.failure?.message).toBe(
      'the worker was told to stop (connect ECONNREFUSED 127.0.0.1:1)',
    );
  });

  it('still sends what the server takes after being told to stop retrying, a cut connection too', async () => {
    const s = server((call) => (call === 1 ? new Error('socket hang up') : null));
    const shipper = new LogShipper(s.send, { retryDelayMs: 10_000, holdMs: 1 });
    shipper.stopRetrying('told to stop', new AbortController().signal);
    shipper.add('a\n');
    await shipper.close();
    expect(s.text()).toBe('a\n');
    expect(s.calls).toEqual(['log 1+1', 'log 1+1']);
    expect(shipper.failure).toBeNull();
  });

  it('masks a value added while its text is held, before it leaves', async () => {
    const s = server();
    // A long window: nothing leaves before the mask arrives.
    const shipper = new LogShipper(s.send, { holdMs: 60_000, remask: s.remask });
    shipper.add('token: hunt');
    shipper.add('er2\n');
    shipper.addMask('hunter2');
    shipper.add('later hunter2\n');
    await shipper.close();
    expect(s.text()).toBe('token: *****\nlater *****\n');
    // Nothing had been sent: nothing to mask on the server.
    expect(s.calls.filter((c) => c.startsWith('remask'))).toEqual([]);
  });

  it('asks the server to mask a value in what was sent, after what was sent and held', async () => {
    const s = server();
    const shipper = new LogShipper(s.send, { holdMs: 1, remask: s.remask });
    shipper.add('early s3cr3t\n');
    await new Promise((resolve) => setTimeout(resolve, 20));
    shipper.add('held s3cr3t\n');
    shipper.addMask('s3cr3t');
    await shipper.close();
    expect(s.calls).toEqual(['log 1+1', 'log 2+1', 'remask s3cr3t']);
    expect(s.stored.get(2)).toBe('held *****\n');
  });

  it('bounds the log to head and tail with the cut marked, the tail sent at the end', async () => {
    const s = server();
    const shipper = new LogShipper(s.send, { holdMs: 1, limitBytes: 100 });
    for (let i = 0; i < 100; i += 1) shipper.add(`line ${String(i).padStart(3, '0')}\n`);
    await shipper.close();
    const text = s.text();
    expect(text.startsWith('line 000\nline 001\n')).toBe(true);
    expect(text).toContain('[berth: 800 bytes of output cut here');
    expect(text.endsWith('line 098\nline 099\n')).toBe(true);
    expect(text).not.toContain('line 050');
  });

  it("sends a window of heavy output in batches under the server's body limit, escapes counted", async () => {
    const s = server();
    // A long window: 3 MB arrive before anything leaves, as when output outruns the window.
    const shipper = new LogShipper(s.send, { holdMs: 60_000 });
    const line = `${'é'.repeat(40)}\u0001\t${'x'.repeat(40)}\n`;
    for (let i = 0; i < 30_000; i += 1) shipper.add(line);
    await shipper.close();
    expect(s.text()).toBe(line.repeat(30_000));
    expect(s.batches.length).toBeGreaterThan(4);
    for (const texts of s.batches)
      expect(Buffer.byteLength(JSON.stringify(texts))).toBeLessThanOrEqual(BATCH_BYTES + 2);
  });

  it('keeps several batches on the way at once and still stores them in order, each once', async () => {
    // The server's order rule: a batch past a gap waits (here: refused for now, sent again).
    const stored: string[] = [];
    let inFlight = 0;
    let most = 0;
    let calls = 0;
    const send = async (first: number, texts: string[]): Promise<number> => {
      calls += 1;
      inFlight += 1;
      most = Math.max(most, inFlight);
      // Later calls answer sooner: batches overtake each other on the way.
      await new Promise((resolve) => setTimeout(resolve, calls % 2 === 0 ? 1 : 8));
      inFlight -= 1;
      if (first > stored.length + 1) throw new Error('LOG_GAP: the batch before it is missing');
      texts.forEach((t, i) => {
        if (first + i > stored.length) stored.push(t);
      });
      return first + texts.length;
    };
    const shipper = new LogShipper(send, { holdMs: 60_000, retryDelayMs: 1 });
    const line = `${'y'.repeat(999)}\n`;
    for (let i = 0; i < 4000; i += 1) shipper.add(line);
    await shipper.close();
    expect(stored.join('')).toBe(line.repeat(4000));
    expect(most).toBeGreaterThan(1);
    expect(most).toBeLessThanOrEqual(IN_FLIGHT);
  });
});
