/**
 * The worker protocol, for pool tokens only: a worker of a pool only ever sees, leases, updates
 * or logs runs of that pool; its secrets reach no other pool's workers.
 */
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { PassThrough, type Readable } from 'node:stream';
import {
  cancelTarget,
  heldByWorker,
  isTerminal,
  type RunStateName,
} from '../../domain/run-state.js';
import {
  Assignment,
  ErrorBody,
  HeartbeatAnswer,
  HeartbeatRequest,
  LeaseRequest,
  LogAccepted,
  LogBatch,
  MaskAccepted,
  MaskReport,
  RunParams,
  StateReport,
  WorkerRegistered,
  WorkerRegistration,
  WorkspaceBlob,
  WorkspaceQuery,
  WorkspaceStored,
  WorkerRef,
} from '../../api/schemas.js';
import { sealFromText, sealToText } from '../../domain/workspace-seal.js';
import { BerthError } from '../../domain/errors.js';
import { StoreConflict, type Run, type Worker } from '../../store/store.js';
import {
  ApiError,
  errorResponses,
  forgetWorkspaceIfEnded,
  isStorageFull,
  type ServerContext,
} from '../app.js';
import { runView } from './runs.js';
import { onlineSince } from './workers.js';

/** The pool of the calling pool token; people's tokens may not speak for a worker. */
function callerPool(request: FastifyRequest): string {
  const caller = request.caller;
  if (caller?.kind !== 'pool') {
    throw new ApiError(
      403,
      'FORBIDDEN',
      'only a pool token may call the worker endpoints',
      'Start `berth worker` with the pool token (`berth pool create` shows it once).',
    );
  }
  return caller.poolId;
}

async function ownWorker(ctx: ServerContext, poolId: string, workerId: string): Promise<Worker> {
  const worker = await ctx.store.getWorker(workerId);
  // Another pool's worker is answered as unknown: its existence is not this pool's business.
  if (!worker || worker.poolId !== poolId) {
    throw new ApiError(
      404,
      'WORKER_NOT_FOUND',
      `worker ${workerId} is not registered in this pool`,
      'Register again (the worker does so on start).',
    );
  }
  return worker;
}

async function ownRun(ctx: ServerContext, poolId: string, runId: string): Promise<Run> {
  const run = await ctx.store.getRun(runId);
  if (!run || run.poolId !== poolId)
    throw new ApiError(404, 'NOT_FOUND', `run ${runId} does not exist in this pool`);
  return run;
}

