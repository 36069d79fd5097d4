/**
 * The store suite, the same cases on SQLite (a file in a temporary data directory) and on a real
 * PostgreSQL (a private cluster started for this file): pools, stacks, the run queue with its
 * stack lock and leases, the state machine's refusals, expired leases, and logs sent twice.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { ulidGenerator } from '../src/domain/ulid.js';
import type { RunKind } from '../src/domain/run-state.js';
import { migrateToLatest } from '../src/store/migrate.js';
import { openStore } from '../src/store/open-store.js';
import { StoreConflict, type Store } from '../src/store/store.js';
import { tempDir } from './harness/ownership.js';
import { poolWithStack, waitingPlan } from './harness/store-fixtures.js';
import { startPostgres, type RunningPostgres } from './harness/postgres.js';

let postgres: RunningPostgres;
let databases = 0;

beforeAll(() => {
  postgres = startPostgres();
}, 120_000);

afterAll(() => {
  postgres?.stop();
});

const newId = ulidGenerator(Date.now, (n) => randomBytes(n));
const t0 = new Date('2026-11-30T12:00:00.000Z');
const later = (ms: number): Date => new Date(t0.getTime() + ms);
const iso = (at: Date): string => at.toISOString();
/** A worker of pool private-a as it registers (host h, berth 0.1.0, engine 20.10). */
const workerInfo = (id: string, concurrency = 1) => ({
  id,
  poolId: 'private-a',
  host: 'h',
  berthVersion: '0.1.0',
  engineVersion: '20.10',
  concurrency,
});

type Kind = 'sqlite' | 'postgres';

async function freshStore(kind: Kind): Promise<Store> {
  if (kind === 'sqlite') {
    const dir = tempDir('berth-store-');
    const store = await openStore({ dataDir: dir });
    await store.migrate();
    return store;
  }
  const name = `berth_test_${process.pid}_${(databases += 1)}`;
  postgres.createDatabase(name);
  const store = await openStore({ databaseUrl: postgres.url(name), dataDir: '/nonexistent' });
  await store.migrate();
  return store;
}

