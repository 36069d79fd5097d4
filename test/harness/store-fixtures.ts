/**
 * Records the store tests set up again and again, made through the store's own interface: a
 * private pool, a stack in it, and a tracked run whose plan waits for confirmation.
 */
import type { Store } from '../../src/store/store.js';

/** A private pool `id` (token hash `hash-ID`) with a stack of the same id on a local directory. */
export async function poolWithStack(store: Store, id: string, at: Date): Promise<void> {
  await store.createPool(
    { id, name: id, kind: 'private', allowList: [], defaultImage: null, pullPolicy: null },
    `hash-${id}`,
    at,
  );
  await store.createStack(
    {
      id,
      name: id,
      repository: null,
      branch: null,
      localDir: '/src',
      projectRoot: '',
      tool: null,
      toolVersion: null,
      runnerImage: null,
      labels: [],
      autoDeploy: false,
      poolId: id,
    },
    at,
  );
}

/**
 * A tracked run of stack `id` (see poolWithStack), planned by worker w1 and waiting for a
 * confirm with its saved workspace's `seal`; its id.
 */
export async function waitingPlan(
  store: Store,
  id: string,
  runId: string,
  seal: string,
  at: Date,
): Promise<string> {
  const run = await store.createRun(
    {
      id: runId,
      stackId: id,
      poolId: id,
      kind: 'TRACKED',
      commitSha: null,
      triggeredBy: 'test',
      autoDeploy: false,
    },
    at,
  );
  await store.leaseRun(id, 'w1', at, 30_000);
  await store.transitionRun(
    run.id,
    'INITIALIZING',
    { workerId: 'w1', patch: { started: true } },
    at,
  );
  await store.transitionRun(run.id, 'PLANNING', { workerId: 'w1' }, at);
  await store.transitionRun(
    run.id,
    'UNCONFIRMED',
    { workerId: 'w1', patch: { workspaceSeal: seal, releaseWorker: true } },
    at,
  );
  return run.id;
}
