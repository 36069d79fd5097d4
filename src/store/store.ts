/**
 * Persistence of the server: one interface, two databases (SQLite by default, PostgreSQL for
 * several servers), one query code path (./kysely-store.ts). The run queue is a lease on the runs
 * table: no other queue exists.
 *
 * Lifecycle and guarantees:
 *   - migrate() applies the numbered migrations not yet applied; idempotent, run on every start
 *     (on PostgreSQL under an advisory lock, so several servers may start at once).
 *   - Every state change of a run is a compare-and-set checked by the state machine
 *     (domain/run-state.ts): a move the machine refuses, or a run that changed meanwhile, throws
 *     StoreConflict and changes nothing.
 *   - leaseRun() hands each dispatchable run to exactly one worker, whatever number of servers
 *     and workers ask at once (PostgreSQL: FOR UPDATE SKIP LOCKED; SQLite: one writer).
 *   - appendLog() is idempotent per sequence number: a batch sent again after a network error
 *     adds nothing twice, and a gap is refused.
 *   - close() ends the connections; the store is unusable afterwards.
 */
import type { RunKind, RunStateName } from '../domain/run-state.js';

export class StoreConflict extends Error {
  constructor(
    readonly code:
      | 'RUN_TRANSITION_INVALID'
      | 'RUN_CHANGED'
      | 'ALREADY_EXISTS'
      | 'TOKEN_NAME_TAKEN'
      | 'LOG_GAP'
      | 'LOG_TOO_LARGE'
      | 'NOT_FOUND'
      | 'STACK_HAS_RUNS'
      | 'POOL_IN_USE'
      | 'TOKEN_LAST_ADMIN',
    message: string,
    /** The fix, where it depends on what the store found (the run to cancel). */
    readonly hint?: string,
  ) {
    super(message);
    this.name = 'StoreConflict';
  }
}

export interface Pool {
  id: string;
  name: string;
  kind: 'public' | 'private';
  allowList: string[];
  defaultImage: string | null;
  pullPolicy: string | null;
  createdAt: string;
}

export interface RunFilter {
  stackId?: string;
  limit: number;
  before?: string;
  heldBy?: string;
}

export type PoolPatch = Partial<Pick<Pool, 'name' | 'allowList' | 'defaultImage' | 'pullPolicy'>>;

export interface Worker {
  id: string;
  poolId: string;
  host: string;
  berthVersion: string;
  engineVersion: string;
  concurrency: number;
  drained: boolean;
  registeredAt: string;
  lastHeartbeatAt: string;
  /** When the worker said it leaves (a clean exit), or null. */
  leftAt: string | null;
}

export interface Stack {
  id: string;
  name: string;
  repository: string | null;
  branch: string | null;
  localDir: string | null;
  projectRoot: string;
  tool: string | null;
  toolVersion: string | null;
  runnerImage: string | null;
  labels: string[];
  autoDeploy: boolean;
  poolId: string;
  createdAt: string;
  updatedAt: string;
}

export type StackPatch = Partial<Omit<Stack, 'id' | 'createdAt' | 'updatedAt'>>;

export interface StackVariable {
  name: string;
  /** For secrets: the sealed value (never the plain one). */
  value: string;
  secret: boolean;
}

export interface PlanCounts {
  add: number;
  change: number;
  destroy: number;
  replace: number;
}

export interface Run {
  id: string;
  stackId: string;
  poolId: string;
  kind: RunKind;
  state: RunStateName;
  stateReason: string | null;
  commitSha: string | null;
  triggeredBy: string;
  autoDeploy: boolean;
  workerId: string | null;
  leaseExpiresAt: string | null;
  /** A container of the run has started (losing its worker then fails it). */
  started: boolean;
  imageReference: string | null;
  imageDigest: string | null;
  imageSource: string | null;
  /** Where the image was chosen (runtime configuration, stack settings, pool default, built-in). */
  imageChoice: string | null;
  /** The id (content digest) of the image the job ran in. */
  imageId: string | null;
  plan: PlanCounts | null;
  /** The sealed seal of the saved workspace waiting for the apply (never shown by the API). */
  workspaceSeal: string | null;
  /**
   * A stop asked while a worker held the run (a cancel while its job ran): the run keeps its
   * state, lease and stack lock until the worker says the job ended. Null: none was asked.
   */
  stopRequest: { reason: string; at: string } | null;
  createdAt: string;
  updatedAt: string;
}

export interface NewRun {
  id: string;
  stackId: string;
  poolId: string;
  kind: RunKind;
  commitSha: string | null;
  triggeredBy: string;
  autoDeploy: boolean;
}

/** The conditions of a state change (transitionRun) and what it records besides the state. */
export interface TransitionOptions {
  /** Only from one of these states. */
  from?: readonly RunStateName[];
  patch?: RunPatch;
  /** Only while this worker holds the run. */
  workerId?: string;
  /** Only when the run's lease ran out before this moment (the lease sweep). */
  leaseExpiredBefore?: Date;
  /** The run is taken from its worker, which registered again as a new process. */
  workerRestarted?: boolean;
}

