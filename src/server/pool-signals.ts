/**
 * Wakes workers waiting for work (long polls) the moment a run of their pool becomes
 * dispatchable, instead of making them poll the table. In one process; several servers on one
 * PostgreSQL also hear each other through LISTEN/NOTIFY (see the store) — until then a waiting
 * worker still finds the run at the end of its wait.
 */
export class PoolSignals {
  private readonly waiting = new Map<string, Set<() => void>>();

  /** Resolves when `notify(poolId)` is called, or after `ms`, or when `signal` aborts. */
  wait(poolId: string, ms: number, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      const set = this.waiting.get(poolId) ?? new Set();
      this.waiting.set(poolId, set);
      const done = (): void => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', done);
        set.delete(done);
        if (set.size === 0) this.waiting.delete(poolId);
        resolve();
      };
      const timer = setTimeout(done, ms);
      signal?.addEventListener('abort', done, { once: true });
      set.add(done);
    });
  }

  notify(poolId: string): void {
    for (const wake of [...(this.waiting.get(poolId) ?? [])]) wake();
  }

  /** How many workers wait on a pool (for tests and status). */
  waiters(poolId: string): number {
    return this.waiting.get(poolId)?.size ?? 0;
  }
}