async function conflict(promise: Promise<unknown>): Promise<StoreConflict> {
  const error = await promise.then(
    () => null,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(StoreConflict);
  return error as StoreConflict;
}

describe.each<Kind>(['sqlite', 'postgres'])('the store on %s', (kind) => {
  let store: Store;

  beforeAll(async () => {
    store = await freshStore(kind);
    await store.createPool(
      {
        id: 'private-a',
        name: 'A',
        kind: 'private',
        allowList: [],
        defaultImage: null,
        pullPolicy: null,
      },
      'hash-a',
      t0,
    );
    await store.createPool(
      {
        id: 'private-b',
        name: 'B',
        kind: 'private',
        allowList: [],
        defaultImage: null,
        pullPolicy: null,
      },
      'hash-b',
      t0,
    );
  });

  afterAll(async () => {
    await store?.close();
  });

  async function stack(id: string, poolId = 'private-a'): Promise<void> {
    await store.createStack(
      {
        id,
        name: id,
        repository: 'https://git.example.com/infra.git',
        branch: 'main',
        localDir: null,
        projectRoot: 'envs/dev',
        tool: 'OPEN_TOFU',
        toolVersion: '1.8.0',
        runnerImage: null,
        labels: ['team:a'],
        autoDeploy: false,
        poolId,
      },
      t0,
    );
  }

  async function trigger(stackId: string, kindOfRun: RunKind, poolId = 'private-a') {
    return store.createRun(
      {
        id: newId(),
        stackId,
        poolId,
        kind: kindOfRun,
        commitSha: 'a'.repeat(40),
        triggeredBy: 'test',
        autoDeploy: false,
      },
      t0,
    );
  }

  it('migrates again without harm', async () => {
    await store.migrate();
    expect((await store.listPools()).map((p) => p.id)).toEqual(['private-a', 'private-b']);
  });

  it('keeps pools, finds one by its token hash, and refuses a second pool of the same id', async () => {
    expect((await store.findPoolByTokenHash('hash-b'))?.id).toBe('private-b');
    expect(await store.findPoolByTokenHash('nope')).toBeNull();
    const error = await conflict(
      store.createPool(
        {
          id: 'private-a',
          name: 'again',
          kind: 'public',
          allowList: [],
          defaultImage: null,
          pullPolicy: null,
        },
        'hash-c',
        t0,
      ),
    );
    expect(error.code).toBe('ALREADY_EXISTS');
    expect((await store.getPool('private-a'))?.name).toBe('A');
    expect(await store.setPoolTokenHash('private-b', 'hash-b2')).toBe(true);
    expect((await store.findPoolByTokenHash('hash-b2'))?.id).toBe('private-b');
    expect(await store.findPoolByTokenHash('hash-b')).toBeNull();
  });

  it("changes a pool's settings, and deletes one only when no stack, run or online worker holds it", async () => {
    const pool = (id: string) => ({
      id,
      name: id,
      kind: 'public' as const,
      allowList: ['default'],
      defaultImage: null,
      pullPolicy: null,
    });
    await store.createPool(pool('doomed'), 'hash-doomed', t0);
    expect(
      await store.updatePool('doomed', {
        allowList: ['quay.io'],
        defaultImage: 'quay.io/team/runner:1',
        pullPolicy: 'always',
      }),
    ).toMatchObject({
      name: 'doomed',
      kind: 'public',
      allowList: ['quay.io'],
      pullPolicy: 'always',
    });
    expect(await store.updatePool('doomed', { defaultImage: null, name: 'Doomed' })).toMatchObject({
      name: 'Doomed',
      defaultImage: null,
      pullPolicy: 'always',
    });
    expect(await store.updatePool('nowhere', { name: 'x' })).toBeNull();
    // A stack or worker naming a pool that is not there (deleted meanwhile) is NOT_FOUND.
    const orphan = await conflict(stack('orphan', 'nowhere'));
    expect([orphan.code, orphan.message]).toEqual([
      'NOT_FOUND',
      'worker pool nowhere does not exist',
    ]);
    expect(
      (await conflict(store.upsertWorker({ ...workerInfo('w-x'), poolId: 'nowhere' }, t0))).code,
    ).toBe('NOT_FOUND');
    await stack('movable');
    expect((await conflict(store.updateStack('movable', { poolId: 'nowhere' }, t0))).code).toBe(
      'NOT_FOUND',
    );
    expect(await store.deleteStack('movable')).toBe(true);

    // A stack in it, then a run of a stack since moved away, hold it.
    await stack('held', 'doomed');
    expect((await conflict(store.deletePool('doomed', t0))).message).toBe(
      'worker pool doomed has 1 stack(s): held; move them to another pool (berth stack update ID --pool POOL) or delete them first',
    );
    const run = await trigger('held', 'PROPOSED', 'doomed');
    await store.transitionRun(run.id, 'CANCELED', {}, t0);
    await store.updateStack('held', { poolId: 'private-b' }, t0);
    expect((await conflict(store.deletePool('doomed', t0))).message).toContain(
      `ran runs of stacks now in other pools (the latest: run ${run.id} of stack held)`,
    );
    expect(await store.deleteStack('held')).toBe(true);

    // A worker heard from after the given time that has not said it leaves holds it.
    await store.upsertWorker({ ...workerInfo('w-doomed'), poolId: 'doomed' }, later(10_000));
    const online = await conflict(store.deletePool('doomed', later(5_000)));
    expect(online.code).toBe('POOL_IN_USE');
    expect(online.message).toContain('worker w-doomed of pool doomed is online');
    expect(await store.deletePool('doomed', later(10_000))).toBe(true);
    expect(await store.getPool('doomed')).toBeNull();
    expect((await store.listWorkers()).map((w) => w.id)).not.toContain('w-doomed');
    expect(await store.findPoolByTokenHash('hash-doomed')).toBeNull();
    expect(await store.deletePool('doomed', t0)).toBe(false);
    // A worker that said it leaves holds it no longer.
    await store.createPool(pool('left'), 'hash-left', t0);
    await store.upsertWorker({ ...workerInfo('w-left'), poolId: 'left' }, later(10_000));
    await store.markWorkerLeft('w-left', later(10_000));
    expect(await store.deletePool('left', t0)).toBe(true);
  });

  it('keeps stacks and their variables', async () => {
    await stack('demo');
    expect(await store.getStack('demo')).toMatchObject({
      projectRoot: 'envs/dev',
      labels: ['team:a'],
      autoDeploy: false,
    });
    const updated = await store.updateStack('demo', { autoDeploy: true, labels: [] }, later(1000));
    expect(updated).toMatchObject({
      autoDeploy: true,
      labels: [],
      updatedAt: later(1000).toISOString(),
    });
    expect(
      await store.setStackVariable('demo', { name: 'TF_LOG', value: 'info', secret: false }),
    ).toBe(true);
    expect(
      await store.setStackVariable('demo', { name: 'TOKEN', value: 'sealed:abc', secret: true }),
    ).toBe(true);
    expect(
      await store.setStackVariable('demo', { name: 'TF_LOG', value: 'debug', secret: false }),
    ).toBe(true);
    // A plain value never replaces a secret one: nothing changes.
    expect(
      await store.setStackVariable('demo', { name: 'TOKEN', value: 'readable', secret: false }),
    ).toBe(false);
    expect(await store.listStackVariables('demo')).toEqual([
      { name: 'TF_LOG', value: 'debug', secret: false },
      { name: 'TOKEN', value: 'sealed:abc', secret: true },
    ]);
    expect(await store.unsetStackVariable('demo', 'TF_LOG')).toBe(true);
    expect(await store.unsetStackVariable('demo', 'TF_LOG')).toBe(false);
    expect(await store.updateStack('missing', { name: 'x' }, t0)).toBeNull();
  });

  it('runs one tracked or destroy run per stack at a time, in trigger order; proposed runs overlap', async () => {
    // A stack run once, before every run below: its last run stays its own.
    await stack('quiet', 'private-b');
    const quietRun = await trigger('quiet', 'PROPOSED');
    await store.transitionRun(quietRun.id, 'CANCELED', {}, t0);
    await stack('never-triggered');
    await stack('locked');
    const first = await trigger('locked', 'TRACKED');
    const second = await trigger('locked', 'DESTROY');
    const proposed = await trigger('locked', 'PROPOSED');
    const third = await trigger('locked', 'TRACKED');
    expect([first.state, second.state, proposed.state, third.state]).toEqual([
      'READY',
      'QUEUED',
      'READY',
      'QUEUED',
    ]);
    // The first waits for confirmation: it keeps the lock.
    await store.transitionRun(first.id, 'PREPARING', {}, t0);
    await store.transitionRun(first.id, 'INITIALIZING', {}, t0);
    await store.transitionRun(first.id, 'PLANNING', {}, t0);
    await store.transitionRun(first.id, 'UNCONFIRMED', {}, t0);
    expect((await store.getRun(second.id))?.state).toBe('QUEUED');
    await store.transitionRun(first.id, 'DISCARDED', {}, later(5));
    expect((await store.getRun(second.id))?.state).toBe('READY');
    expect((await store.getRun(third.id))?.state).toBe('QUEUED');
    expect((await store.runStates(first.id)).map((s) => s.state)).toEqual([
      'QUEUED',
      'READY',
      'PREPARING',
      'INITIALIZING',
      'PLANNING',
      'UNCONFIRMED',
      'DISCARDED',
    ]);
    await store.transitionRun(second.id, 'CANCELED', {}, later(6));
    expect((await store.getRun(third.id))?.state).toBe('READY');
    await store.transitionRun(third.id, 'CANCELED', {}, later(7));
    await store.transitionRun(proposed.id, 'CANCELED', {}, later(7));
    // Listed newest first, a page at a time: `before` continues after the last one shown.
    const ids = (list: { id: string }[]) => list.map((r) => r.id);
    const page = await store.listRuns({ stackId: 'locked', limit: 3 });
    expect(ids(page)).toEqual([third.id, proposed.id, second.id]);
    expect(ids(await store.listRuns({ stackId: 'locked', limit: 3, before: second.id }))).toEqual([
      first.id,
    ]);
    expect(await store.listRuns({ stackId: 'locked', limit: 3, before: first.id })).toEqual([]);
    // The newest run of each stack, whatever the runs of other stacks since.
    const last = await store.lastRunOfStacks();
    expect(last.get('locked')?.id).toBe(third.id);
    expect(last.get('quiet')?.id).toBe(quietRun.id);
    expect([...last].every(([stackId, run]) => run.stackId === stackId)).toBe(true);
    expect(last.has('never-triggered')).toBe(false);
    // One pool's stacks, and their last runs alone.
    const ofB = await store.listStacks({ poolId: 'private-b' });
    expect(ofB.map((s) => s.id)).toContain('quiet');
    expect(ofB.every((s) => s.poolId === 'private-b')).toBe(true);
    const lastOfB = await store.lastRunOfStacks({ poolId: 'private-b' });
    expect(lastOfB.get('quiet')?.id).toBe(quietRun.id);
    expect(lastOfB.has('locked')).toBe(false);
  });

  it('refuses a move the state machine does not allow, and changes nothing', async () => {
    await stack('machine');
    const run = await trigger('machine', 'PROPOSED');
    const error = await conflict(store.transitionRun(run.id, 'APPLYING', {}, t0));
    expect(error.code).toBe('RUN_TRANSITION_INVALID');
    expect(error.message).toContain('a PROPOSED run in state READY cannot become APPLYING');
    expect((await store.getRun(run.id))?.state).toBe('READY');
    const wrongFrom = await conflict(
      store.transitionRun(run.id, 'PREPARING', { from: ['QUEUED'] }, t0),
    );
    expect(wrongFrom.code).toBe('RUN_TRANSITION_INVALID');
    await store.transitionRun(run.id, 'CANCELED', {}, t0);
    const ended = await conflict(store.transitionRun(run.id, 'READY', {}, t0));
    expect(ended.message).toContain('the run has ended (CANCELED)');
  });

  it("leases a pool's runs only to that pool's workers, oldest first, each exactly once", async () => {
    await stack('queue-a');
    await stack('queue-b', 'private-b');
    const a = [];
    for (let i = 0; i < 12; i += 1) a.push(await trigger('queue-a', 'TASK'));
    const b = await trigger('queue-b', 'TASK', 'private-b');
    const leases = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        store.leaseRun('private-a', `worker-${i % 4}`, t0, 30_000),
      ),
    );
    const leased = leases.filter((r) => r !== null);
    expect(leased.map((r) => r.id).sort()).toEqual(a.map((r) => r.id).sort());
    expect(new Set(leased.map((r) => r.id)).size).toBe(12);
    for (const run of leased) {
      expect(run).toMatchObject({ state: 'PREPARING', poolId: 'private-a' });
      // The lease numbers its history entry from the run it locked: no gap, no repeat.
      expect((await store.runStates(run.id)).map((s) => [s.seq, s.state])).toEqual([
        [1, 'QUEUED'],
        [2, 'READY'],
        [3, 'PREPARING'],
      ]);
    }
    // The other pool's run was never handed out here.
    expect((await store.getRun(b.id))?.state).toBe('READY');
    expect(await store.leaseRun('private-a', 'worker-0', t0, 30_000)).toBeNull();
    const other = await store.leaseRun('private-b', 'worker-b', t0, 30_000);
    expect(other?.id).toBe(b.id);
    // What a worker holds now, found by the worker (not among the newest runs of all).
    const held = (worker: string) =>
      store.listRuns({ heldBy: worker, limit: 500 }).then((runs) => runs.map((r) => r.id).sort());
    expect(await held('worker-1')).toEqual(
      leased
        .filter((r) => r.workerId === 'worker-1')
        .map((r) => r.id)
        .sort(),
    );
    expect(await held('worker-b')).toEqual([b.id]);
    for (const run of [...leased, other])
      if (run) await store.transitionRun(run.id, 'CANCELED', {}, t0);
    expect(await held('worker-b')).toEqual([]);
  });

  it('numbers the history of a run promoted while workers lease, and hands it out once', async () => {
    await stack('promote');
    for (let round = 0; round < 5; round += 1) {
      const holder = await trigger('promote', 'TRACKED');
      const waiting = await trigger('promote', 'TRACKED');
      expect(waiting.state).toBe('QUEUED');
      // The reason names the run it waits for (one to look at, or to cancel).
      expect(waiting.stateReason).toBe(`waiting for run ${holder.id} of the stack to end`);
      expect((await store.leaseRun('private-a', 'w-holder', t0, 30_000))?.id).toBe(holder.id);
      // The holder ends (its lock passes to the waiting run) while four workers keep asking.
      let handedOut = false;
      const leases = Array.from({ length: 4 }, async (_, w) => {
        const got: string[] = [];
        // Until one of them is handed the run (the asks on their way then still count), or a
        // deadline: not a count of tries, which a loaded machine could use up before the cancel.
        for (const end = Date.now() + 20_000; Date.now() < end && !handedOut;) {
          const run = await store.leaseRun('private-a', `w-${w}`, t0, 30_000);
          if (run) {
            got.push(run.id);
            handedOut = true;
          }
        }
        return got;
      });
      await store.transitionRun(holder.id, 'CANCELED', {}, t0);
      const handed = (await Promise.all(leases)).flat();
      expect(handed).toEqual([waiting.id]);
      expect((await store.runStates(waiting.id)).map((s) => [s.seq, s.state])).toEqual([
        [1, 'QUEUED'],
        [2, 'READY'],
        [3, 'PREPARING'],
      ]);
      await store.transitionRun(waiting.id, 'CANCELED', {}, t0);
    }
  });

  it('takes a confirmed apply from the queue like any run', async () => {
    await stack('apply');
    const run = await trigger('apply', 'TRACKED');
    const leased = await store.leaseRun('private-a', 'w1', t0, 30_000);
    expect(leased?.id).toBe(run.id);
    for (const state of ['INITIALIZING', 'PLANNING', 'UNCONFIRMED'] as const)
      await store.transitionRun(run.id, state, { workerId: 'w1' }, t0);
    await store.transitionRun(run.id, 'CONFIRMED', { patch: { releaseWorker: true } }, t0);
    const apply = await store.leaseRun('private-a', 'w2', t0, 30_000);
    expect(apply).toMatchObject({ id: run.id, state: 'PREPARING_APPLY', workerId: 'w2' });
    const stale = await conflict(store.transitionRun(run.id, 'APPLYING', { workerId: 'w1' }, t0));
    expect(stale.code).toBe('RUN_CHANGED');
    await store.transitionRun(run.id, 'APPLYING', { workerId: 'w2', patch: { started: true } }, t0);
    await store.transitionRun(
      run.id,
      'FINISHED',
      { workerId: 'w2', patch: { releaseWorker: true } },
      t0,
    );
  });

  it("hands a confirmed apply whose worker vanished before its container started to another worker, with the plan's seal and image", async () => {
    await stack('apply-again');
    const run = await trigger('apply-again', 'TRACKED');
    await store.leaseRun('private-a', 'w1', t0, 30_000);
    await store.transitionRun(
      run.id,
      'INITIALIZING',
      { workerId: 'w1', patch: { started: true, imageId: 'sha256:plan' } },
      t0,
    );
    await store.transitionRun(run.id, 'PLANNING', { workerId: 'w1' }, t0);
    await store.transitionRun(
      run.id,
      'UNCONFIRMED',
      { workerId: 'w1', patch: { workspaceSeal: 'sealed:v1:x', releaseWorker: true } },
      t0,
    );
    await store.transitionRun(run.id, 'CONFIRMED', { patch: { releaseWorker: true } }, t0);
    // The plan's container started; the apply's has not: losing this worker requeues the apply.
    const apply = await store.leaseRun('private-a', 'w2', t0, 10_000);
    expect(apply).toMatchObject({ state: 'PREPARING_APPLY', workerId: 'w2', started: false });
    expect((await store.expireLeases(later(11_000))).map((r) => [r.id, r.state])).toEqual([
      [run.id, 'CONFIRMED'],
    ]);
    const again = await store.leaseRun('private-a', 'w3', later(12_000), 10_000);
    expect(again).toMatchObject({
      id: run.id,
      state: 'PREPARING_APPLY',
      workerId: 'w3',
      workspaceSeal: 'sealed:v1:x',
      imageId: 'sha256:plan',
    });
    await store.transitionRun(run.id, 'CANCELED', {}, t0);
  });

  it("records a worker's goodbye until it registers again (a late heartbeat does not undo it)", async () => {
    const worker = workerInfo('w-leaves');
    expect((await store.upsertWorker(worker, t0)).leftAt).toBeNull();
    expect(await store.markWorkerLeft('w-leaves', later(1_000))).toBe(true);
    expect((await store.getWorker('w-leaves'))?.leftAt).toBe(later(1_000).toISOString());
    expect(await store.markWorkerLeft('w-unknown', later(1_000))).toBe(false);
    expect(await store.heartbeat('w-leaves', later(2_000), 10_000, [])).toBe(true);
    expect((await store.getWorker('w-leaves'))?.leftAt).toBe(later(1_000).toISOString());
    expect((await store.getWorker('w-leaves'))?.lastHeartbeatAt).toBe(later(2_000).toISOString());
    await store.markWorkerLeft('w-leaves', later(3_000));
    expect((await store.upsertWorker(worker, later(4_000))).leftAt).toBeNull();
  });

  it('ends runs of a vanished worker: back to the queue before a container started, FAILED after', async () => {
    await stack('lease');
    await store.upsertWorker(workerInfo('w-gone', 2), t0);
    const notStarted = await trigger('lease', 'TASK');
    const started = await trigger('lease', 'TASK');
    expect((await store.leaseRun('private-a', 'w-gone', t0, 10_000))?.id).toBe(notStarted.id);
    expect((await store.leaseRun('private-a', 'w-gone', t0, 10_000))?.id).toBe(started.id);
    await store.transitionRun(
      started.id,
      'PERFORMING',
      { workerId: 'w-gone', patch: { started: true } },
      t0,
    );
    // A run the worker leased but does not name (the lease answer never reached it).
    const forgotten = await trigger('lease', 'TASK');
    expect((await store.leaseRun('private-a', 'w-gone', t0, 10_000))?.id).toBe(forgotten.id);
    // A heartbeat renews the leases of the runs the worker names.
    expect(await store.heartbeat('w-gone', later(8_000), 10_000, [notStarted.id, started.id])).toBe(
      true,
    );
    // Only the forgotten run's lease ran out: it goes back to the queue, nobody's.
    expect(
      (await store.expireLeases(later(15_000))).map((r) => [r.id, r.state, r.workerId]),
    ).toEqual([[forgotten.id, 'READY', null]]);
    await store.transitionRun(forgotten.id, 'CANCELED', {}, t0);
    const changed = await store.expireLeases(later(19_000));
    expect(changed.map((r) => [r.id, r.state]).sort()).toEqual(
      [
        [notStarted.id, 'READY'],
        [started.id, 'FAILED'],
      ].sort(),
    );
    const failed = await store.getRun(started.id);
    expect(failed?.stateReason).toContain(
      'worker w-gone stopped answering while the run was PERFORMING',
    );
    // The run keeps the worker that ran it; the one that went back to the queue forgets it.
    expect(failed).toMatchObject({ workerId: 'w-gone', leaseExpiresAt: null });
    expect((await store.getRun(notStarted.id))?.workerId).toBeNull();
    expect(await store.heartbeat('nobody', t0, 1000, [])).toBe(false);
    await store.transitionRun(notStarted.id, 'CANCELED', {}, t0);
  });

  it("takes a restarted worker's runs from it at once, whatever their lease: back to the queue before a container started, FAILED after", async () => {
    await stack('restart');
    await store.upsertWorker(workerInfo('w-restart', 2), t0);
    await store.upsertWorker(workerInfo('w-other', 1), t0);
    const notStarted = await trigger('restart', 'TASK');
    const started = await trigger('restart', 'TASK');
    const others = await trigger('restart', 'TASK');
    expect((await store.leaseRun('private-a', 'w-restart', t0, 60_000))?.id).toBe(notStarted.id);
    expect((await store.leaseRun('private-a', 'w-restart', t0, 60_000))?.id).toBe(started.id);
    expect((await store.leaseRun('private-a', 'w-other', t0, 60_000))?.id).toBe(others.id);
    await store.transitionRun(
      started.id,
      'PERFORMING',
      { workerId: 'w-restart', patch: { started: true } },
      t0,
    );
    // Long before the leases end: only this worker's runs change.
    const changed = await store.releaseWorkerRuns('w-restart', later(1_000));
    expect(changed.map((r) => [r.id, r.state, r.workerId]).sort()).toEqual(
      [
        [notStarted.id, 'READY', null],
        [started.id, 'FAILED', 'w-restart'],
      ].sort(),
    );
    expect((await store.getRun(started.id))?.stateReason).toMatch(
      /^worker w-restart started again while the run was PERFORMING: the process that ran it ended/,
    );
    expect((await store.getRun(notStarted.id))?.stateReason).toBe(
      'worker w-restart started again before any container of the run started; the run went back to the queue',
    );
    expect(await store.getRun(others.id)).toMatchObject({
      state: 'PREPARING',
      workerId: 'w-other',
    });
    for (const run of [notStarted, others]) await store.transitionRun(run.id, 'CANCELED', {}, t0);
    // A run asked to stop ends as the cancel meant, whatever the worker did not say.
    const stopping = await trigger('restart', 'TASK');
    expect((await store.leaseRun('private-a', 'w-restart', later(1_000), 60_000))?.id).toBe(
      stopping.id,
    );
    await store.transitionRun(
      stopping.id,
      'PERFORMING',
      { workerId: 'w-restart', patch: { started: true } },
      t0,
    );
    const held = { state: 'PERFORMING', workerId: 'w-restart' } as const;
    expect(await store.requestStop(stopping.id, held, 'canceled by admin', t0)).not.toBeNull();
    expect(
      (await store.releaseWorkerRuns('w-restart', later(1_500))).map((r) => [r.id, r.state]),
    ).toEqual([[stopping.id, 'STOPPED']]);
    expect((await store.getRun(stopping.id))?.stateReason).toBe(
      "canceled by admin; worker w-restart started again before it said that the run stopped: its new process removes the job's container",
    );
    // Nothing held any more: nothing changes.
    expect(await store.releaseWorkerRuns('w-restart', later(2_000))).toEqual([]);
  });

  it('asks a held run to stop once, only as the caller saw it; its lease ending ends it as the cancel meant', async () => {
    await stack('stop');
    await store.upsertWorker(workerInfo('w-stop', 2), t0);
    const preparing = await trigger('stop', 'TASK');
    const running = await trigger('stop', 'TASK');
    expect((await store.leaseRun('private-a', 'w-stop', t0, 10_000))?.id).toBe(preparing.id);
    expect((await store.leaseRun('private-a', 'w-stop', t0, 10_000))?.id).toBe(running.id);
    await store.transitionRun(
      running.id,
      'PERFORMING',
      { workerId: 'w-stop', patch: { started: true } },
      t0,
    );
    // Not as the caller saw it (the state moved meanwhile, or another worker): nothing asked.
    const held = { state: 'PERFORMING', workerId: 'w-stop' } as const;
    expect(
      await store.requestStop(running.id, { ...held, state: 'PREPARING' }, 'r', t0),
    ).toBeNull();
    expect(await store.requestStop(running.id, { ...held, workerId: 'w-x' }, 'r', t0)).toBeNull();
    const asked = await store.requestStop(running.id, held, 'canceled by alice', later(1000));
    expect(asked).toMatchObject({
      state: 'PERFORMING',
      workerId: 'w-stop',
      stopRequest: { reason: 'canceled by alice', at: later(1000).toISOString() },
    });
    // The first reason stays; no state history entry for it.
    expect(await store.requestStop(running.id, held, 'canceled by bob', t0)).toBeNull();
    expect((await store.getRun(running.id))?.stopRequest?.reason).toBe('canceled by alice');
    expect((await store.runStates(running.id)).map((s) => s.state).at(-1)).toBe('PERFORMING');
    expect(
      await store.requestStop(
        preparing.id,
        { state: 'PREPARING', workerId: 'w-stop' },
        'canceled by carol',
        t0,
      ),
    ).not.toBeNull();
    // The worker goes silent: neither goes back to the queue, each ends as its cancel meant.
    const changed = await store.expireLeases(later(20_000));
    expect(changed.map((r) => [r.id, r.state, r.workerId, r.leaseExpiresAt]).sort()).toEqual(
      [
        [preparing.id, 'CANCELED', 'w-stop', null],
        [running.id, 'STOPPED', 'w-stop', null],
      ].sort(),
    );
    expect((await store.getRun(running.id))?.stateReason).toBe(
      `canceled by alice; worker w-stop did not say that the run stopped before its lease expired at ${later(10_000).toISOString()}: whether its job ran on is unknown`,
    );
    // A run asked to stop never goes back to the queue, nor waits for a confirm.
    const back = await trigger('stop', 'TASK');
    expect((await store.leaseRun('private-a', 'w-stop', t0, 10_000))?.id).toBe(back.id);
    await store.requestStop(
      back.id,
      { state: 'PREPARING', workerId: 'w-stop' },
      'canceled by dan',
      t0,
    );
    const requeued = await store.transitionRun(
      back.id,
      'READY',
      {
        from: ['PREPARING'],
        patch: { stateReason: 'the worker never got it', forgetWorker: true },
      },
      t0,
    );
    expect(requeued).toMatchObject({
      state: 'CANCELED',
      workerId: 'w-stop',
      stateReason: 'canceled by dan, before its job started',
    });
    await stack('stop-plan');
    const plan = await trigger('stop-plan', 'TRACKED');
    expect((await store.leaseRun('private-a', 'w-stop', t0, 10_000))?.id).toBe(plan.id);
    for (const state of ['INITIALIZING', 'PLANNING'] as const)
      await store.transitionRun(plan.id, state, { workerId: 'w-stop' }, t0);
    await store.requestStop(
      plan.id,
      { state: 'PLANNING', workerId: 'w-stop' },
      'canceled by eve',
      t0,
    );
    const waiting = await store.transitionRun(
      plan.id,
      'UNCONFIRMED',
      { workerId: 'w-stop', patch: { releaseWorker: true } },
      t0,
    );
    expect(waiting).toMatchObject({
      state: 'DISCARDED',
      stateReason: 'canceled by eve; its plan was done before the worker heard, and is discarded',
    });
    expect((await store.runStates(plan.id)).map((r) => r.state).slice(-2)).toEqual([
      'UNCONFIRMED',
      'DISCARDED',
    ]);
    // Ended: not held, so no stop can be asked any more.
    expect(await store.requestStop(running.id, { ...held, state: 'STOPPED' }, 'r', t0)).toBeNull();
  });

  it('forgets workers silent since a time that hold no lease; their runs keep their id', async () => {
    await stack('forget');
    const worker = (id: string, at: Date) => store.upsertWorker(workerInfo(id), at);
    // A day before every other worker of this suite's store: only these three are old enough.
    const dayBefore = later(-24 * 3_600_000);
    const after = (ms: number): Date => new Date(dayBefore.getTime() + ms);
    await worker('w-old', dayBefore);
    await worker('w-holding', dayBefore);
    await worker('w-recent', after(50_000));
    // Drained: kept, or its drain would be lost when it comes back.
    await worker('w-drained', dayBefore);
    expect(await store.setWorkerDrained('w-drained', true)).toBe(true);
    const ran = await trigger('forget', 'TASK');
    expect((await store.leaseRun('private-a', 'w-old', t0, 10_000))?.id).toBe(ran.id);
    await store.transitionRun(ran.id, 'FAILED', { patch: { releaseWorker: true } }, t0);
    const held = await trigger('forget', 'TASK');
    expect((await store.leaseRun('private-a', 'w-holding', t0, 10_000))?.id).toBe(held.id);
    const gone = await store.forgetWorkers(after(40_000));
    expect(gone.map((w) => w.id)).toEqual(['w-old']);
    const left = (await store.listWorkers('private-a')).map((w) => w.id);
    expect(left).toContain('w-holding');
    expect(left).toContain('w-recent');
    expect(left).toContain('w-drained');
    expect(left).not.toContain('w-old');
    expect((await store.getRun(ran.id))?.workerId).toBe('w-old');
    // Registering again brings it back.
    await worker('w-old', later(60_000));
    expect((await store.listWorkers('private-a')).map((w) => w.id)).toContain('w-old');
    await store.transitionRun(held.id, 'CANCELED', {}, t0);
  });

  it('stores a log batch sent twice once, refuses a gap, and reads from an offset', async () => {
    await stack('logs');
    const run = await trigger('logs', 'TASK');
    expect(await store.appendLog(run.id, 1, ['a\n', 'b\n'], t0)).toBe(3);
    // The same batch again (the answer was lost on the way back): nothing doubles.
    expect(await store.appendLog(run.id, 1, ['a\n', 'b\n'], t0)).toBe(3);
    expect(await store.appendLog(run.id, 2, ['b\n', 'c\n'], t0)).toBe(4);
    const gap = await conflict(store.appendLog(run.id, 6, ['f\n'], t0));
    expect(gap.code).toBe('LOG_GAP');
    expect(gap.message).toContain('the next expected is 4');
    expect((await store.readLog(run.id, 0, 100)).map((c) => [c.seq, c.text])).toEqual([
      [1, 'a\n'],
      [2, 'b\n'],
      [3, 'c\n'],
    ]);
    expect((await store.readLog(run.id, 2, 100)).map((c) => c.text)).toEqual(['c\n']);
    await store.transitionRun(run.id, 'CANCELED', {}, t0);
  });

  it('stores a log up to its limit, marks the cut, and refuses everything after it', async () => {
    await stack('bounded');
    const run = await trigger('bounded', 'TASK');
    // Bytes, not characters: "é" is two.
    expect(await store.appendLog(run.id, 1, ['12345', 'é\n'], t0, 10)).toBe(3);
    const full = await conflict(store.appendLog(run.id, 3, ['abc', 'def'], t0, 10));
    expect(full.code).toBe('LOG_TOO_LARGE');
    expect(full.message).toContain('limit of 10 bytes');
    const chunks = await store.readLog(run.id, 0, 100);
    expect(chunks.map((c) => c.seq)).toEqual([1, 2, 3]);
    expect(chunks[2]?.text).toContain("the server stored no more of this run's output here");
    // Later batches, even small ones, are refused and add nothing.
    expect((await conflict(store.appendLog(run.id, 4, ['x'], t0, 10))).code).toBe('LOG_TOO_LARGE');
    expect(await store.nextLogSeq(run.id)).toBe(4);
    expect(await store.logBytes(run.id)).toBe(8);
    await store.transitionRun(run.id, 'CANCELED', {}, t0);
  });

  it('masks values learnt later in every stored chunk, also across chunks', async () => {
    await stack('remask');
    const run = await trigger('remask', 'TASK');
    await store.appendLog(run.id, 1, ['key=hunt', 'er2\n', 'ok hunter2\n', 'clean\n'], t0);
    expect(await store.remaskLog(run.id, ['hunter2'])).toBe(3);
    const texts = (await store.readLog(run.id, 0, 100)).map((c) => c.text);
    expect(texts.join('')).not.toContain('hunt');
    expect(texts).toEqual(['key=*****', '\n', 'ok *****\n', 'clean\n']);
    expect(await store.remaskLog(run.id, ['hunter2'])).toBe(0);
    await store.transitionRun(run.id, 'CANCELED', {}, t0);
  });

  it('refuses to delete a stack whose runs have not ended', async () => {
    await stack('busy');
    const run = await trigger('busy', 'TASK');
    const error = await conflict(store.deleteStack('busy'));
    expect(error.code).toBe('STACK_HAS_RUNS');
    expect(error.hint).toContain(`\`berth runs cancel ${run.id}\``);
    await store.transitionRun(run.id, 'CANCELED', {}, t0);
    expect(await store.deleteStack('busy')).toBe(true);
    expect(await store.getStack('busy')).toBeNull();
    expect(await store.getRun(run.id)).toBeNull();
  });

  it('keeps a shared setting once, whoever claims it first, also when two claim it at once', async () => {
    expect(await store.claimSetting('first-wins', 'one')).toBe('one');
    expect(await store.claimSetting('first-wins', 'two')).toBe('one');
    const [a, b] = await Promise.all([
      store.claimSetting('at-once', 'a'),
      store.claimSetting('at-once', 'b'),
    ]);
    expect(a).toBe(b);
    expect(['a', 'b']).toContain(a);
  });

  it('lists the values sealed with the secrets key: secret variables, and the seals of saved workspaces whose run has not ended; reads a setting', async () => {
    const own = await freshStore(kind);
    try {
      expect(await own.sealedValues()).toEqual([]);
      expect(await own.readSetting('nothing')).toBeNull();
      await poolWithStack(own, 's', t0);
      await own.setStackVariable('s', { name: 'PLAIN', value: 'not sealed', secret: false });
      expect(await own.sealedValues()).toEqual([]);
      const runId = await waitingPlan(own, 's', newId(), 'sealed:v1:plan', t0);
      await own.setStackVariable('s', { name: 'TOKEN', value: 'sealed:v1:token', secret: true });
      expect(await own.sealedValues()).toEqual([
        { kind: 'variable', stackId: 's', name: 'TOKEN', value: 'sealed:v1:token' },
        { kind: 'workspace', runId, state: 'UNCONFIRMED', value: 'sealed:v1:plan' },
      ]);
      // A run that ended keeps no workspace worth checking a key against.
      await own.transitionRun(runId, 'DISCARDED', {}, t0);
      await own.unsetStackVariable('s', 'TOKEN');
      expect(await own.sealedValues()).toEqual([]);
      await own.replaceSetting('kept', 'one');
      await own.replaceSetting('kept', 'two');
      expect(await own.readSetting('kept')).toBe('two');
    } finally {
      await own.close();
    }
  });

  it('keeps API tokens by hash only', async () => {
    await store.createToken({ id: 't1', name: 'ci', role: 'user' }, 'token-hash-1', t0);
    expect(await store.findTokenByHash('token-hash-1')).toMatchObject({ id: 't1', role: 'user' });
    expect(await store.findTokenByHash('token-1')).toBeNull();
  });

  it('lists tokens without hashes, revokes one with its sessions, and keeps the last admin token', async () => {
    const own = await freshStore(kind);
    try {
      await own.createToken({ id: 'admin', name: 'admin', role: 'admin' }, 'h-admin', t0);
      await own.createToken({ id: 'u1', name: 'ci deploy', role: 'user' }, 'h-u1', later(1000));
      await own.createToken({ id: 'a2', name: 'ops', role: 'admin' }, 'h-a2', later(2000));
      expect(await own.listTokens()).toEqual([
        { id: 'admin', name: 'admin', role: 'admin', createdAt: t0.toISOString() },
        { id: 'u1', name: 'ci deploy', role: 'user', createdAt: later(1000).toISOString() },
        { id: 'a2', name: 'ops', role: 'admin', createdAt: later(2000).toISOString() },
      ]);
      const session = {
        callerKind: 'user' as const,
        callerId: 'u1',
        createdAt: t0.toISOString(),
        expiresAt: later(3_600_000).toISOString(),
      };
      await own.createSession('session-of-u1', session, t0);
      await own.createSession('session-of-a2', { ...session, callerId: 'a2' }, t0);
      expect(await own.deleteToken('u1')).toBe(true);
      expect(await own.findTokenByHash('h-u1')).toBeNull();
      expect(await own.findSession('session-of-u1', t0)).toBeNull();
      expect(await own.findSession('session-of-a2', t0)).not.toBeNull();
      expect(await own.deleteToken('u1')).toBe(false);
      // Two admins revoking each other's tokens at once: one wins, one admin token is left.
      const outcomes = await Promise.allSettled([own.deleteToken('admin'), own.deleteToken('a2')]);
      expect(outcomes.filter((o) => o.status === 'fulfilled')).toHaveLength(1);
      const refused = outcomes.find((o) => o.status === 'rejected');
      expect((refused as PromiseRejectedResult).reason).toMatchObject({ code: 'TOKEN_LAST_ADMIN' });
      const [last] = await own.listTokens();
      expect(last?.role).toBe('admin');
      expect((await conflict(own.deleteToken(last?.id as string))).code).toBe('TOKEN_LAST_ADMIN');
      expect(await own.listTokens()).toHaveLength(1);
    } finally {
      await own.close();
    }
  });

  it('gives a token a new hash, or makes it, and ends its sessions (a lost admin token)', async () => {
    const own = await freshStore(kind);
    try {
      const admin = { id: 'admin', name: 'admin', role: 'admin' } as const;
      expect(await own.replaceToken(admin, 'h-first', t0)).toEqual({
        ...admin,
        createdAt: t0.toISOString(),
      });
      await own.createSession(
        'session-of-admin',
        {
          callerKind: 'admin',
          callerId: 'admin',
          createdAt: t0.toISOString(),
          expiresAt: later(3_600_000).toISOString(),
        },
        t0,
      );
      expect(await own.replaceToken(admin, 'h-second', later(5000))).toEqual({
        ...admin,
        createdAt: t0.toISOString(),
      });
      expect(await own.findTokenByHash('h-first')).toBeNull();
      expect((await own.findTokenByHash('h-second'))?.id).toBe('admin');
      expect(await own.findSession('session-of-admin', t0)).toBeNull();
      expect(await own.listTokens()).toHaveLength(1);
    } finally {
      await own.close();
    }
  });
});