export function registerWorkerRoutes(server: FastifyInstance, ctx: ServerContext): void {
  const api = server.withTypeProvider<TypeBoxTypeProvider>();

  api.post(
    '/worker/register',
    {
      schema: { body: WorkerRegistration, response: { 200: WorkerRegistered, ...errorResponses } },
    },
    async (request) => {
      const poolId = callerPool(request);
      const id = request.body.id ?? ctx.newId();
      const existing = await ctx.store.getWorker(id);
      if (existing && existing.poolId !== poolId) {
        throw new ApiError(
          409,
          'WORKER_ID_TAKEN',
          `worker id ${id} belongs to another pool`,
          'Let the server give the worker a new id (remove its id file).',
        );
      }
      // The id of a live worker on another host: its state directory was copied (an image or a
      // volume with it baked in), or the worker came back under another host name (a new
      // container on the same volume) before its old self's lease time passed. Two workers under
      // one id would share leases, drains and the list's one line: this one waits its turn (the
      // worker asks again until the id is free).
      const quietMs = existing ? ctx.now().getTime() - Date.parse(existing.lastHeartbeatAt) : 0;
      if (
        existing &&
        existing.host !== request.body.host &&
        existing.leftAt === null &&
        Date.parse(existing.lastHeartbeatAt) > onlineSince(ctx).getTime()
      ) {
        const freeIn = Math.max(1, Math.ceil((ctx.leaseMs - quietMs) / 1000));
        throw new ApiError(
          409,
          'WORKER_ID_IN_USE',
          `worker id ${id} is in use by a live worker on host ${existing.host} (last heartbeat ${existing.lastHeartbeatAt}): a copy of its state directory, or this worker restarted under another host name; if that worker has stopped, the id is free in ${freeIn} s`,
          "Give each worker its own state directory (BERTH_STATE_DIR), or remove this one's worker-id file to get a new id. berth worker asks again every 2 s and starts once the id is free.",
        );
      }
      const worker = await ctx.store.upsertWorker({ ...request.body, id, poolId }, ctx.now());
      const { host, berthVersion, engineVersion, concurrency } = request.body;
      ctx.say?.(
        `worker ${id} ${existing ? 'registered again' : 'registered'} in pool ${poolId}: ${host}, berth ${berthVersion}, Docker ${engineVersion}, up to ${concurrency} run(s) at once`,
      );
      // A worker process's first registration: runs its id still holds were its dead
      // predecessor's. They end now, not at their lease's end; the new process removes their
      // containers. (A live process registering again, after the server forgot it or after a
      // lost answer, says it is not fresh: it may hold runs by then.)
      if (existing && request.body.fresh === true) {
        const released = await ctx.store.releaseWorkerRuns(id, ctx.now());
        for (const run of released) {
          ctx.say?.(`run ${run.id} of stack ${run.stackId}: ${run.state} (${run.stateReason})`);
          await forgetWorkspaceIfEnded(ctx, run);
        }
        if (released.length > 0) ctx.signals.notify(poolId);
      }
      return {
        workerId: id,
        pool: poolId,
        leaseMs: ctx.leaseMs,
        // Three within the lease, and at least every 5 s: a cancel or a drain reaches the worker
        // with its next heartbeat.
        heartbeatMs: Math.min(HEARTBEAT_MAX_MS, Math.floor(ctx.leaseMs / 3)),
        reportsCommit: true,
        drained: worker.drained,
      };
    },
  );

  api.post(
    '/worker/deregister',
    { schema: { body: WorkerRef, response: { 204: { type: 'null' }, ...errorResponses } } },
    async (request, reply) => {
      // A clean exit: the worker list shows it OFFLINE now, not IDLE until its heartbeat is old.
      const poolId = callerPool(request);
      const worker = await ownWorker(ctx, poolId, request.body.workerId);
      await ctx.store.markWorkerLeft(worker.id, ctx.now());
      return reply.status(204).send(null);
    },
  );

  api.post(
    '/worker/lease',
    {
      schema: {
        body: LeaseRequest,
        response: { 200: Assignment, 204: { type: 'null' }, ...errorResponses },
      },
    },
    async (request, reply) => {
      const poolId = callerPool(request);
      const worker = await ownWorker(ctx, poolId, request.body.workerId);
      const deadline = Date.now() + (request.body.waitMs ?? 0);
      // The worker gave up waiting (its connection closed before an answer): hand it nothing.
      const gone = new AbortController();
      reply.raw.on('close', () => {
        if (!reply.raw.writableFinished) gone.abort();
      });
      // The worker was read just now: only a later round (after a wait) reads it again.
      for (let round = 0; ; round += 1) {
        if (worker.drained) break;
        if (round > 0) {
          const now = await ctx.store.getWorker(worker.id);
          // Drained meanwhile, or forgotten (BERTH_WORKER_FORGET_AFTER): nothing for it here.
          if (!now || now.drained) break;
        }
        if (gone.signal.aborted || ctx.closing.aborted) break;
        const run = await ctx.store.leaseRun(poolId, worker.id, ctx.now(), ctx.leaseMs);
        if (run) {
          try {
            const given = await assignment(ctx, run);
            if (given) return given;
          } catch (err) {
            // Nothing of the run reached the worker: back to the queue rather than stuck.
            await requeue(ctx, run, 'the server could not hand the run to a worker');
            throw err;
          }
          continue;
        }
        const left = deadline - Date.now();
        if (left <= 0 || gone.signal.aborted || ctx.closing.aborted) break;
        await ctx.signals.wait(poolId, left, AbortSignal.any([gone.signal, ctx.closing]));
      }
      // A server that is closing lets go of the connection too, so it does not wait for it to idle out.
      if (ctx.closing.aborted) void reply.header('connection', 'close');
      return reply.status(204).send(null);
    },
  );

  api.post(
    '/worker/heartbeat',
    { schema: { body: HeartbeatRequest, response: { 200: HeartbeatAnswer, ...errorResponses } } },
    async (request) => {
      const poolId = callerPool(request);
      const worker = await ownWorker(ctx, poolId, request.body.workerId);
      await ctx.store.heartbeat(worker.id, ctx.now(), ctx.leaseMs, request.body.runs);
      const stop: string[] = [];
      for (const id of request.body.runs) {
        const run = await ctx.store.getRun(id);
        if (
          !run ||
          run.poolId !== poolId ||
          run.workerId !== worker.id ||
          isTerminal(run.state) ||
          run.stopRequest !== null
        )
          stop.push(id);
      }
      return { stop, drained: worker.drained };
    },
  );

  api.post(
    '/worker/runs/:id/state',
    {
      schema: {
        params: RunParams,
        body: StateReport,
        response: { 200: RunOutputRef, ...errorResponses },
      },
    },
    async (request) => {
      const poolId = callerPool(request);
      await ownWorker(ctx, poolId, request.body.workerId);
      const run = await ownRun(ctx, poolId, request.params.id);
      const body = request.body;
      // A worker reports what its job did; people's decisions (confirm, discard) and the queue's
      // moves are not a worker's to make, and only a run it still holds is its to report on.
      if (!WORKER_STATES_REPORTED.includes(body.state)) {
        throw new ApiError(409, 'RUN_TRANSITION_INVALID', `a worker does not report ${body.state}`);
      }
      // The same report again (its answer was lost on the way): done already, and said so.
      // (A stop is recorded as CANCELED or STOPPED whichever the worker said: see below.)
      // (And a plan reported after a cancel was discarded by that report.)
      const stops = ['STOPPED', 'CANCELED'];
      if (
        run.workerId === body.workerId &&
        (run.state === body.state ||
          (stops.includes(run.state) && stops.includes(body.state)) ||
          (run.stopRequest && run.state === 'DISCARDED' && body.state === 'UNCONFIRMED'))
      )
        return runView(run);
      if (run.workerId !== body.workerId || run.leaseExpiresAt === null) {
        throw new ApiError(
          409,
          'RUN_CHANGED',
          `run ${run.id} is not held by worker ${body.workerId} any more`,
          'Stop the run: it was canceled, ended, or given to another worker.',
        );
      }
      if (run.state === 'PLANNING' && body.state === 'APPLYING' && !run.autoDeploy) {
        throw new ApiError(
          409,
          'RUN_TRANSITION_INVALID',
          `run ${run.id} waits for confirmation before it applies (the stack has no auto-deploy)`,
        );
      }
      let workspaceSeal: string | undefined;
      if (body.state === 'UNCONFIRMED') workspaceSeal = await keptWorkspace(ctx, run, body);
      const ends = isTerminal(body.state) || body.state === 'UNCONFIRMED';
      // A run canceled while held ends stopped or canceled as the state machine tells them
      // apart: CANCELED before the job's first reported state, STOPPED after (the worker's view
      // can differ: a container that had started, or an after_run hook that ran, before any job
      // state was reported).
      const state =
        run.stopRequest && (body.state === 'STOPPED' || body.state === 'CANCELED')
          ? (cancelTarget(run.state) ?? body.state)
          : body.state;
      // A run asked to stop: the person's cancel first, then what the worker says of the end.
      const reason =
        run.stopRequest && isTerminal(state)
          ? `${run.stopRequest.reason}; worker ${body.workerId}: ${body.reason ?? `the job ended ${state}`}`
          : body.reason;
      const changed = await ctx.store.transitionRun(
        run.id,
        state,
        {
          workerId: body.workerId,
          patch: {
            ...(reason !== undefined ? { stateReason: reason } : {}),
            ...(body.started !== undefined ? { started: body.started } : {}),
            ...(body.image
              ? {
                  imageReference: body.image.reference,
                  imageDigest: body.image.digest,
                  imageSource: body.image.source,
                  ...(body.image.chosenBy ? { imageChoice: body.image.chosenBy } : {}),
                  ...(body.image.id !== undefined ? { imageId: body.image.id } : {}),
                }
              : {}),
            ...(body.plan ? { plan: body.plan } : {}),
            // The commit checked out, for a run the trigger could bind to none.
            ...(body.commit && !run.commitSha ? { commitSha: body.commit } : {}),
            ...(workspaceSeal !== undefined ? { workspaceSeal } : {}),
            // A run that ends, or waits for confirmation, no longer needs its worker.
            ...(ends ? { releaseWorker: true } : {}),
          },
        },
        ctx.now(),
      );
      // A plan reported after a cancel is discarded by the same change (the store's rule).
      await forgetWorkspaceIfEnded(ctx, changed);
      // Its followers hear of the change through the store's run feed (observeRuns).
      ctx.signals.notify(poolId);
      return runView(changed);
    },
  );

  registerWorkspaceRoutes(server, ctx);

  api.post(
    '/worker/runs/:id/logs',
    {
      schema: {
        params: RunParams,
        body: LogBatch,
        response: { 200: LogAccepted, ...errorResponses },
      },
    },
    async (request) => {
      const run = await loggedRun(ctx, request);
      return { next: await appendInOrder(ctx, run.id, request.body.firstSeq, request.body.texts) };
    },
  );

  api.post(
    '/worker/runs/:id/masks',
    {
      schema: {
        summary: "Mask values learnt mid-run in the run's stored log",
        description:
          'A worker sends the values a job added with ::add-mask after some of its output was already shipped; the server masks them in every stored chunk of the run (also across chunks) and keeps the values nowhere. Idempotent.',
        params: RunParams,
        body: MaskReport,
        response: { 200: MaskAccepted, ...errorResponses },
      },
    },
    async (request) => {
      const run = await loggedRun(ctx, request);
      return { chunks: await ctx.store.remaskLog(run.id, request.body.values) };
    },
  );
}

