/**
 * The Store on Kysely: the same queries for SQLite and PostgreSQL. Where the two differ (row
 * locks), `locking` adds PostgreSQL's clauses; SQLite has one writer, which serialises the same
 * statements by itself.
 */
import { sql, type Kysely, type Selectable, type Transaction } from 'kysely';
import {
  TERMINAL_STATES,
  cancelTarget,
  isTerminal,
  checkTransition,
  holdsStackLock,
  takesStackLock,
  type RunKind,
  type RunStateName,
} from '../domain/run-state.js';
import type { Database, PoolsTable, RunsTable, StacksTable, WorkersTable } from './schema.js';
import { migrateToLatest } from './migrate.js';
import { Coalescer } from './coalesce.js';
import { serverLimitMarker as logLimitMarker } from '../domain/log-bound.js';
import { remaskChunks } from '../domain/log-remask.js';
import {
  StoreConflict,
  type ApiToken,
  type Session,
  type LogChunk,
  type NewRun,
  type Pool,
  type PoolPatch,
  type RunFilter,
  type Run,
  type TransitionOptions,
  type SealedValue,
  type Stack,
  type StackPatch,
  type StackVariable,
  type StateRecord,
  type Store,
  type Worker,
} from './store.js';

type Db = Kysely<Database> | Transaction<Database>;

/** One caller of leaseRun. */
interface LeaseRequest {
  workerId: string;
  at: Date;
  leaseMs: number;
}

/**
 * The most leases one statement makes: enough for every worker long-polling one server at once
 * in the benchmark (100), small enough that the statement stays short.
 */
const LEASE_BATCH = 128;

const iso = (at: Date): string => at.toISOString();
const flag = (value: boolean): number => (value ? 1 : 0);

function toPool(row: Selectable<PoolsTable>): Pool {
  return {
    id: row.id,
    name: row.name,
    kind: row.kind,
    allowList: JSON.parse(row.allow_list) as string[],
    defaultImage: row.default_image,
    pullPolicy: row.pull_policy,
    createdAt: row.created_at,
  };
}

function toWorker(row: Selectable<WorkersTable>): Worker {
  return {
    id: row.id,
    poolId: row.pool_id,
    host: row.host,
    berthVersion: row.berth_version,
    engineVersion: row.engine_version,
    concurrency: Number(row.concurrency),
    drained: Number(row.drained) === 1,
    registeredAt: row.registered_at,
    lastHeartbeatAt: row.last_heartbeat_at,
    leftAt: row.left_at ?? null,
  };
}

