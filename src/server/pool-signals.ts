/**
 * Wakes whoever waits for a change the moment it happens, instead of making them poll the
 * table: workers waiting for work (long polls, topic `pool:ID`) when a run of their pool becomes
 * dispatchable, and readers following a run (topic `run:ID`) when its log grows or its state
 * changes. In one process by itself; with a relay (PostgreSQL LISTEN/NOTIFY, see
 * src/store/notifications.ts) every server process on the same database hears the others' too.
 *
 * A signal says only "look again": the store stays the truth. Losing one costs a waiter the rest
 * of its wait (the long poll then looks anyway); a relay that lost its connection wakes every
 * waiter once it is back, and now and then while it is down, so nothing waits on a lost signal.
 */

/** Carries signals to the other server processes (and never back to this one). */
export interface SignalRelay {
  publish(topic: string): void;
}

export type Topic = `pool:${string}` | `run:${string}`;

export class PoolSignals {
  private readonly waiting = new Map<string, Set<() => void>>();
  private relay: SignalRelay | null = null;

  /** Signals made here go to the other processes through `relay` from now on. */
  relayTo(relay: SignalRelay | null): void {
    this.relay = relay;
  }

  /** Resolves when a run of the pool may be dispatchable, or after `ms`, or when `signal` aborts. */
  wait(poolId: string, ms: number, signal?: AbortSignal): Promise<void> {
    return this.waitFor(`pool:${poolId}`, ms, signal);
  }

  /** A run of the pool may have become dispatchable (queued, confirmed, a stack lock freed). */
  notify(poolId: string): void {
    this.publish(`pool:${poolId}`);
  }

  /** The run's log grew or its state changed. */
  notifyRun(runId: string): void {
    this.publish(`run:${runId}`);
  }

  /**
   * Calls `listener` on every signal of the run until the returned function is called (for
   * readers that follow a run, such as a live log stream).
   */
  onRun(runId: string, listener: () => void): () => void {
    return this.subscribe(`run:${runId}`, listener);
  }

  /** How many wait on a pool (for tests and status). */
  waiters(poolId: string): number {
    return this.waiting.get(`pool:${poolId}`)?.size ?? 0;
  }

  /** Resolves on the topic's next signal, after `ms`, or when `signal` aborts. */
  waitFor(topic: Topic, ms: number, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', done);
        unsubscribe();
        resolve();
      };
      const unsubscribe = this.subscribe(topic, done);
      const timer = setTimeout(done, ms);
      if (signal?.aborted) done();
      else signal?.addEventListener('abort', done, { once: true });
    });
  }

  subscribe(topic: string, listener: () => void): () => void {
    const set = this.waiting.get(topic) ?? new Set();
    this.waiting.set(topic, set);
    set.add(listener);
    return () => {
      set.delete(listener);
      if (set.size === 0 && this.waiting.get(topic) === set) this.waiting.delete(topic);
    };
  }

  /** Wakes this process's waiters on the topic and tells the other processes. */
  publish(topic: Topic): void {
    this.deliver(topic);
    this.relay?.publish(topic);
  }

  /** Wakes this process's waiters on the topic (a signal made here or relayed from elsewhere). */
  deliver(topic: string): void {
    for (const listener of [...(this.waiting.get(topic) ?? [])]) listener();
  }

  /** Wakes every waiter: signals may have been lost (the relay reconnected), so all look again. */
  wakeAll(): void {
    for (const topic of [...this.waiting.keys()]) this.deliver(topic);
  }
}