const RunOutputRef = Assignment.properties.run;

/** How long a log batch that arrived before the one ahead of it waits on the server for it. */
const LOG_GAP_WAIT_MS = 10_000;
/** How often such a batch looks again (a signal may come between its look and its wait). */
const LOG_GAP_POLL_MS = 50;
/**
 * Batches of one run that may wait at once. An honest worker has at most three of a run in
 * flight (src/worker/log-shipper.ts), so two wait, or a few more for a moment when a batch is
 * sent again after a cut connection while its first copy still waits; the bound keeps a worker
 * that sends more (a bug, or a stolen pool token) from holding the server's memory and
 * connections: past it, LOG_GAP at once (the worker sends it again later, as after any gap).
 */
const LOG_GAP_WAITING_PER_RUN = 4;

/**
 * Stores a log batch after the batch before it: a worker sends a run's batches side by side
 * (src/worker/log-shipper.ts), so one may arrive before its predecessor is stored. It waits here
 * until the log reaches it (woken by the log's growth, or looking again every LOG_GAP_POLL_MS),
 * at most LOG_GAP_WAIT_MS; then LOG_GAP is the answer, and the worker sends it again later. Past
 * LOG_GAP_WAITING_PER_RUN waiting batches of the run, LOG_GAP at once.
 */