function toStack(row: Selectable<StacksTable>): Stack {
  return {
    id: row.id,
    name: row.name,
    repository: row.repository,
    branch: row.branch,
    localDir: row.local_dir,
    projectRoot: row.project_root,
    tool: row.tool,
    toolVersion: row.tool_version,
    runnerImage: row.runner_image,
    labels: JSON.parse(row.labels) as string[],
    autoDeploy: Number(row.auto_deploy) === 1,
    poolId: row.pool_id,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}

function toRun(row: Selectable<RunsTable>): Run {
  return {
    id: row.id,
    stackId: row.stack_id,
    poolId: row.pool_id,
    kind: row.kind as RunKind,
    state: row.state as RunStateName,
    stateReason: row.state_reason,
    commitSha: row.commit_sha,
    triggeredBy: row.triggered_by,
    autoDeploy: Number(row.auto_deploy) === 1,
    workerId: row.worker_id,
    leaseExpiresAt: row.lease_expires_at,
    started: Number(row.started) === 1,
    imageReference: row.image_reference,
    imageDigest: row.image_digest,
    imageSource: row.image_source,
    imageChoice: row.image_choice,
    imageId: row.image_id,
    plan: row.plan === null ? null : (JSON.parse(row.plan) as Run['plan']),
    workspaceSeal: row.workspace_seal,
    stopRequest:
      row.stop_reason === null
        ? null
        : { reason: row.stop_reason, at: row.stop_requested_at ?? row.updated_at },
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}

/** A unique-key violation, in either database's words. */
function isUniqueViolation(err: unknown): boolean {
  const e = err as { code?: string; message?: string };
  return e.code === '23505' || /UNIQUE constraint failed/.test(e.message ?? '');
}

/** A row naming one that is not there (a pool deleted meanwhile, by another server). */
function isForeignKeyViolation(err: unknown): boolean {
  const e = err as { code?: string; message?: string };
  return e.code === '23503' || /FOREIGN KEY constraint failed/.test(e.message ?? '');
}

/** Whether a unique-key violation is of one key: its name (PostgreSQL) or its column (SQLite). */
function violates(err: unknown, constraint: string, column: string): boolean {
  const e = err as { constraint?: string; message?: string };
  return e.constraint === constraint || (e.message ?? '').includes(column);
}

export class KyselyStore implements Store {
  constructor(
    readonly db: Kysely<Database>,
    readonly dialect: 'sqlite' | 'postgres',
  ) {}

  async migrate(): Promise<void> {
    await migrateToLatest(this.db);
  }

  async close(): Promise<void> {
    await this.db.destroy();
  }

  /** PostgreSQL: sends a notification to every connection listening on `channel`. */
  async notify(channel: string, payload: string): Promise<void> {
    if (this.dialect !== 'postgres') return;
    await sql`select pg_notify(${channel}, ${payload})`.execute(this.db);
  }

  // Pools

  async createPool(pool: Omit<Pool, 'createdAt'>, tokenHash: string, at: Date): Promise<Pool> {
    const row = {
      id: pool.id,
      name: pool.name,
      kind: pool.kind,
      allow_list: JSON.stringify(pool.allowList),
      default_image: pool.defaultImage,
      pull_policy: pool.pullPolicy,
      token_hash: tokenHash,
      created_at: iso(at),
    };
    try {
      await this.db.insertInto('pools').values(row).execute();
    } catch (err) {
      if (isUniqueViolation(err))
        throw new StoreConflict('ALREADY_EXISTS', `worker pool ${pool.id} already exists`);
      throw err;
    }
    return toPool(row);
  }

  async getPool(id: string): Promise<Pool | null> {
    const row = await this.db
      .selectFrom('pools')
      .selectAll()
      .where('id', '=', id)
      .executeTakeFirst();
    return row ? toPool(row) : null;
  }

  async listPools(): Promise<Pool[]> {
    const rows = await this.db.selectFrom('pools').selectAll().orderBy('id').execute();
    return rows.map(toPool);
  }

  async findPoolByTokenHash(tokenHash: string): Promise<Pool | null> {
    const row = await this.db
      .selectFrom('pools')
      .selectAll()
      .where('token_hash', '=', tokenHash)
      .executeTakeFirst();
    return row ? toPool(row) : null;
  }

  async setPoolTokenHash(id: string, tokenHash: string): Promise<boolean> {
    const result = await this.db
      .updateTable('pools')
      .set({ token_hash: tokenHash })
      .where('id', '=', id)
      .executeTakeFirst();
    return Number(result.numUpdatedRows) === 1;
  }

  async updatePool(id: string, patch: PoolPatch): Promise<Pool | null> {
    const set: Partial<PoolsTable> = {};
    if (patch.name !== undefined) set.name = patch.name;
    if (patch.allowList !== undefined) set.allow_list = JSON.stringify(patch.allowList);
    if (patch.defaultImage !== undefined) set.default_image = patch.defaultImage;
    if (patch.pullPolicy !== undefined) set.pull_policy = patch.pullPolicy;
    if (Object.keys(set).length > 0)
      await this.db.updateTable('pools').set(set).where('id', '=', id).execute();
    return this.getPool(id);
  }

  async deletePool(id: string, onlineSince: Date): Promise<boolean> {
    try {
      return await this.db.transaction().execute(async (trx) => {
        const stacks = await trx
          .selectFrom('stacks')
          .select('id')
          .where('pool_id', '=', id)
          .orderBy('id')
          .execute();
        if (stacks.length > 0) {
          const named = stacks.slice(0, 5).map((s) => s.id);
          throw new StoreConflict(
            'POOL_IN_USE',
            `worker pool ${id} has ${stacks.length} stack(s): ${named.join(', ')}${stacks.length > named.length ? ', …' : ''}; move them to another pool (berth stack update ID --pool POOL) or delete them first`,
          );
        }
        const ran = await trx
          .selectFrom('runs')
          .select(['id', 'stack_id'])
          .where('pool_id', '=', id)
          .orderBy('id', 'desc')
          .executeTakeFirst();
        if (ran) {
          throw new StoreConflict(
            'POOL_IN_USE',
            `worker pool ${id} ran runs of stacks now in other pools (the latest: run ${ran.id} of stack ${ran.stack_id}), and their history names it; it stays while those stacks do`,
          );
        }
        const online = await trx
          .selectFrom('workers')
          .select('id')
          .where('pool_id', '=', id)
          .where('left_at', 'is', null)
          .where('last_heartbeat_at', '>', iso(onlineSince))
          .executeTakeFirst();
        if (online) {
          throw new StoreConflict(
            'POOL_IN_USE',
            `worker ${online.id} of pool ${id} is online; stop it first (its pool token stops working once the pool is gone)`,
          );
        }
        await trx.deleteFrom('workers').where('pool_id', '=', id).execute();
        const result = await trx.deleteFrom('pools').where('id', '=', id).executeTakeFirst();
        return Number(result.numDeletedRows) === 1;
      });
    } catch (err) {
      // A stack, run or worker of the pool made meanwhile, by another server.
      if (isForeignKeyViolation(err))
        throw new StoreConflict(
          'POOL_IN_USE',
          `worker pool ${id} was given a stack, a run or a worker while it was being deleted; try again`,
        );
      throw err;
    }
  }

  // Workers

  async upsertWorker(
    worker: Omit<Worker, 'registeredAt' | 'lastHeartbeatAt' | 'drained' | 'leftAt'>,
    at: Date,
  ): Promise<Worker> {
    const values = {
      id: worker.id,
      pool_id: worker.poolId,
      host: worker.host,
      berth_version: worker.berthVersion,
      engine_version: worker.engineVersion,
      concurrency: worker.concurrency,
      drained: 0,
      registered_at: iso(at),
      last_heartbeat_at: iso(at),
      left_at: null,
    };
    try {
      await this.db
        .insertInto('workers')
        .values(values)
        .onConflict((oc) =>
          oc.column('id').doUpdateSet({
            host: values.host,
            berth_version: values.berth_version,
            engine_version: values.engine_version,
            concurrency: values.concurrency,
            last_heartbeat_at: values.last_heartbeat_at,
            left_at: null,
          }),
        )
        .execute();
    } catch (err) {
      if (isForeignKeyViolation(err))
        throw new StoreConflict('NOT_FOUND', `worker pool ${worker.poolId} does not exist`);
      throw err;
    }
    return (await this.getWorker(worker.id)) as Worker;
  }

  async getWorker(id: string): Promise<Worker | null> {
    const row = await this.db
      .selectFrom('workers')
      .selectAll()
      .where('id', '=', id)
      .executeTakeFirst();
    return row ? toWorker(row) : null;
  }

  async forgetWorkers(silentBefore: Date): Promise<Worker[]> {
    const rows = await this.db
      .deleteFrom('workers')
      .where('last_heartbeat_at', '<', iso(silentBefore))
      // A drained one stays: its drain must still hold when it comes back.
      .where('drained', '=', 0)
      // One that still holds a lease stays until the lease sweep has ended its runs.
      .where((eb) =>
        eb.not(
          eb.exists(
            eb
              .selectFrom('runs')
              .select('runs.id')
              .whereRef('runs.worker_id', '=', 'workers.id')
              .where('runs.lease_expires_at', 'is not', null),
          ),
        ),
      )
      .returningAll()
      .execute();
    return rows.map(toWorker);
  }

  async listWorkers(poolId?: string): Promise<Worker[]> {
    let query = this.db.selectFrom('workers').selectAll();
    if (poolId !== undefined) query = query.where('pool_id', '=', poolId);
    return (await query.orderBy('id').execute()).map(toWorker);
  }

  async heartbeat(
    workerId: string,
    at: Date,
    leaseMs: number,
    runIds: readonly string[],
  ): Promise<boolean> {
    return this.db.transaction().execute(async (trx) => {
      const seen = await trx
        .updateTable('workers')
        // Not left_at: a goodbye stands until the worker registers again (a heartbeat still on its
        // way when the worker said goodbye must not bring it back to the list as IDLE).
        .set({ last_heartbeat_at: iso(at) })
        .where('id', '=', workerId)
        .executeTakeFirst();
      if (Number(seen.numUpdatedRows) !== 1) return false;
      // Only the runs the worker says it runs: a lease it lost track of (a lease answer that
      // never arrived) must expire, not be renewed for ever.
      if (runIds.length > 0) {
        await trx
          .updateTable('runs')
          .set({ lease_expires_at: iso(new Date(at.getTime() + leaseMs)) })
          .where('worker_id', '=', workerId)
          .where('id', 'in', [...runIds])
          .where('lease_expires_at', 'is not', null)
          .execute();
      }
      return true;
    });
  }

  async setWorkerDrained(id: string, drained: boolean): Promise<boolean> {
    const result = await this.db
      .updateTable('workers')
      .set({ drained: flag(drained) })
      .where('id', '=', id)
      .executeTakeFirst();
    return Number(result.numUpdatedRows) === 1;
  }

  async markWorkerLeft(id: string, at: Date): Promise<boolean> {
    const result = await this.db
      .updateTable('workers')
      .set({ left_at: iso(at) })
      .where('id', '=', id)
      .executeTakeFirst();
    return Number(result.numUpdatedRows) === 1;
  }

  // Stacks

  async createStack(stack: Omit<Stack, 'createdAt' | 'updatedAt'>, at: Date): Promise<Stack> {
    const row = {
      id: stack.id,
      name: stack.name,
      repository: stack.repository,
      branch: stack.branch,
      local_dir: stack.localDir,
      project_root: stack.projectRoot,
      tool: stack.tool,
      tool_version: stack.toolVersion,
      runner_image: stack.runnerImage,
      labels: JSON.stringify(stack.labels),
      auto_deploy: flag(stack.autoDeploy),
      pool_id: stack.poolId,
      created_at: iso(at),
      updated_at: iso(at),
    };
    try {
      await this.db.insertInto('stacks').values(row).execute();
    } catch (err) {
      if (isUniqueViolation(err))
        throw new StoreConflict('ALREADY_EXISTS', `stack ${stack.id} already exists`);
      if (isForeignKeyViolation(err))
        throw new StoreConflict('NOT_FOUND', `worker pool ${stack.poolId} does not exist`);
      throw err;
    }
    return toStack(row);
  }

  async getStack(id: string): Promise<Stack | null> {
    const row = await this.db
      .selectFrom('stacks')
      .selectAll()
      .where('id', '=', id)
      .executeTakeFirst();
    return row ? toStack(row) : null;
  }

  async listStacks(filter: { poolId?: string } = {}): Promise<Stack[]> {
    let query = this.db.selectFrom('stacks').selectAll().orderBy('id');
    if (filter.poolId !== undefined) query = query.where('pool_id', '=', filter.poolId);
    return (await query.execute()).map(toStack);
  }

  async updateStack(id: string, patch: StackPatch, at: Date): Promise<Stack | null> {
    const set: Partial<StacksTable> = { updated_at: iso(at) };
    if (patch.name !== undefined) set.name = patch.name;
    if (patch.repository !== undefined) set.repository = patch.repository;
    if (patch.branch !== undefined) set.branch = patch.branch;
    if (patch.localDir !== undefined) set.local_dir = patch.localDir;
    if (patch.projectRoot !== undefined) set.project_root = patch.projectRoot;
    if (patch.tool !== undefined) set.tool = patch.tool;
    if (patch.toolVersion !== undefined) set.tool_version = patch.toolVersion;
    if (patch.runnerImage !== undefined) set.runner_image = patch.runnerImage;
    if (patch.labels !== undefined) set.labels = JSON.stringify(patch.labels);
    if (patch.autoDeploy !== undefined) set.auto_deploy = flag(patch.autoDeploy);
    if (patch.poolId !== undefined) set.pool_id = patch.poolId;
    const result = await this.db
      .updateTable('stacks')
      .set(set)
      .where('id', '=', id)
      .executeTakeFirst()
      .catch((err: unknown) => {
        if (isForeignKeyViolation(err))
          throw new StoreConflict('NOT_FOUND', `worker pool ${patch.poolId} does not exist`);
        throw err;
      });
    if (Number(result.numUpdatedRows) !== 1) return null;
    return this.getStack(id);
  }

  async deleteStack(id: string): Promise<boolean> {
    return this.db.transaction().execute(async (trx) => {
      const active = await trx
        .selectFrom('runs')
        .select('id')
        .where('stack_id', '=', id)
        .where('state', 'not in', [...TERMINAL_STATES])
        .executeTakeFirst();
      if (active)
        throw new StoreConflict(
          'STACK_HAS_RUNS',
          `stack ${id} has a run that has not ended (${active.id}); cancel it first`,
          `Cancel run ${active.id} (\`berth runs cancel ${active.id}\`, or POST /api/v1/runs/${active.id}/cancel) or wait for it to end, then delete the stack again; \`berth runs list --stack ${id}\` shows the stack's runs.`,
        );
      await trx
        .deleteFrom('log_chunks')
        .where('run_id', 'in', trx.selectFrom('runs').select('id').where('stack_id', '=', id))
        .execute();
      await trx
        .deleteFrom('log_sizes')
        .where('run_id', 'in', trx.selectFrom('runs').select('id').where('stack_id', '=', id))
        .execute();
      await trx
        .deleteFrom('run_states')
        .where('run_id', 'in', trx.selectFrom('runs').select('id').where('stack_id', '=', id))
        .execute();
      await trx.deleteFrom('runs').where('stack_id', '=', id).execute();
      await trx.deleteFrom('stack_env').where('stack_id', '=', id).execute();
      const result = await trx.deleteFrom('stacks').where('id', '=', id).executeTakeFirst();
      return Number(result.numDeletedRows) === 1;
    });
  }

  async setStackVariable(stackId: string, variable: StackVariable): Promise<boolean> {
    const result = await this.db
      .insertInto('stack_env')
      .values({
        stack_id: stackId,
        name: variable.name,
        value: variable.value,
        secret: flag(variable.secret),
      })
      .onConflict((oc) => {
        const update = oc
          .columns(['stack_id', 'name'])
          .doUpdateSet({ value: variable.value, secret: flag(variable.secret) });
        return variable.secret ? update : update.where('stack_env.secret', '=', 0);
      })
      .executeTakeFirst();
    return Number(result.numInsertedOrUpdatedRows ?? 0n) > 0;
  }

  async unsetStackVariable(stackId: string, name: string): Promise<boolean> {
    const result = await this.db
      .deleteFrom('stack_env')
      .where('stack_id', '=', stackId)
      .where('name', '=', name)
      .executeTakeFirst();
    return Number(result.numDeletedRows) === 1;
  }

  async listStackVariables(stackId: string): Promise<StackVariable[]> {
    const rows = await this.db
      .selectFrom('stack_env')
      .selectAll()
      .where('stack_id', '=', stackId)
      .orderBy('name')
      .execute();
    return rows.map((r) => ({ name: r.name, value: r.value, secret: Number(r.secret) === 1 }));
  }

  // Runs

  /** Serialises changes to one stack's runs (PostgreSQL row lock; SQLite has one writer). */
  private async lockStack(trx: Db, stackId: string): Promise<void> {
    if (this.dialect !== 'postgres') return;
    await trx.selectFrom('stacks').select('id').where('id', '=', stackId).forUpdate().execute();
  }

  /**
   * Adds a run's state to its history. `seq` comes from the same statement that changed the run
   * (`state_seq + 1 … returning`), made while the run's row is locked: no two writers can take
   * the same number, and no `max(seq)` read is needed.
   */
  private async recordState(
    trx: Db,
    runId: string,
    seq: number,
    state: RunStateName,
    at: Date,
  ): Promise<void> {
    await trx
      .insertInto('run_states')
      .values({ run_id: runId, seq: Number(seq), state, at: iso(at) })
      .execute();
  }

  async createRun(run: NewRun, at: Date): Promise<Run> {
    return this.db.transaction().execute(async (trx) => {
      await this.lockStack(trx, run.stackId);
      // A run that takes the stack's lock waits while an earlier one holds it or waits for it.
      const ahead = takesStackLock(run.kind) ? await this.lockAhead(trx, run.stackId) : null;
      const state: RunStateName = ahead ? 'QUEUED' : 'READY';
      const row = {
        id: run.id,
        stack_id: run.stackId,
        pool_id: run.poolId,
        kind: run.kind,
        state,
        state_reason: ahead ? `waiting for run ${ahead} of the stack to end` : null,
        commit_sha: run.commitSha,
        triggered_by: run.triggeredBy,
        auto_deploy: flag(run.autoDeploy),
        worker_id: null,
        lease_expires_at: null,
        started: 0,
        image_reference: null,
        image_digest: null,
        image_source: null,
        image_choice: null,
        image_id: null,
        plan: null,
        workspace_seal: null,
        created_at: iso(at),
        updated_at: iso(at),
        state_seq: state === 'READY' ? 2 : 1,
        stop_reason: null,
        stop_requested_at: null,
      };
      await trx.insertInto('runs').values(row).execute();
      if (state === 'READY') await this.recordState(trx, run.id, 1, 'QUEUED', at);
      await this.recordState(trx, run.id, row.state_seq, state, at);
      return toRun(row);
    });
  }

  /** The run that holds the stack's lock (or the first one waiting for it), or null: it is free. */
  private async lockAhead(trx: Db, stackId: string): Promise<string | null> {
    const rows = await trx
      .selectFrom('runs')
      .select(['id', 'kind', 'state'])
      .where('stack_id', '=', stackId)
      .where('kind', 'in', ['TRACKED', 'DESTROY'])
      .where('state', 'not in', [...TERMINAL_STATES])
      .orderBy('id')
      .execute();
    const holder = rows.find((r) => holdsStackLock(r.kind as RunKind, r.state as RunStateName));
    return (holder ?? rows[0])?.id ?? null;
  }

  /** Passes a free stack lock to the oldest waiting run. */
  private async promoteWaiting(trx: Db, stackId: string, at: Date): Promise<void> {
    const rows = await trx
      .selectFrom('runs')
      .select(['id', 'kind', 'state'])
      .where('stack_id', '=', stackId)
      .where('kind', 'in', ['TRACKED', 'DESTROY'])
      .where('state', 'not in', [...TERMINAL_STATES])
      .orderBy('id')
      .execute();
    if (rows.some((r) => holdsStackLock(r.kind as RunKind, r.state as RunStateName))) return;
    const next = rows.find((r) => r.state === 'QUEUED');
    if (!next) return;
    const promoted = await trx
      .updateTable('runs')
      .set((eb) => ({
        state: 'READY',
        state_reason: null,
        updated_at: iso(at),
        state_seq: eb('state_seq', '+', 1),
      }))
      .where('id', '=', next.id)
      .where('state', '=', 'QUEUED')
      .returning('state_seq')
      .executeTakeFirst();
    if (promoted) await this.recordState(trx, next.id, promoted.state_seq, 'READY', at);
  }

  async getRun(id: string): Promise<Run | null> {
    const row = await this.db
      .selectFrom('runs')
      .selectAll()
      .where('id', '=', id)
      .executeTakeFirst();
    return row ? toRun(row) : null;
  }

  async listRuns(filter: RunFilter): Promise<Run[]> {
    let query = this.db.selectFrom('runs').selectAll();
    if (filter.stackId !== undefined) query = query.where('stack_id', '=', filter.stackId);
    if (filter.before !== undefined) query = query.where('id', '<', filter.before);
    if (filter.heldBy !== undefined)
      query = query
        .where('worker_id', '=', filter.heldBy)
        .where('lease_expires_at', 'is not', null)
        .where('state', 'not in', [...TERMINAL_STATES]);
    const rows = await query.orderBy('id', 'desc').limit(filter.limit).execute();
    return rows.map(toRun);
  }

  async lastRunOfStacks(filter: { poolId?: string } = {}): Promise<Map<string, Run>> {
    // One index seek per stack (runs_stack: stack_id, id), not a pass over every run.
    const ofPool = filter.poolId !== undefined ? sql`where s.pool_id = ${filter.poolId}` : sql``;
    const { rows } = await sql<Selectable<RunsTable>>`
      select * from runs where id in (
        select (select max(r.id) from runs r where r.stack_id = s.id) from stacks s ${ofPool}
      )`.execute(this.db);
    return new Map(rows.map((row) => [row.stack_id, toRun(row)]));
  }

  async transitionRun(
    id: string,
    to: RunStateName,
    options: TransitionOptions,
    at: Date,
  ): Promise<Run> {
    return this.db.transaction().execute(async (trx) => {
      // A stop asked meanwhile (requestStop does not wait for the stack's lock) fails the
      // compare-and-set below without changing what it compares otherwise: read again, decide
      // again with the stop in view. Anything else that changed is the caller's conflict.
      for (let attempt = 0; ; attempt += 1) {
        const moved = await this.transitionIn(trx, id, to, options, at);
        if (moved !== 'stop-asked-meanwhile') return moved;
        if (attempt >= 2) {
          throw new StoreConflict(
            'RUN_CHANGED',
            `run ${id} changed while it was being updated; try again`,
          );
        }
      }
    });
  }

  /** One try of transitionRun, in its transaction (see there). */
  private async transitionIn(
    trx: Db,
    id: string,
    asked: RunStateName,
    options: TransitionOptions,
    at: Date,
  ): Promise<Run | 'stop-asked-meanwhile'> {
    const current = await trx
      .selectFrom('runs')
      .selectAll()
      .where('id', '=', id)
      .executeTakeFirst();
    if (!current) throw new StoreConflict('NOT_FOUND', `run ${id} does not exist`);
    await this.lockStack(trx, current.stack_id);
    const run = toRun(current);
    if (options.from && !options.from.includes(run.state)) {
      throw new StoreConflict(
        'RUN_TRANSITION_INVALID',
        `run ${id} is ${run.state}, not ${options.from.join(' or ')}; it cannot become ${asked} from there`,
      );
    }
    if (options.workerId !== undefined && run.workerId !== options.workerId) {
      throw new StoreConflict(
        'RUN_CHANGED',
        `run ${id} is not held by worker ${options.workerId} (its lease ended or it went to another worker)`,
      );
    }
    let to = asked;
    let patch = options.patch ?? {};
    // A run asked to stop ends as the cancel meant, never back in the queue: one whose lease
    // ran out (its worker never confirmed the stop), or that goes back to the queue otherwise
    // (a worker that never got it).
    const gone = options.leaseExpiredBefore !== undefined || options.workerRestarted === true;
    if (run.stopRequest && gone && isTerminal(to)) {
      to = cancelTarget(run.state) ?? to;
      patch = {
        stateReason: options.workerRestarted
          ? `${run.stopRequest.reason}; worker ${run.workerId} started again before it said that the run stopped: its new process removes the job's container`
          : `${run.stopRequest.reason}; worker ${run.workerId} did not say that the run stopped before its lease expired at ${run.leaseExpiresAt}: whether its job ran on is unknown`,
        releaseWorker: true,
      };
    } else if (run.stopRequest && (to === 'READY' || to === 'CONFIRMED')) {
      to = 'CANCELED';
      patch = {
        stateReason: options.workerRestarted
          ? `${run.stopRequest.reason}; worker ${run.workerId} started again before its job started`
          : options.leaseExpiredBefore
            ? `${run.stopRequest.reason}; worker ${run.workerId} stopped answering before its job started`
            : `${run.stopRequest.reason}, before its job started`,
        releaseWorker: true,
      };
    }
    const check = checkTransition(run.kind, run.state, to);
    if (!check.ok)
      throw new StoreConflict('RUN_TRANSITION_INVALID', `run ${id}: ${check.refusal.message}`);
    const set: Partial<RunsTable> = { state: to, updated_at: iso(at) };
    if (patch.stateReason !== undefined) set.state_reason = patch.stateReason;
    if (patch.started !== undefined) set.started = flag(patch.started);
    if (patch.imageReference !== undefined) set.image_reference = patch.imageReference;
    if (patch.imageDigest !== undefined) set.image_digest = patch.imageDigest;
    if (patch.imageSource !== undefined) set.image_source = patch.imageSource;
    if (patch.imageChoice !== undefined) set.image_choice = patch.imageChoice;
    if (patch.imageId !== undefined) set.image_id = patch.imageId;
    if (patch.workspaceSeal !== undefined) set.workspace_seal = patch.workspaceSeal;
    if (patch.commitSha !== undefined) set.commit_sha = patch.commitSha;
    if (patch.plan !== undefined)
      set.plan = patch.plan === null ? null : JSON.stringify(patch.plan);
    // The lease ends; the worker stays recorded as the one that ran the run (unless it goes
    // back to the queue, when no worker ran any of it).
    if (patch.releaseWorker) set.lease_expires_at = null;
    if (patch.forgetWorker) {
      set.worker_id = null;
      set.lease_expires_at = null;
    }
    // Compare-and-set: the state, the worker and the stop request read above must still be so
    // now (a run that went back to the queue and to another worker meanwhile is not this
    // report's), and for the lease sweep, the lease must still be out (a heartbeat may have
    // renewed it).
    let update = trx
      .updateTable('runs')
      .set((eb) => ({ ...set, state_seq: eb('state_seq', '+', 1) }))
      .where('id', '=', id)
      .where('state', '=', run.state)
      .where('worker_id', run.workerId === null ? 'is' : '=', run.workerId)
      .where('stop_reason', current.stop_reason === null ? 'is' : '=', current.stop_reason);
    if (options.leaseExpiredBefore)
      update = update.where('lease_expires_at', '<', iso(options.leaseExpiredBefore));
    const row = await update.returningAll().executeTakeFirst();
    if (!row) {
      const now = await trx.selectFrom('runs').selectAll().where('id', '=', id).executeTakeFirst();
      if (
        now &&
        current.stop_reason === null &&
        now.stop_reason !== null &&
        now.state === current.state &&
        now.worker_id === current.worker_id
      )
        return 'stop-asked-meanwhile';
      throw new StoreConflict(
        'RUN_CHANGED',
        `run ${id} changed while it was being updated; try again`,
      );
    }
    await this.recordState(trx, id, row.state_seq, to, at);
    if (holdsStackLock(run.kind, run.state) && !holdsStackLock(run.kind, to)) {
      await this.promoteWaiting(trx, run.stackId, at);
    }
    const moved = toRun(row);
    // A plan its worker finished as the cancel came: the cancel holds, the plan is discarded
    // rather than left waiting for a confirm (its workspace goes with the end).
    if (moved.state === 'UNCONFIRMED' && moved.stopRequest) {
      const discarded = await this.transitionIn(
        trx,
        id,
        'DISCARDED',
        {
          from: ['UNCONFIRMED'],
          patch: {
            stateReason: `${moved.stopRequest.reason}; its plan was done before the worker heard, and is discarded`,
          },
        },
        at,
      );
      if (discarded !== 'stop-asked-meanwhile') return discarded;
    }
    return moved;
  }

  /**
   * Hands the pool's oldest dispatchable run to a worker. Concurrent calls for one pool are
   * served together (see ./coalesce.ts): the first at once, those that arrive meanwhile by the
   * next statement, which leases one run for each of them, oldest run to the earliest caller.
   * Measured with 20 callers on 10,000 queued runs (docs/performance.md), one statement per
   * caller kept 20 PostgreSQL backends busy on the same first rows of the index, each locking,
   * skipping and re-checking what the others had just taken; one statement per batch does the
   * same work once, with one commit.
   */
  leaseRun(poolId: string, workerId: string, at: Date, leaseMs: number): Promise<Run | null> {
    return this.leases.call(poolId, { workerId, at, leaseMs });
  }

  private readonly leases = new Coalescer<LeaseRequest, Run | null>(
    (poolId, requests) => this.leaseRuns(poolId, requests),
    LEASE_BATCH,
  );

  /**
   * Leases up to one run per request, in one statement on PostgreSQL (no transaction around
   * it): the next runs are locked with `FOR UPDATE SKIP LOCKED`, so concurrent leases from any
   * number of servers each take different runs and never wait for each other, updated, and their
   * history entries inserted, numbered from the rows they locked. The i-th oldest run goes to
   * the i-th request. SQLite has one writer and no data-modifying `WITH`: the same in one short
   * transaction.
   */
  private async leaseRuns(poolId: string, requests: LeaseRequest[]): Promise<(Run | null)[]> {
    const answers: (Run | null)[] = requests.map(() => null);
    if (this.dialect === 'postgres') {
      const result = await sql<Selectable<RunsTable> & { caller: string }>`
        with callers as (
          select * from unnest(${requests.map((r) => r.workerId)}::text[],
                               ${requests.map((r) => iso(r.at))}::text[],
                               ${requests.map((r) => iso(new Date(r.at.getTime() + r.leaseMs)))}::text[])
            with ordinality as c(worker_id, at, expires, n)
        ), next as (
          select id, row_number() over (order by id) as n from (
            select id from runs
            where pool_id = ${poolId} and state in ('READY', 'CONFIRMED')
            order by id
            limit ${requests.length}
            for update skip locked
          ) locked
        ), leased as (
          update runs set
            state = case when runs.state = 'READY' then 'PREPARING' else 'PREPARING_APPLY' end,
            worker_id = callers.worker_id,
            lease_expires_at = callers.expires,
            started = 0,
            state_reason = null,
            updated_at = callers.at,
            state_seq = runs.state_seq + 1
          from next join callers on callers.n = next.n
          where runs.id = next.id
          returning runs.*, callers.n as caller
        ), history as (
          insert into run_states (run_id, seq, state, at)
          select id, state_seq, state, updated_at from leased
        )
        select * from leased`.execute(this.db);
      for (const { caller, ...row } of result.rows) answers[Number(caller) - 1] = toRun(row);
      return answers;
    }
    return this.db.transaction().execute(async (trx) => {
      const next = await trx
        .selectFrom('runs')
        .select('id')
        .where('pool_id', '=', poolId)
        // Literal states, not parameters: SQLite uses the partial index runs_dispatch only when
        // it can see that the query's states are the index's (with `?` it sorted every
        // dispatchable run of the pool for each lease).
        .where(sql<boolean>`state in ('READY', 'CONFIRMED')`)
        .orderBy('id')
        .limit(requests.length)
        .execute();
      for (const [i, { id }] of next.entries()) {
        const request = requests[i] as LeaseRequest;
        const row = await trx
          .updateTable('runs')
          .set((eb) => ({
            state: sql<string>`case when state = 'READY' then 'PREPARING' else 'PREPARING_APPLY' end`,
            worker_id: request.workerId,
            lease_expires_at: iso(new Date(request.at.getTime() + request.leaseMs)),
            // No container of this lease has started yet (the apply's worker starts a new one).
            started: 0,
            state_reason: null,
            updated_at: iso(request.at),
            state_seq: eb('state_seq', '+', 1),
          }))
          .where('id', '=', id)
          .where('state', 'in', ['READY', 'CONFIRMED'])
          .returningAll()
          .executeTakeFirstOrThrow();
        await this.recordState(trx, row.id, row.state_seq, row.state as RunStateName, request.at);
        answers[i] = toRun(row);
      }
      return answers;
    });
  }

  async requestStop(
    id: string,
    held: { state: RunStateName; workerId: string },
    reason: string,
    at: Date,
  ): Promise<Run | null> {
    // Compare-and-set: still in the state and with the worker the caller saw, still leased, and
    // no stop asked yet (the first reason is the one kept). Not a state change: no history entry.
    const row = await this.db
      .updateTable('runs')
      .set({ stop_reason: reason, stop_requested_at: iso(at), updated_at: iso(at) })
      .where('id', '=', id)
      .where('state', '=', held.state)
      .where('worker_id', '=', held.workerId)
      .where('lease_expires_at', 'is not', null)
      .where('stop_reason', 'is', null)
      .returningAll()
      .executeTakeFirst();
    return row ? toRun(row) : null;
  }

  async expireLeases(at: Date): Promise<Run[]> {
    const expired = await this.db
      .selectFrom('runs')
      .selectAll()
      .where('lease_expires_at', '<', iso(at))
      .where('worker_id', 'is not', null)
      .where('state', 'not in', [...TERMINAL_STATES])
      .execute();
    return this.release(expired.map(toRun), at, true, (run, back) =>
      back
        ? `worker ${run.workerId} stopped answering before any container started; the run went back to the queue`
        : `worker ${run.workerId} stopped answering while the run was ${run.state} (its lease expired at ${run.leaseExpiresAt}); what the job did after its last report is unknown`,
    );
  }

  async releaseWorkerRuns(workerId: string, at: Date): Promise<Run[]> {
    const held = await this.db
      .selectFrom('runs')
      .selectAll()
      .where('worker_id', '=', workerId)
      .where('lease_expires_at', 'is not', null)
      .where('state', 'not in', [...TERMINAL_STATES])
      .execute();
    return this.release(held.map(toRun), at, false, (run, back) =>
      back
        ? `worker ${workerId} started again before any container of the run started; the run went back to the queue`
        : `worker ${workerId} started again while the run was ${run.state}: the process that ran it ended without reporting its end (killed, or its machine restarted), and the new one removes the job's container if it runs on the same Docker engine; what the job did after its last report is unknown`,
    );
  }

  /**
   * Takes `runs` from their worker: back to the queue if no container had started, else FAILED
   * with `reason`; with `expired`, only a run whose lease still expired before `at`. A run that
   * changed meanwhile (another server, the worker's own report) is left as it is.
   */
  private async release(
    runs: Run[],
    at: Date,
    expired: boolean,
    reason: (run: Run, back: boolean) => string,
  ): Promise<Run[]> {
    const changed: Run[] = [];
    for (const run of runs) {
      // (A run asked to stop ends as the cancel meant instead: transitionIn decides that, with
      // the run as it is when it changes.)
      const back: RunStateName | null =
        run.state === 'PREPARING' && !run.started
          ? 'READY'
          : run.state === 'PREPARING_APPLY' && !run.started
            ? 'CONFIRMED'
            : null;
      try {
        changed.push(
          await this.transitionRun(
            run.id,
            back ?? 'FAILED',
            {
              from: [run.state],
              workerId: run.workerId ?? undefined,
              ...(expired ? { leaseExpiredBefore: at } : { workerRestarted: true }),
              patch: {
                stateReason: reason(run, back !== null),
                releaseWorker: true,
                ...(back === null ? {} : { forgetWorker: true }),
              },
            },
            at,
          ),
        );
      } catch (err) {
        // Another server took it, or the worker reported in time: nothing to do.
        if (!(err instanceof StoreConflict)) throw err;
      }
    }
    return changed;
  }

  async runStates(runId: string): Promise<StateRecord[]> {
    const rows = await this.db
      .selectFrom('run_states')
      .select(['seq', 'state', 'at'])
      .where('run_id', '=', runId)
      .orderBy('seq')
      .execute();
    return rows.map((r) => ({ seq: Number(r.seq), state: r.state as RunStateName, at: r.at }));
  }

  // Logs

  async appendLog(
    runId: string,
    firstSeq: number,
    texts: readonly string[],
    at: Date,
    limitBytes?: number,
  ): Promise<number> {
    const outcome = await this.db.transaction().execute(async (trx) => {
      const last = await trx
        .selectFrom('log_chunks')
        .select((eb) => eb.fn.max('seq').as('seq'))
        .where('run_id', '=', runId)
        .executeTakeFirst();
      const expected = Number(last?.seq ?? 0) + 1;
      if (firstSeq > expected) {
        throw new StoreConflict(
          'LOG_GAP',
          `log of run ${runId}: chunk ${firstSeq} arrived, but the next expected is ${expected}; send from ${expected}`,
        );
      }
      // Chunks below `expected` were stored by an earlier attempt of the same batch.
      const fresh = texts
        .map((text, i) => ({ run_id: runId, seq: firstSeq + i, text, at: iso(at) }))
        .filter((c) => c.seq >= expected);
      const size = await trx
        .selectFrom('log_sizes')
        .select(['bytes', 'full'])
        .where('run_id', '=', runId)
        .executeTakeFirst();
      let bytes = Number(size?.bytes ?? 0);
      if (Number(size?.full ?? 0) === 1) return { next: expected, refused: fresh.length > 0 };
      let kept = fresh.length;
      if (limitBytes !== undefined) {
        for (let i = 0; i < fresh.length; i += 1) {
          const more = Buffer.byteLength((fresh[i] as { text: string }).text, 'utf8');
          if (bytes + more > limitBytes) {
            kept = i;
            break;
          }
          bytes += more;
        }
      } else {
        bytes += fresh.reduce((sum, c) => sum + Buffer.byteLength(c.text, 'utf8'), 0);
      }
      const stored = fresh.slice(0, kept);
      const full = kept < fresh.length;
      if (full) {
        // The cut is marked in the log itself, where it happened.
        stored.push({
          run_id: runId,
          seq: firstSeq + texts.length - fresh.length + kept,
          text: logLimitMarker(limitBytes as number),
          at: iso(at),
        });
      }
      if (stored.length > 0) await trx.insertInto('log_chunks').values(stored).execute();
      if (size) {
        await trx
          .updateTable('log_sizes')
          .set({ bytes, full: full ? 1 : 0 })
          .where('run_id', '=', runId)
          .execute();
      } else {
        await trx
          .insertInto('log_sizes')
          .values({ run_id: runId, bytes, full: full ? 1 : 0 })
          .execute();
      }
      return full
        ? { next: expected + stored.length, refused: true }
        : { next: Math.max(expected, firstSeq + texts.length), refused: false };
    });
    if (outcome.refused) {
      throw new StoreConflict(
        'LOG_TOO_LARGE',
        `the log of run ${runId} reached the server's limit${limitBytes ? ` of ${limitBytes} bytes` : ''}; the rest of its output is not stored`,
      );
    }
    return outcome.next;
  }

  async logBytes(runId: string): Promise<number> {
    const row = await this.db
      .selectFrom('log_sizes')
      .select('bytes')
      .where('run_id', '=', runId)
      .executeTakeFirst();
    return Number(row?.bytes ?? 0);
  }

  async remaskLog(runId: string, values: readonly string[]): Promise<number> {
    return this.db.transaction().execute(async (trx) => {
      const rows = await trx
        .selectFrom('log_chunks')
        .select(['seq', 'text'])
        .where('run_id', '=', runId)
        .orderBy('seq')
        .execute();
      const masked = remaskChunks(
        rows.map((r) => r.text),
        values,
      );
      let changed = 0;
      for (const [i, row] of rows.entries()) {
        const text = masked[i] as string;
        if (text === row.text) continue;
        changed += 1;
        await trx
          .updateTable('log_chunks')
          .set({ text })
          .where('run_id', '=', runId)
          .where('seq', '=', row.seq)
          .execute();
      }
      return changed;
    });
  }

  async nextLogSeq(runId: string): Promise<number> {
    const last = await this.db
      .selectFrom('log_chunks')
      .select((eb) => eb.fn.max('seq').as('seq'))
      .where('run_id', '=', runId)
      .executeTakeFirst();
    return Number(last?.seq ?? 0) + 1;
  }

  async sealedValues(): Promise<SealedValue[]> {
    const variables = await this.db
      .selectFrom('stack_env')
      .select(['stack_id', 'name', 'value'])
      .where('secret', '=', 1)
      .orderBy('stack_id')
      .orderBy('name')
      .execute();
    const runs = await this.db
      .selectFrom('runs')
      .select(['id', 'state', 'workspace_seal'])
      .where('workspace_seal', 'is not', null)
      .where('state', 'not in', [...TERMINAL_STATES])
      .orderBy('id')
      .execute();
    return [
      ...variables.map((v): SealedValue => ({
        kind: 'variable',
        stackId: v.stack_id,
        name: v.name,
        value: v.value,
      })),
      ...runs.map((r): SealedValue => ({
        kind: 'workspace',
        runId: r.id,
        state: r.state as RunStateName,
        value: r.workspace_seal as string,
      })),
    ];
  }

  async readSetting(name: string): Promise<string | null> {
    const row = await this.db
      .selectFrom('server_settings')
      .select('value')
      .where('name', '=', name)
      .executeTakeFirst();
    return row?.value ?? null;
  }

  async claimSetting(name: string, value: string): Promise<string> {
    await this.db
      .insertInto('server_settings')
      .values({ name, value })
      .onConflict((oc) => oc.column('name').doNothing())
      .execute();
    const row = await this.db
      .selectFrom('server_settings')
      .select('value')
      .where('name', '=', name)
      .executeTakeFirstOrThrow();
    return row.value;
  }

  async replaceSetting(name: string, value: string): Promise<void> {
    await this.db
      .insertInto('server_settings')
      .values({ name, value })
      .onConflict((oc) => oc.column('name').doUpdateSet({ value }))
      .execute();
  }

  async readLog(runId: string, afterSeq: number, limit: number): Promise<LogChunk[]> {
    const rows = await this.db
      .selectFrom('log_chunks')
      .select(['seq', 'text', 'at'])
      .where('run_id', '=', runId)
      .where('seq', '>', afterSeq)
      .orderBy('seq')
      .limit(limit)
      .execute();
    return rows.map((r) => ({ seq: Number(r.seq), text: r.text, at: r.at }));
  }

  // Tokens

  async findTokenById(id: string): Promise<ApiToken | null> {
    const row = await this.db
      .selectFrom('api_tokens')
      .select(['id', 'name', 'role', 'created_at'])
      .where('id', '=', id)
      .executeTakeFirst();
    return row ? { id: row.id, name: row.name, role: row.role, createdAt: row.created_at } : null;
  }

  async createToken(
    token: Omit<ApiToken, 'createdAt'>,
    tokenHash: string,
    at: Date,
  ): Promise<ApiToken> {
    try {
      await this.db
        .insertInto('api_tokens')
        .values({
          id: token.id,
          name: token.name,
          role: token.role,
          token_hash: tokenHash,
          created_at: iso(at),
        })
        .execute();
    } catch (err) {
      if (!isUniqueViolation(err)) throw err;
      if (violates(err, 'api_tokens_name', 'api_tokens.name'))
        throw new StoreConflict('TOKEN_NAME_TAKEN', `a token named ${token.name} exists already`);
      throw new StoreConflict('ALREADY_EXISTS', `token ${token.id} exists already`);
    }
    return { ...token, createdAt: iso(at) };
  }

  async listTokens(): Promise<ApiToken[]> {
    const rows = await this.db
      .selectFrom('api_tokens')
      .select(['id', 'name', 'role', 'created_at'])
      .orderBy('created_at')
      .orderBy('id')
      .execute();
    return rows.map((r) => ({ id: r.id, name: r.name, role: r.role, createdAt: r.created_at }));
  }

  async deleteToken(id: string): Promise<boolean> {
    return this.db.transaction().execute(async (trx) => {
      // The admin tokens, locked on PostgreSQL (SQLite has one writer): a concurrent revoke of
      // another admin token waits here, then counts without the one this deletes.
      let admins = trx.selectFrom('api_tokens').select('id').where('role', '=', 'admin');
      if (this.dialect === 'postgres') admins = admins.forUpdate();
      const adminIds = (await admins.execute()).map((r) => r.id);
      if (adminIds.length === 1 && adminIds[0] === id)
        throw new StoreConflict('TOKEN_LAST_ADMIN', `token ${id} is the last admin token`);
      const result = await trx.deleteFrom('api_tokens').where('id', '=', id).executeTakeFirst();
      if (Number(result.numDeletedRows) === 0) return false;
      await trx.deleteFrom('sessions').where('caller_id', '=', id).execute();
      return true;
    });
  }

  async replaceToken(
    token: Omit<ApiToken, 'createdAt'>,
    tokenHash: string,
    at: Date,
  ): Promise<ApiToken> {
    return this.db.transaction().execute(async (trx) => {
      await trx.deleteFrom('sessions').where('caller_id', '=', token.id).execute();
      const updated = await trx
        .updateTable('api_tokens')
        .set({ name: token.name, role: token.role, token_hash: tokenHash })
        .where('id', '=', token.id)
        .returning('created_at')
        .executeTakeFirst();
      if (updated) return { ...token, createdAt: updated.created_at };
      await trx
        .insertInto('api_tokens')
        .values({ ...token, token_hash: tokenHash, created_at: iso(at) })
        .execute();
      return { ...token, createdAt: iso(at) };
    });
  }

  async findTokenByHash(tokenHash: string): Promise<ApiToken | null> {
    const row = await this.db
      .selectFrom('api_tokens')
      .select(['id', 'name', 'role', 'created_at'])
      .where('token_hash', '=', tokenHash)
      .executeTakeFirst();
    return row ? { id: row.id, name: row.name, role: row.role, createdAt: row.created_at } : null;
  }

  // Sessions

  async createSession(tokenHash: string, session: Session, at: Date): Promise<void> {
    await this.db.deleteFrom('sessions').where('expires_at', '<=', iso(at)).execute();
    await this.db
      .insertInto('sessions')
      .values({
        token_hash: tokenHash,
        caller_kind: session.callerKind,
        caller_id: session.callerId,
        created_at: session.createdAt,
        expires_at: session.expiresAt,
      })
      .execute();
  }

  async findSession(tokenHash: string, at: Date): Promise<Session | null> {
    const row = await this.db
      .selectFrom('sessions')
      .selectAll()
      .where('token_hash', '=', tokenHash)
      .where('expires_at', '>', iso(at))
      .executeTakeFirst();
    return row
      ? {
          callerKind: row.caller_kind,
          callerId: row.caller_id,
          createdAt: row.created_at,
          expiresAt: row.expires_at,
        }
      : null;
  }

  async deleteSession(tokenHash: string): Promise<boolean> {
    const result = await this.db
      .deleteFrom('sessions')
      .where('token_hash', '=', tokenHash)
      .executeTakeFirst();
    return Number(result.numDeletedRows) > 0;
  }
}