/** What a state change may record besides the state. */
export interface RunPatch {
  stateReason?: string | null;
  started?: boolean;
  imageReference?: string | null;
  imageDigest?: string | null;
  imageSource?: string | null;
  imageChoice?: string | null;
  imageId?: string | null;
  plan?: PlanCounts | null;
  workspaceSeal?: string | null;
  /** The commit the run executed, when it was bound to none at its trigger. */
  commitSha?: string;
  /** Ends the worker's lease (the run ended or waits); the worker stays recorded. */
  releaseWorker?: boolean;
  /** Forgets the worker too (the run goes back to the queue before anything of it ran). */
  forgetWorker?: boolean;
}

export interface StateRecord {
  seq: number;
  state: RunStateName;
  at: string;
}

export interface LogChunk {
  seq: number;
  text: string;
  at: string;
}

export interface ApiToken {
  id: string;
  name: string;
  role: 'admin' | 'user';
  createdAt: string;
}

/** A browser's sign-in (the web page): whom it speaks for, until when. */
export interface Session {
  callerKind: 'admin' | 'user';
  callerId: string;
  createdAt: string;
  expiresAt: string;
}

/** A value sealed with the servers' secrets key, and where it is kept. */
export type SealedValue =
  | { kind: 'variable'; stackId: string; name: string; value: string }
  | { kind: 'workspace'; runId: string; state: RunStateName; value: string };

export interface Store {
  readonly dialect: 'sqlite' | 'postgres';
  migrate(): Promise<void>;
  close(): Promise<void>;

  createPool(pool: Omit<Pool, 'createdAt'>, tokenHash: string, at: Date): Promise<Pool>;
  getPool(id: string): Promise<Pool | null>;
  listPools(): Promise<Pool[]>;
  findPoolByTokenHash(tokenHash: string): Promise<Pool | null>;
  setPoolTokenHash(id: string, tokenHash: string): Promise<boolean>;
  /** Changes a pool's settings (not its kind); null: no such pool. */
  updatePool(id: string, patch: PoolPatch): Promise<Pool | null>;
  /**
   * Deletes a pool and its workers' records; false: no such pool. Refused (POOL_IN_USE, naming
   * what holds it) while a stack is in it, a run was run in it, or a worker of it was heard from
   * after `onlineSince` without having said it leaves.
   */
  deletePool(id: string, onlineSince: Date): Promise<boolean>;

  /** Registers a worker, or refreshes the metadata of one that registers again. */
  upsertWorker(
    worker: Omit<Worker, 'registeredAt' | 'lastHeartbeatAt' | 'drained' | 'leftAt'>,
    at: Date,
  ): Promise<Worker>;
  getWorker(id: string): Promise<Worker | null>;
  listWorkers(poolId?: string): Promise<Worker[]>;
  /**
   * Removes the workers not heard from since `silentBefore` (gone for good, or out of reach that
   * long) that hold no lease; returns them. The runs they ran keep their worker's id. A worker
   * that comes back registers again under its id.
   */
  forgetWorkers(silentBefore: Date): Promise<Worker[]>;
  /**
   * Records a heartbeat and renews the leases of the runs the worker names (only those it holds);
   * false: unknown worker.
   */
  heartbeat(
    workerId: string,
    at: Date,
    leaseMs: number,
    runIds: readonly string[],
  ): Promise<boolean>;
  setWorkerDrained(id: string, drained: boolean): Promise<boolean>;
  /** The worker said it leaves (a clean exit): OFFLINE until it registers or heartbeats again. */
  markWorkerLeft(id: string, at: Date): Promise<boolean>;

  createStack(stack: Omit<Stack, 'createdAt' | 'updatedAt'>, at: Date): Promise<Stack>;
  getStack(id: string): Promise<Stack | null>;
  /** Every stack, or only those of one pool. */
  listStacks(filter?: { poolId?: string }): Promise<Stack[]>;
  updateStack(id: string, patch: StackPatch, at: Date): Promise<Stack | null>;
  /** Deletes a stack without active runs (StoreConflict STACK_HAS_RUNS otherwise); false: none. */
  deleteStack(id: string): Promise<boolean>;
  /**
   * Sets a variable; false (nothing changed) when a plain value would replace a secret one,
   * decided in the same statement (a secret never becomes readable by a set that raced it).
   */
  setStackVariable(stackId: string, variable: StackVariable): Promise<boolean>;
  unsetStackVariable(stackId: string, name: string): Promise<boolean>;
  listStackVariables(stackId: string): Promise<StackVariable[]>;