async function appendInOrder(
  ctx: ServerContext,
  runId: string,
  firstSeq: number,
  texts: string[],
): Promise<number> {
  // Real time, as for the lease's long poll: this bounds a wait on timers. ctx.now() is the clock
  // records are stamped with (a test may hold it still).
  const deadline = Date.now() + LOG_GAP_WAIT_MS;
  let waiting = false;
  const counts = ctx.logBatchesWaiting;
  try {
    for (;;) {
      try {
        return await ctx.store.appendLog(runId, firstSeq, texts, ctx.now(), ctx.logLimitBytes);
      } catch (err) {
        const left = deadline - Date.now();
        if (!(err instanceof StoreConflict && err.code === 'LOG_GAP') || left <= 0) throw err;
        if (ctx.closing.aborted) throw err;
        if (!waiting) {
          if ((counts.get(runId) ?? 0) >= LOG_GAP_WAITING_PER_RUN) throw err;
          counts.set(runId, (counts.get(runId) ?? 0) + 1);
          waiting = true;
        }
        await ctx.signals.waitFor(`run:${runId}`, Math.min(left, LOG_GAP_POLL_MS), ctx.closing);
      }
    }
  } finally {
    if (waiting) {
      const left = (counts.get(runId) ?? 1) - 1;
      if (left > 0) counts.set(runId, left);
      else counts.delete(runId);
    }
  }
}

