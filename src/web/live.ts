/**
 * Following a run live: server-sent events from `GET /runs/{id}/logs/stream` (`log` events in
 * order, with their sequence number as the event id, so the browser resumes after a dropped
 * connection with Last-Event-ID; `run` events on each state change; `end` when the run has
 * ended). A server without the stream (it answers 404, or the stream cannot open) is followed by
 * polling the stored log and the run instead, a few times a second, until the run has ended.
 */
import type { ApiClient, Log, Run } from '../api/client.js';
import { isTerminal } from '../domain/run-state.js';

export interface Follower {
  onLog(chunk: Log['chunks'][number]): void;
  onRun(run: Run): void;
  onEnd(): void;
  onError(err: unknown): void;
}

const POLL_MS = 150;
/**
 * A stream that neither opens nor fails within this time (a proxy that holds the request, or
 * buffers the answer's start) is given up for polling: the page would otherwise show nothing.
 */
export const STREAM_OPEN_TIMEOUT_MS = 5000;
/** Chunks per poll: a worker's chunk may be large, and one answer is parsed at once. */
const POLL_CHUNKS = 50;

/** Starts following; the answer stops it. */
export function followRun(api: ApiClient, runId: string, follower: Follower): () => void {
  let stopped = false;
  let last = 0;
  let source: EventSource | null = null;
  const log = (chunk: Log['chunks'][number]): void => {
    if (chunk.seq <= last) return;
    last = chunk.seq;
    follower.onLog(chunk);
  };

  const poll = async (): Promise<void> => {
    let lastRunCheck = 0;
    let ended = false;
    while (!stopped) {
      try {
        const page = await api.logs(runId, last, POLL_CHUNKS);
        for (const chunk of page.chunks) log(chunk);
        if (page.chunks.length === POLL_CHUNKS) continue;
        if (ended) break;
        if (Date.now() - lastRunCheck > 1000) {
          lastRunCheck = Date.now();
          const run = await api.getRun(runId);
          follower.onRun(run);
          // One more read of the log after the end: nothing written before it is missed.
          if (isTerminal(run.state)) ended = true;
          if (ended) continue;
        }
      } catch (err) {
        follower.onError(err);
      }
      await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    }
    if (!stopped) follower.onEnd();
  };

  let polling = false;
  const pollInstead = (): void => {
    source?.close();
    if (stopped || polling) return;
    polling = true;
    void poll();
  };

  let notOpened: ReturnType<typeof setTimeout> | undefined;
  const stream = (): void => {
    let opened = false;
    source = new EventSource(api.url(api.logStreamPath(runId, last)));
    notOpened = setTimeout(() => {
      if (!opened) pollInstead();
    }, STREAM_OPEN_TIMEOUT_MS);
    source.addEventListener('open', () => {
      opened = true;
      clearTimeout(notOpened);
    });
    source.addEventListener('log', (event) => {
      log(JSON.parse((event as MessageEvent<string>).data) as Log['chunks'][number]);
    });
    source.addEventListener('run', (event) => {
      follower.onRun(JSON.parse((event as MessageEvent<string>).data) as Run);
    });
    source.addEventListener('end', () => {
      source?.close();
      if (!stopped) follower.onEnd();
    });
    source.addEventListener('error', () => {
      // Never opened (no stream on this server, or refused), or closed for good: poll instead.
      // While it reconnects by itself (CONNECTING after it was open), let it.
      if (!opened || source?.readyState === EventSource.CLOSED) {
        clearTimeout(notOpened);
        pollInstead();
      }
    });
  };

  stream();
  return () => {
    stopped = true;
    clearTimeout(notOpened);
    source?.close();
  };
}
