import { describe, expect, it } from 'vitest';
import { Coalescer } from './coalesce.js';

/** A serve function whose batches end only when the test says so. */
function controlled() {
  const batches: { key: string; requests: number[]; finish: (err?: Error) => void }[] = [];
  const serve = (key: string, requests: number[]): Promise<string[]> =>
    new Promise((resolve, reject) => {
      batches.push({
        key,
        requests,
        finish: (err) => (err ? reject(err) : resolve(requests.map((r) => `${key}:${r}`))),
      });
    });
  return { batches, serve };
}

const settle = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

describe('Coalescer', () => {
  it('serves a lone call at once, and the calls that came meanwhile together, in order', async () => {
    const { batches, serve } = controlled();
    const coalescer = new Coalescer(serve, 3);
    const first = coalescer.call('a', 1);
    await settle();
    expect(batches.map((b) => b.requests)).toEqual([[1]]);
    const later = [2, 3, 4, 5].map((n) => coalescer.call('a', n));
    await settle();
    expect(batches).toHaveLength(1);
    batches[0]?.finish();
    expect(await first).toBe('a:1');
    await settle();
    expect(batches.map((b) => b.requests)).toEqual([[1], [2, 3, 4]]);
    batches[1]?.finish();
    await settle();
    expect(batches[2]?.requests).toEqual([5]);
    batches[2]?.finish();
    expect(await Promise.all(later)).toEqual(['a:2', 'a:3', 'a:4', 'a:5']);
  });

  it('keeps keys apart: one key in flight does not hold up another', async () => {
    const { batches, serve } = controlled();
    const coalescer = new Coalescer(serve, 10);
    const a = coalescer.call('a', 1);
    const b = coalescer.call('b', 1);
    await settle();
    expect(batches.map((x) => x.key)).toEqual(['a', 'b']);
    batches[1]?.finish();
    expect(await b).toBe('b:1');
    batches[0]?.finish();
    expect(await a).toBe('a:1');
  });

  it('rejects every call of a failed batch with its error, and serves the next batch', async () => {
    const { batches, serve } = controlled();
    const coalescer = new Coalescer(serve, 10);
    const first = coalescer.call('a', 1);
    await settle();
    const second = [coalescer.call('a', 2), coalescer.call('a', 3)];
    batches[0]?.finish(new Error('connection lost'));
    await expect(first).rejects.toThrow('connection lost');
    await settle();
    batches[1]?.finish();
    expect(await Promise.all(second)).toEqual(['a:2', 'a:3']);
  });
});