/** The longest heartbeat period a worker is given. */
const HEARTBEAT_MAX_MS = 5000;

/** What a worker may report: its job's progress and its end. */
const WORKER_STATES_REPORTED: readonly RunStateName[] = [
  'INITIALIZING',
  'PLANNING',
  'UNCONFIRMED',
  'APPLYING',
  'PERFORMING',
  'DESTROYING',
  'FINISHED',
  'FAILED',
  'STOPPED',
  'CANCELED',
];

/**
 * A leased run whose worker never got it goes back to the queue, no worker recorded (or, canceled
 * meanwhile, ends CANCELED: the store's rule for a run asked to stop).
 */
async function requeue(ctx: ServerContext, run: Run, reason: string): Promise<void> {
  const moved = await ctx.store
    .transitionRun(
      run.id,
      run.state === 'PREPARING_APPLY' ? 'CONFIRMED' : 'READY',
      { from: [run.state], patch: { stateReason: reason, forgetWorker: true } },
      ctx.now(),
    )
    .catch(() => null);
  if (moved) await forgetWorkspaceIfEnded(ctx, moved);
}

async function assignment(ctx: ServerContext, run: Run) {
  // Independent reads, at once: on PostgreSQL each is a round trip on its own connection, and
  // the worker waits for the last of them, not their sum.
  const [stack, pool, variables, logNext, logBytes, trigger] = await Promise.all([
    ctx.store.getStack(run.stackId),
    ctx.store.getPool(run.poolId),
    ctx.store.listStackVariables(run.stackId),
    ctx.store.nextLogSeq(run.id),
    ctx.store.logBytes(run.id),
    ctx.store.findTokenById(run.triggeredBy),
  ]);
  if (!stack || !pool) throw new ApiError(409, 'NOT_FOUND', `run ${run.id} lost its stack or pool`);
  if (stack.poolId !== run.poolId) {
    // The stack moved to another pool after this run was queued: its secrets go to the stack's
    // pool only, so this run ends here.
    const failed = await ctx.store.transitionRun(
      run.id,
      'FAILED',
      {
        from: [run.state],
        patch: {
          stateReason: `stack ${stack.id} moved from pool ${run.poolId} to ${stack.poolId} after the run was queued; trigger it again`,
          releaseWorker: true,
        },
      },
      ctx.now(),
    );
    await forgetWorkspaceIfEnded(ctx, failed);
    return null;
  }
  // A secret this server cannot open (sealed with another key: checkSecretsKey stops such a
  // server at start, but a key changed under a running one is possible) ends the run, saying
  // which value and why: sent back to the queue it would fail the same way on every lease.
  let environment;
  let resume;
  try {
    environment = variables.map((v) => ({
      name: v.name,
      value: v.secret
        ? ctx.secrets.open(v.value, `stack ${stack.id}'s secret variable ${v.name}`)
        : v.value,
      secret: v.secret,
    }));
    resume = run.state === 'PREPARING_APPLY' ? await resumeOf(ctx, run) : undefined;
  } catch (err) {
    if (!(err instanceof BerthError) || err.code !== 'BERTH_SECRETS_KEY_MISMATCH') throw err;
    const failed = await ctx.store.transitionRun(
      run.id,
      'FAILED',
      {
        from: [run.state],
        patch: { stateReason: `${err.message} [${err.code}]`, releaseWorker: true },
      },
      ctx.now(),
    );
    await forgetWorkspaceIfEnded(ctx, failed);
    return null;
  }
  if (resume === null) return null;
  return {
    run: runView(run),
    stack: {
      id: stack.id,
      repository: stack.repository,
      branch: stack.branch,
      localDir: stack.localDir,
      projectRoot: stack.projectRoot,
      tool: stack.tool,
      toolVersion: stack.toolVersion,
      runnerImage: stack.runnerImage,
      labels: stack.labels,
    },
    environment,
    pool,
    // Who triggered the run, by the token's name (a revoked token: its id, as recorded).
    trigger: trigger?.name ?? run.triggeredBy,
    logNext,
    // What is left of the run's budget: an apply continues the log its plan began.
    logLimitBytes: Math.max(1024, ctx.logLimitBytes - logBytes),
    ...(resume ? { resume } : {}),
  };
}