describe.each<Kind>(['sqlite', 'postgres'])('token names on %s', (kind) => {
  it('are unique: a second token of a name is refused, even when both are made at once', async () => {
    const own = await freshStore(kind);
    try {
      await own.createToken({ id: 't1', name: 'ci', role: 'user' }, 'h-1', t0);
      expect(
        (await conflict(own.createToken({ id: 't2', name: 'ci', role: 'admin' }, 'h-2', t0))).code,
      ).toBe('TOKEN_NAME_TAKEN');
      const outcomes = await Promise.allSettled(
        ['a', 'b', 'c', 'd'].map((id) =>
          own.createToken({ id, name: 'deploy', role: 'user' }, `h-${id}`, t0),
        ),
      );
      expect(outcomes.filter((o) => o.status === 'fulfilled')).toHaveLength(1);
      for (const outcome of outcomes.filter((o) => o.status === 'rejected'))
        expect(outcome.reason).toMatchObject({ code: 'TOKEN_NAME_TAKEN' });
      expect(
        (await conflict(own.createToken({ id: 't1', name: 'other', role: 'user' }, 'h-3', t0)))
          .code,
      ).toBe('ALREADY_EXISTS');
      expect((await own.listTokens()).map((t) => t.name).sort()).toEqual(['ci', 'deploy']);
    } finally {
      await own.close();
    }
  });

  it('held twice by a database from before are made unique, the admin token keeping its name', async () => {
    const name = `berth_test_${process.pid}_${(databases += 1)}`;
    if (kind === 'postgres') postgres.createDatabase(name);
    const own = await openStore(
      kind === 'sqlite'
        ? { dataDir: tempDir('berth-store-') }
        : { databaseUrl: postgres.url(name), dataDir: '/nonexistent' },
    );
    try {
      // As berth left a database before names were unique (migration 008 the last).
      await migrateToLatest(own.db, '008-worker-left');
      const rows = [
        ['u-old', 'ops', later(1000)],
        ['u-new', 'ops', later(2000)],
        ['u-admin', 'admin', t0],
        ['admin', 'admin', later(3000)],
        ['u-other', 'ci', later(4000)],
      ] as const;
      for (const [id, tokenName, at] of rows)
        await own.db
          .insertInto('api_tokens')
          .values({ id, name: tokenName, role: 'user', token_hash: `h-${id}`, created_at: iso(at) })
          .execute();
      await own.migrate();
      expect(Object.fromEntries((await own.listTokens()).map((t) => [t.id, t.name]))).toEqual({
        admin: 'admin',
        'u-admin': 'admin (u-admin)',
        'u-old': 'ops',
        'u-new': 'ops (u-new)',
        'u-other': 'ci',
      });
      expect(
        (await conflict(own.createToken({ id: 'x', name: 'ops', role: 'user' }, 'h-x', t0))).code,
      ).toBe('TOKEN_NAME_TAKEN');
    } finally {
      await own.close();
    }
  });
});
