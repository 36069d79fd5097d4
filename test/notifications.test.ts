/**
 * Wake-ups between server processes on one PostgreSQL (LISTEN/NOTIFY), on a real private
 * cluster: a signal made in one process wakes the waiters of another and never comes back to its
 * sender; a listening connection that is cut reconnects, tells its waiters to look again (what
 * was sent meanwhile is lost), and hears the next signals.
 */
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PoolSignals } from '../src/server/pool-signals.js';
import { signalsRunFeed } from '../src/server/run-feed.js';
import { Notifications } from '../src/store/notifications.js';
import { openStore } from '../src/store/open-store.js';
import type { KyselyStore } from '../src/store/kysely-store.js';
import { startPostgres, type RunningPostgres } from './harness/postgres.js';

let postgres: RunningPostgres;
let url = '';
let store: KyselyStore;
const opened: Notifications[] = [];

beforeAll(async () => {
  postgres = startPostgres();
  postgres.createDatabase('signals');
  url = postgres.url('signals');
  store = await openStore({ databaseUrl: url, dataDir: '/nonexistent' });
}, 120_000);

afterAll(async () => {
  for (const n of opened) await n.close();
  await store?.close();
  postgres?.stop();
});

/** A server process's signals, relayed over the database, with what its relay reported. */
async function serverProcess(): Promise<{
  signals: PoolSignals;
  notifications: Notifications;
  heard: string[];
  resyncs: () => number;
}> {
  const signals = new PoolSignals();
  const heard: string[] = [];
  let resyncs = 0;
  const notifications = await Notifications.listen(
    url,
    {
      onTopic: (topic) => {
        heard.push(topic);
        signals.deliver(topic);
      },
      onResync: () => {
        resyncs += 1;
        signals.wakeAll();
      },
    },
    { send: (channel, payload) => store.notify(channel, payload), resyncMs: 50 },
  );
  opened.push(notifications);
  signals.relayTo(notifications);
  return { signals, notifications, heard, resyncs: () => resyncs };
}

async function until(condition: () => boolean): Promise<void> {
  while (!condition()) await new Promise((resolve) => setTimeout(resolve, 20));
}

describe('wake-ups across server processes on PostgreSQL', () => {
  it("gives a log follower on another server process the run's changes made here (the live log stream's feed)", async () => {
    const a = await serverProcess();
    const b = await serverProcess();
    const heardOnB: string[] = [];
    const stop = signalsRunFeed(b.signals).subscribe('RUN2', (change) => heardOnB.push(change));
    signalsRunFeed(a.signals).publish('RUN2', 'log');
    await until(() => heardOnB.length > 0);
    stop();
    expect(heardOnB).toEqual(['log']);
    expect(b.heard).toEqual(['run:RUN2']);
  });

  it("wakes another process's waiting worker, and not the sender through the database", async () => {
    const a = await serverProcess();
    const b = await serverProcess();
    // Far longer than the test may take: only the signal can end this wait in time.
    const woken = b.signals.wait('pool-1', 600_000);
    const runFollowed: string[] = [];
    const stop = b.signals.onRun('RUN1', () => runFollowed.push('RUN1'));
    expect(b.signals.waiters('pool-1')).toBe(1);
    a.signals.notify('pool-1');
    a.signals.notifyRun('RUN1');
    await woken;
    await until(() => runFollowed.length > 0);
    stop();
    expect(b.heard).toEqual(['pool:pool-1', 'run:RUN1']);
    expect(b.signals.waiters('pool-1')).toBe(0);
    // The sender woke its own waiters itself; the database does not echo it back.
    b.signals.notify('pool-2');
    await until(() => a.heard.length > 0);
    expect(a.heard).toEqual(['pool:pool-2']);
  });

  it('reconnects a cut listening connection, has its waiters look again, and hears what comes next', async () => {
    const a = await serverProcess();
    const b = await serverProcess();
    const pid = await b.notifications.backendPid();
    expect(pid).toBeGreaterThan(0);
    const before = b.resyncs();
    // A wait that only a resync (or a signal) can end.
    const lookedAgain = b.signals.wait('pool-cut', 600_000);
    await sql`select pg_terminate_backend(${pid})`.execute(store.db);
    await lookedAgain;
    await until(() => b.notifications.listening && b.notifications.connections === 2);
    expect(b.resyncs()).toBeGreaterThan(before);
    expect(await b.notifications.backendPid()).not.toBe(pid);
    const woken = b.signals.wait('pool-after', 600_000);
    a.signals.notify('pool-after');
    await woken;
    expect(b.heard).toContain('pool:pool-after');
  });
});