/**
 * What the worker leasing an apply needs to open the saved workspace. A run whose seal or blob
 * is gone cannot be applied: it ends FAILED (null), saying so.
 */
async function resumeOf(ctx: ServerContext, run: Run) {
  const seal = run.workspaceSeal
    ? sealFromText(
        ctx.secrets.open(run.workspaceSeal, `the seal of run ${run.id}'s saved workspace`),
      )
    : null;
  if (seal && (await ctx.blobs.has(run.id))) {
    return {
      seal: {
        key: seal.key.toString('base64'),
        iv: seal.iv.toString('base64'),
        tag: seal.tag.toString('base64'),
      },
      imageId: run.imageId,
    };
  }
  const failed = await ctx.store.transitionRun(
    run.id,
    'FAILED',
    {
      from: [run.state],
      patch: {
        stateReason: `the saved workspace of the plan is missing from the server's blob store (${ctx.blobs.dir}); nothing was applied: trigger the run again (several servers on one database must share one blob directory, BERTH_BLOB_DIR)`,
        releaseWorker: true,
      },
    },
    ctx.now(),
  );
  await forgetWorkspaceIfEnded(ctx, failed);
  return null;
}

/**
 * The saved workspace of a tracked run without auto-deploy: uploaded by the worker that planned
 * it (before it reports UNCONFIRMED), downloaded by the worker that leased its apply. Only a
 * worker of the run's pool that holds the run in that very state gets either way.
 */