  /**
   * Queues a run: READY at once, unless it takes its stack's lock (tracked, destroy) while
   * another run holds it; then QUEUED until every earlier one has ended.
   */
  createRun(run: NewRun, at: Date): Promise<Run>;
  getRun(id: string): Promise<Run | null>;
  /**
   * Newest first; `before`: only runs created before that run (ids sort by creation);
   * `heldBy`: only the runs a worker holds now (leased to it, not ended).
   */
  listRuns(filter: RunFilter): Promise<Run[]>;
  /** The newest run of each stack that has one, by stack id. */
  lastRunOfStacks(filter?: { poolId?: string }): Promise<Map<string, Run>>;
  /**
   * Moves a run to `to` if the state machine allows it from its current state (and, with
   * `from`, only from one of those). Ending a run that held its stack's lock passes the lock on.
   */
  transitionRun(id: string, to: RunStateName, options: TransitionOptions, at: Date): Promise<Run>;
  /** The oldest dispatchable run of the pool (READY, or CONFIRMED for its apply), now the worker's. */
  leaseRun(poolId: string, workerId: string, at: Date, leaseMs: number): Promise<Run | null>;
  /**
   * Asks the worker holding a run to stop it (a cancel while its job runs): the reason is kept
   * with the run, which keeps its state, lease and stack lock until the worker reports the end.
   * Only if the run is still in `held.state`, held by `held.workerId` under a lease, and no stop
   * was asked yet; null otherwise (the caller reads the run again).
   */
  requestStop(
    id: string,
    held: { state: RunStateName; workerId: string },
    reason: string,
    at: Date,
  ): Promise<Run | null>;
  /**
   * Runs whose lease has expired: back to the queue if no container had started, else FAILED
   * with a reason naming the worker; a run asked to stop ends CANCELED or STOPPED (as the cancel
   * meant), its reason saying that the worker never confirmed the stop. Returns the runs changed.
   */
  expireLeases(at: Date): Promise<Run[]>;
  /**
   * The runs `workerId` holds, taken from it as expireLeases takes them, whatever their lease:
   * the worker registered again as a new process, so its earlier process and its jobs are gone
   * (a running worker process never registers while it holds a lease).
   */
  releaseWorkerRuns(workerId: string, at: Date): Promise<Run[]>;
  runStates(runId: string): Promise<StateRecord[]>;

  /**
   * Stores chunks `firstSeq`, `firstSeq + 1`, …; returns the next sequence number expected. With
   * `limitBytes`, a run's log holds at most that many bytes: the chunks that fit are stored, then
   * one marker chunk saying the rest was refused, and StoreConflict LOG_TOO_LARGE is thrown (now
   * and for every later batch of the run).
   */
  appendLog(
    runId: string,
    firstSeq: number,
    texts: readonly string[],
    at: Date,
    limitBytes?: number,
  ): Promise<number>;
  /**
   * Masks `values` in every stored chunk of the run (also a value split across chunks); returns
   * how many chunks changed. The values themselves are not stored.
   */
  remaskLog(runId: string, values: readonly string[]): Promise<number>;
  /** Bytes of the run's log stored so far (what counts against the server's limit). */
  logBytes(runId: string): Promise<number>;
  readLog(runId: string, afterSeq: number, limit: number): Promise<LogChunk[]>;
  /** The sequence number the next chunk of the run's log gets (a new worker continues there). */
  nextLogSeq(runId: string): Promise<number>;
  /**
   * Every value sealed with the servers' secrets key: the stacks' secret variables, and the seals
   * of saved workspaces whose run has not ended.
   */
  sealedValues(): Promise<SealedValue[]>;
  /** The setting `name`, or null when none is stored. */
  readSetting(name: string): Promise<string | null>;
  /**
   * The setting `name`: `value` is stored if it has none yet (the first of several servers
   * starting at once wins); the stored value is returned either way.
   */
  claimSetting(name: string, value: string): Promise<string>;
  /** Sets `name` to `value` whatever it was (berth server --new-secrets-key). */
  replaceSetting(name: string, value: string): Promise<void>;

  createToken(token: Omit<ApiToken, 'createdAt'>, tokenHash: string, at: Date): Promise<ApiToken>;
  findTokenByHash(tokenHash: string): Promise<ApiToken | null>;
  findTokenById(id: string): Promise<ApiToken | null>;
  /** Every API token, oldest first (never their hashes). */
  listTokens(): Promise<ApiToken[]>;
  /**
   * Revokes a token and ends the browser sessions it opened; false: none of that id. The last
   * admin token is kept (StoreConflict TOKEN_LAST_ADMIN): checked and deleted under one lock, so
   * two admins revoking each other's tokens at once cannot leave none.
   */
  deleteToken(id: string): Promise<boolean>;
  /**
   * Gives token `token.id` a new hash (making it if missing) and ends its sessions: the old
   * token stops working at once (berth server --new-admin-token).
   */
  replaceToken(token: Omit<ApiToken, 'createdAt'>, tokenHash: string, at: Date): Promise<ApiToken>;

  /** Records a session under the hash of its cookie's value; expired sessions are forgotten. */
  createSession(tokenHash: string, session: Session, at: Date): Promise<void>;
  /** The session of that hash if it has not expired at `at`. */
  findSession(tokenHash: string, at: Date): Promise<Session | null>;
  /** Ends a session (sign-out); false: there was none. */
  deleteSession(tokenHash: string): Promise<boolean>;
}
