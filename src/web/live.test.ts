/**
 * Following a run when the log stream does not work: the page falls back to polling the stored
 * log, whether the stream fails at once or never answers at all (a proxy holding the request).
 * EventSource is the browser's; here a stand-in that opens, fails or stays silent on command.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { ApiClient, Log, Run } from '../api/client.js';
import { followRun, STREAM_OPEN_TIMEOUT_MS } from './live.js';

class SilentEventSource {
  static readonly CONNECTING = 0;
  static readonly OPEN = 1;
  static readonly CLOSED = 2;
  static made: SilentEventSource[] = [];
  readyState = SilentEventSource.CONNECTING;
  private readonly listeners = new Map<string, ((event: unknown) => void)[]>();
  constructor(readonly url: string) {
    SilentEventSource.made.push(this);
  }
  addEventListener(type: string, listener: (event: unknown) => void): void {
    this.listeners.set(type, [...(this.listeners.get(type) ?? []), listener]);
  }
  close(): void {
    this.readyState = SilentEventSource.CLOSED;
  }
  fire(type: string): void {
    if (type === 'open') this.readyState = SilentEventSource.OPEN;
    for (const listener of this.listeners.get(type) ?? []) listener({});
  }
}

const chunk = (seq: number, text: string): Log['chunks'][number] =>
  ({ seq, stream: 'stdout', text, at: '2026-12-02T12:00:00.000Z' }) as Log['chunks'][number];

/** The API as the page uses it while following: one stored chunk, a run that has ended. */
function storedRun(): { api: ApiClient; logReads: () => number } {
  let reads = 0;
  const api = {
    url: (path: string) => `http://berth.test${path}`,
    logStreamPath: (id: string, after: number) => `/api/v1/runs/${id}/logs/stream?after=${after}`,
    logs: (_id: string, after: number) => {
      reads += 1;
      return Promise.resolve({ chunks: after < 1 ? [chunk(1, 'stored line\n')] : [] });
    },
    getRun: () => Promise.resolve({ id: 'R', state: 'FINISHED' } as Run),
  } as unknown as ApiClient;
  return { api, logReads: () => reads };
}

function recorder(): {
  lines: string[];
  ended: () => boolean;
  follower: Parameters<typeof followRun>[2];
} {
  const lines: string[] = [];
  let ended = false;
  return {
    lines,
    ended: () => ended,
    follower: {
      onLog: (c) => lines.push(c.text),
      onRun: () => undefined,
      onEnd: () => {
        ended = true;
      },
      onError: (err) => {
        throw err;
      },
    },
  };
}

describe('following a run without a working log stream', () => {
  beforeEach(() => {
    vi.useFakeTimers();
    SilentEventSource.made = [];
    vi.stubGlobal('EventSource', SilentEventSource);
  });
  afterEach(() => {
    vi.useRealTimers();
    vi.unstubAllGlobals();
  });

  it('polls the stored log once a stream has neither opened nor failed within the timeout', async () => {
    const { api, logReads } = storedRun();
    const seen = recorder();
    const stop = followRun(api, 'R', seen.follower);
    await vi.advanceTimersByTimeAsync(STREAM_OPEN_TIMEOUT_MS - 1);
    expect(logReads()).toBe(0);
    await vi.advanceTimersByTimeAsync(5_000);
    expect(SilentEventSource.made[0]?.readyState).toBe(SilentEventSource.CLOSED);
    expect(seen.lines).toEqual(['stored line\n']);
    expect(seen.ended()).toBe(true);
    stop();
  });

  it('keeps a stream that opened, however long its first event takes', async () => {
    const { api, logReads } = storedRun();
    const stop = followRun(api, 'R', recorder().follower);
    SilentEventSource.made[0]?.fire('open');
    await vi.advanceTimersByTimeAsync(STREAM_OPEN_TIMEOUT_MS * 3);
    expect(logReads()).toBe(0);
    expect(SilentEventSource.made[0]?.readyState).toBe(SilentEventSource.OPEN);
    stop();
  });

  it('polls once when the stream fails before it opens, not again when the timeout passes', async () => {
    const { api, logReads } = storedRun();
    const seen = recorder();
    const stop = followRun(api, 'R', seen.follower);
    SilentEventSource.made[0]?.fire('error');
    await vi.advanceTimersByTimeAsync(STREAM_OPEN_TIMEOUT_MS * 2);
    expect(seen.ended()).toBe(true);
    // One poll: a read of the log, the run (ended), one more read after the end; a second poll
    // would read again.
    expect(seen.lines).toEqual(['stored line\n']);
    expect(logReads()).toBe(2);
    stop();
  });
});