function registerWorkspaceRoutes(server: FastifyInstance, ctx: ServerContext): void {
  const api = server.withTypeProvider<TypeBoxTypeProvider>();
  // The body is streamed to the blob store as it arrives, never held whole in memory.
  server.addContentTypeParser('application/octet-stream', (_request, payload, done) =>
    done(null, payload),
  );

  api.put(
    '/worker/runs/:id/workspace',
    {
      schema: {
        params: RunParams,
        querystring: WorkspaceQuery,
        consumes: ['application/octet-stream'],
        response: { 200: WorkspaceStored, 413: ErrorBody, 507: ErrorBody, ...errorResponses },
      },
    },
    async (request, reply) => {
      const poolId = callerPool(request);
      const { workerId } = request.query;
      await ownWorker(ctx, poolId, workerId);
      const run = await ownRun(ctx, poolId, request.params.id);
      if (run.kind !== 'TRACKED' || run.autoDeploy || run.state !== 'PLANNING') {
        throw new ApiError(
          409,
          'RUN_TRANSITION_INVALID',
          `run ${run.id} (${run.kind}, ${run.state}${run.autoDeploy ? ', auto-deploy' : ''}) keeps no workspace: only a tracked run without auto-deploy does, at the end of its plan`,
        );
      }
      requireHeld(run, workerId);
      const body = request.body as Readable | undefined;
      if (!body || typeof body.pipe !== 'function') {
        throw new ApiError(
          415,
          'UNSUPPORTED_MEDIA_TYPE',
          'the workspace is sent as application/octet-stream',
        );
      }
      const declared = Number(request.headers['content-length']);
      const tooLarge = (bytes: number): ApiError =>
        new ApiError(
          413,
          'WORKSPACE_TOO_LARGE',
          `the saved workspace of run ${run.id} is ${bytes} bytes or more; this server keeps at most ${ctx.blobs.limitBytes} (its saved-workspace limit)`,
          "Keep less in /mnt/workspace between plan and apply, or raise the server's --saved-workspace-limit (BERTH_SAVED_WORKSPACE_LIMIT).",
        );
      if (Number.isFinite(declared) && declared > ctx.blobs.limitBytes) {
        body.resume();
        throw tooLarge(declared);
      }
      // Through a relay: a failed store destroys the relay, not the request, whose rest can then
      // be read to its declared end, so that the worker hears the answer (see storageFull).
      const relay = new PassThrough();
      body.on('error', (err) => relay.destroy(err));
      body.pipe(relay);
      const bytes = await ctx.blobs.put(run.id, relay, tooLarge).catch((err: unknown) => {
        const full = storageFull(ctx, run.id, err);
        body.unpipe(relay);
        if (full && Number.isFinite(declared)) body.resume();
        else body.destroy();
        throw full ?? err;
      });
      // Canceled while the bytes streamed: the run's end came before its blob, which goes too.
      const after = await ctx.store.getRun(run.id);
      if (after) await forgetWorkspaceIfEnded(ctx, after);
      return reply.status(200).send({ bytes });
    },
  );

  api.get(
    '/worker/runs/:id/workspace',
    {
      schema: {
        params: RunParams,
        querystring: WorkspaceQuery,
        produces: ['application/octet-stream'],
        response: { 200: WorkspaceBlob, ...errorResponses },
      },
    },
    async (request, reply) => {
      const poolId = callerPool(request);
      const { workerId } = request.query;
      await ownWorker(ctx, poolId, workerId);
      const run = await ownRun(ctx, poolId, request.params.id);
      if (run.state !== 'PREPARING_APPLY') {
        throw new ApiError(
          409,
          'RUN_TRANSITION_INVALID',
          `run ${run.id} is ${run.state}: its workspace goes only to the worker preparing its apply`,
        );
      }
      requireHeld(run, workerId);
      const blob = await ctx.blobs.get(run.id);
      if (!blob) throw workspaceMissing(run);
      return reply
        .status(200)
        .header('content-type', 'application/octet-stream')
        .header('content-length', String(blob.bytes))
        .send(blob.stream);
    },
  );
}

/** The run must be this worker's, under a lease that has not ended. */
function requireHeld(run: Run, workerId: string): void {
  if (run.workerId !== workerId || run.leaseExpiresAt === null) {
    throw new ApiError(
      409,
      'RUN_CHANGED',
      `run ${run.id} is not held by worker ${workerId}`,
      'Stop the run: it was canceled, ended, or given to another worker.',
    );
  }
}

function workspaceMissing(run: Run): ApiError {
  return new ApiError(
    409,
    'WORKSPACE_MISSING',
    `the saved workspace of run ${run.id} is not in the server's blob store`,
    'Upload it first (PUT /worker/runs/{id}/workspace); if it was lost, trigger the run again.',
  );
}

/**
 * UNCONFIRMED is reported after the workspace was uploaded, with the seal that opens it: the
 * seal is kept sealed again with the server's secrets key, apart from the blob.
 */
