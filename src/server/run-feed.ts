/**
 * Tells whoever follows a run (the log stream) that something about it changed, the moment it
 * changes, so followers push instead of polling the table.
 *
 * The contract is two verbs:
 *   publish    something about run `runId` changed (new log chunks, or its state); cheap, never
 *              throws, may be called for a run nobody follows
 *   subscribe  hear the changes of one run until the returned function is called
 *
 * A change is a hint, not the data: a follower reads the store after hearing one, so a lost or
 * doubled hint costs only latency (followers also re-read at every keep-alive). The server's feed
 * is `signalsRunFeed`: its changes travel as the server's signals do, so with several servers on
 * one PostgreSQL (LISTEN/NOTIFY relays the signals) every server's followers hear every change
 * (see `observeRuns`: the store's writes publish, whichever server made them). LocalRunFeed is the
 * same contract for one process alone (tests).
 */
import type { Store } from '../store/store.js';
import type { PoolSignals } from './pool-signals.js';

export type RunChange = 'log' | 'state';

export interface RunFeed {
  publish(runId: string, change: RunChange): void;
  subscribe(runId: string, listener: (change: RunChange) => void): () => void;
}

export class LocalRunFeed implements RunFeed {
  private readonly listeners = new Map<string, Set<(change: RunChange) => void>>();

  publish(runId: string, change: RunChange): void {
    for (const listener of [...(this.listeners.get(runId) ?? [])]) {
      try {
        listener(change);
      } catch {
        // A follower's failure is its own; the others still hear the change.
      }
    }
  }

  subscribe(runId: string, listener: (change: RunChange) => void): () => void {
    const set = this.listeners.get(runId) ?? new Set();
    this.listeners.set(runId, set);
    set.add(listener);
    return () => {
      set.delete(listener);
      if (set.size === 0 && this.listeners.get(runId) === set) this.listeners.delete(runId);
    };
  }

  /** How many follow a run (for tests and status). */
  followers(runId: string): number {
    return this.listeners.get(runId)?.size ?? 0;
  }
}

/**
 * The run feed over the server's signals (topic `run:ID`), relayed to the other server processes
 * when they relay (PostgreSQL). A relayed signal does not say what changed: listeners hear `log`
 * and re-read both the log and the run, as they do for every change.
 */
export function signalsRunFeed(signals: PoolSignals): RunFeed {
  return {
    publish: (runId) => signals.notifyRun(runId),
    subscribe: (runId, listener) => signals.onRun(runId, () => listener('log')),
  };
}

type RunLike = { id: string } | null | undefined;

/**
 * The store, with every write that changes a run or its log published to `feed` once it has
 * succeeded. One place instead of every route remembering to publish: a route added later that
 * moves a run through `transitionRun` is followed live without knowing about the feed.
 */
export function observeRuns(store: Store, feed: RunFeed): Store {
  const stateOf = (run: RunLike): void => {
    if (run) feed.publish(run.id, 'state');
  };
  const wrap: Partial<Record<keyof Store, (result: unknown, args: unknown[]) => void>> = {
    createRun: (run) => stateOf(run as RunLike),
    transitionRun: (run) => stateOf(run as RunLike),
    leaseRun: (run) => stateOf(run as RunLike),
    requestStop: (run) => stateOf(run as RunLike),
    expireLeases: (runs) => (runs as RunLike[]).forEach(stateOf),
    releaseWorkerRuns: (runs) => (runs as RunLike[]).forEach(stateOf),
    appendLog: (_next, args) => feed.publish(args[0] as string, 'log'),
    remaskLog: (_n, args) => feed.publish(args[0] as string, 'log'),
  };
  return new Proxy(store, {
    get(target, name, receiver) {
      const value = Reflect.get(target, name, receiver) as unknown;
      const after = wrap[name as keyof Store];
      if (typeof value !== 'function') return value;
      if (!after) return (value as (...a: unknown[]) => unknown).bind(target);
      return async (...args: unknown[]) => {
        const method = value as (...a: unknown[]) => Promise<unknown>;
        const result: unknown = await method.apply(target, args);
        after(result, args);
        return result;
      };
    },
  });
}