async function keptWorkspace(
  ctx: ServerContext,
  run: Run,
  body: { workspace?: { key: string; iv: string; tag: string } },
): Promise<string> {
  if (run.autoDeploy) {
    throw new ApiError(
      409,
      'RUN_TRANSITION_INVALID',
      `run ${run.id} applies in the plan's container (the stack has auto-deploy): it does not wait for confirmation`,
    );
  }
  const seal = body.workspace ? sealFromText(JSON.stringify(body.workspace)) : null;
  if (!seal) {
    throw new ApiError(
      400,
      'WORKSPACE_SEAL_MISSING',
      `UNCONFIRMED of run ${run.id} needs the seal of its saved workspace`,
    );
  }
  if (!(await ctx.blobs.has(run.id))) throw workspaceMissing(run);
  return ctx.secrets.seal(sealToText(seal));
}

/** The run of the request, held by the worker that sends it (of the caller's own pool). */
async function heldRun(
  ctx: ServerContext,
  request: FastifyRequest<{ Params: { id: string }; Body: { workerId: string } }>,
): Promise<Run> {
  const poolId = callerPool(request);
  await ownWorker(ctx, poolId, request.body.workerId);
  const run = await ownRun(ctx, poolId, request.params.id);
  if (run.workerId !== request.body.workerId) {
    throw new ApiError(
      409,
      'RUN_CHANGED',
      `run ${run.id} is not held by worker ${request.body.workerId}`,
    );
  }
  return run;
}

/**
 * A run whose log its worker may still write: while it holds the run's lease, and for a while
 * after the run ended (a canceled job's last output comes while the worker stops it: it hears of
 * the cancel within a heartbeat, then gives the job 30 s). Not once its part is done and the
 * run waits (a plan a person reviews), nor long after the end: a worker that once held a run
 * cannot add to or rewrite its log later.
 */
async function loggedRun(
  ctx: ServerContext,
  request: FastifyRequest<{ Params: { id: string }; Body: { workerId: string } }>,
): Promise<Run> {
  const run = await heldRun(ctx, request);
  if (!isTerminal(run.state)) {
    if (run.leaseExpiresAt !== null) return run;
    throw new ApiError(
      409,
      'RUN_CHANGED',
      `run ${run.id} is ${run.state}: worker ${request.body.workerId} no longer holds it, and its log is closed to it`,
    );
  }
  // Only a run that ended while its worker held it: not one a person ended while it waited (a
  // plan discarded hours after its worker's part was done).
  const endedAgo = ctx.now().getTime() - Date.parse(run.updatedAt);
  const before = (await ctx.store.runStates(run.id)).at(-2)?.state;
  const endedWhileHeld = before !== undefined && heldByWorker(before);
  if (endedWhileHeld && endedAgo <= logAfterEndMs(ctx.leaseMs)) return run;
  throw new ApiError(
    409,
    'RUN_CHANGED',
    endedWhileHeld
      ? `run ${run.id} ended (${run.state}) ${Math.round(endedAgo / 1000)} s ago; its log is closed`
      : `run ${run.id} ended (${run.state}) after worker ${request.body.workerId}'s part was done; its log is closed to it`,
  );
}

/** How long after a run's end its worker may still write its log (see loggedRun). */
export function logAfterEndMs(leaseMs: number): number {
  return 2 * leaseMs + 30_000;
}

/**
 * A blob store with no room left (ENOSPC, EDQUOT) as a refusal the worker can say: 507 with a
 * stable code; the directory is named to the operator, not to the pool's worker. Null for any
 * other failure.
 */
function storageFull(ctx: ServerContext, runId: string, err: unknown): ApiError | null {
  if (!isStorageFull(err)) return null;
  const code = (err as { code: string }).code;
  console.error(
    `berth server: the blob store ${ctx.blobs.dir} is full (${code}): the saved workspace of run ${runId} was not kept, and the run fails; free space there or give it more`,
  );
  return new ApiError(
    507,
    'SERVER_STORAGE_FULL',
    `the berth server has no space left for the saved workspace of run ${runId} (${code}): nothing was kept`,
    "The server's operator frees space in its blob directory (BERTH_BLOB_DIR) or gives it more; then trigger the run again.",
  );
}
