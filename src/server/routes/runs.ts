/** Runs: trigger (bound to one commit), list, show, logs, confirm, discard, cancel. */
import { BerthError } from '../../domain/errors.js';
import { GIT_VARIABLES, type StackVariable, displayRepository } from '../../domain/git-source.js';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { FastifyInstance } from 'fastify';
import { cancelTarget, heldByWorker, isTerminal, type RunKind } from '../../domain/run-state.js';
import {
  IdParams,
  ListQuery,
  LogOutput,
  LogQuery,
  RunList,
  RunOutput,
  RunParams,
  TriggerInput,
} from '../../api/schemas.js';
import type { Run } from '../../store/store.js';
import { checkStackImageAllowed } from '../image-policy.js';
import {
  ApiError,
  errorResponses,
  forgetWorkspaceIfEnded,
  requirePerson,
  type ServerContext,
} from '../app.js';

export function runView(run: Run, states?: { state: Run['state']; at: string }[]) {
  return {
    id: run.id,
    stack: run.stackId,
    pool: run.poolId,
    type: run.kind,
    state: run.state,
    stateReason: run.stateReason,
    commit: run.commitSha,
    triggeredBy: run.triggeredBy,
    autoDeploy: run.autoDeploy,
    worker: run.workerId,
    image: {
      reference: run.imageReference,
      digest: run.imageDigest,
      source: run.imageSource,
      chosenBy: run.imageChoice,
    },
    plan: run.plan,
    stopRequested: run.stopRequest,
    ...(states ? { states } : {}),
    createdAt: run.createdAt,
    updatedAt: run.updatedAt,
  };
}

/**
 * Cancel of a run a worker holds: its job may be running, so the run is not ended here (the next
 * tracked run of the stack would start beside a job still stopping). The stop is asked instead;
 * the worker hears it at its next heartbeat, stops the job (SIGINT, then SIGKILL after the grace)
 * and reports the end, and the run keeps its lease and its stack's lock until then. Asked again:
 * the same answer, except for a run stuck before its job past forceCancelAfterMs, which (as a run
 * not held any more) is cancelled the ordinary way, as now read: `asked` false.
 */
async function askWorkerToStop(
  ctx: ServerContext,
  given: Run,
  reason: string,
): Promise<{ asked: boolean; run: Run }> {
  let run = given;
  // A report may move the run between the read and the request: read it again, a few times.
  for (let attempt = 0; attempt < 5; attempt += 1) {
    if (!heldByWorker(run.state) || run.workerId === null || run.leaseExpiresAt === null)
      return { asked: false, run };
    if (run.stopRequest) {
      // Asked again: the same answer, unless the run is stuck before its job (a checkout or a
      // download that hangs on a worker whose heartbeats still come) past the force time. A job
      // that may be running is never ended here: it would run beside the stack's next run.
      const stuck =
        !jobMayRun(run.state) &&
        ctx.now().getTime() - Date.parse(run.stopRequest.at) >= forceCancelAfterMs(ctx.leaseMs);
      return { asked: !stuck, run };
    }
    const asked = await ctx.store.requestStop(
      run.id,
      { state: run.state, workerId: run.workerId },
      reason,
      ctx.now(),
    );
    if (asked) return { asked: true, run: asked };
    run = await existingRun(ctx, run.id);
  }
  throw new ApiError(409, 'RUN_CHANGED', `run ${run.id} kept changing; cancel it again`);
}

/**
 * A cancel again this long after the stop was asked ends a run whose job has not started on the
 * server: the job's grace (30 s) and a lease time (a heartbeat's way to the worker and the
 * report's back) have passed.
 */
export function forceCancelAfterMs(leaseMs: number): number {
  return leaseMs + 30_000;
}

/** Whether a job of the run may be running: it has reported a state of its own. */
function jobMayRun(state: Run['state']): boolean {
  return heldByWorker(state) && cancelTarget(state) === 'STOPPED';
}

async function existingRun(ctx: ServerContext, id: string): Promise<Run> {
  const run = await ctx.store.getRun(id);
  if (!run) throw new ApiError(404, 'NOT_FOUND', `run ${id} does not exist`);
  return run;
}

/** The stack's git credentials (BERTH_GIT_* variables), opened for the commit's resolution. */
async function gitVariables(ctx: ServerContext, stackId: string): Promise<StackVariable[]> {
  const names: string[] = Object.values(GIT_VARIABLES);
  try {
    return (await ctx.store.listStackVariables(stackId))
      .filter((v) => names.includes(v.name))
      .map((v) => ({
        name: v.name,
        value: v.secret
          ? ctx.secrets.open(v.value, `stack ${stackId}'s secret variable ${v.name}`)
          : v.value,
        secret: v.secret,
      }));
  } catch (err) {
    // The server's own setup, not the request: a 500 with the code, for the operator to act on.
    if (err instanceof BerthError && err.code === 'BERTH_SECRETS_KEY_MISMATCH')
      throw new ApiError(500, err.code, err.message, err.hint);
    throw err;
  }
}

export function registerRunRoutes(server: FastifyInstance, ctx: ServerContext): void {
  const api = server.withTypeProvider<TypeBoxTypeProvider>();

  api.post(
    '/stacks/:id/runs',
    {
      schema: {
        params: IdParams,
        body: TriggerInput,
        response: { 201: RunOutput, ...errorResponses },
      },
    },
    async (request, reply) => {
      const caller = requirePerson(request);
      const stack = await ctx.store.getStack(request.params.id);
      if (!stack) throw new ApiError(404, 'NOT_FOUND', `stack ${request.params.id} does not exist`);
      // A directory has no commits: the run would record one it never ran.
      if (request.body.commit && stack.localDir !== null) {
        throw new ApiError(
          400,
          'BAD_REQUEST',
          `stack ${stack.id}'s source is a directory on its workers (${stack.localDir}), which has no commits: commit ${request.body.commit} cannot be run`,
          'Trigger it without a commit: the run takes the directory as it is.',
        );
      }
      checkStackImageAllowed(stack, await ctx.store.getPool(stack.poolId));
      // The run is bound to one commit now: the one asked for, or the branch head at this moment.
      let commit = request.body.commit ?? null;
      if (commit === null && ctx.resolveCommit) {
        const head = await ctx.resolveCommit(stack, await gitVariables(ctx, stack.id));
        if ('missing' in head) {
          throw new ApiError(
            409,
            'BRANCH_NOT_FOUND',
            `stack ${stack.id}'s branch ${head.missing} does not exist in ${displayRepository(stack.repository ?? '')}`,
            `Push the branch, or give the stack one that exists (PATCH its branch); a run of a given commit (commit) needs no branch head.`,
          );
        }
        if ('sha' in head) commit = head.sha;
      }
      const run = await ctx.store.createRun(
        {
          id: ctx.newId(),
          stackId: stack.id,
          poolId: stack.poolId,
          kind: request.body.type.toUpperCase() as RunKind,
          commitSha: commit,
          triggeredBy: caller.id,
          autoDeploy: stack.autoDeploy,
        },
        ctx.now(),
      );
      ctx.signals.notify(run.poolId);
      return reply.status(201).send(runView(run));
    },
  );

  api.get(
    '/runs',
    { schema: { querystring: ListQuery, response: { 200: RunList, ...errorResponses } } },
    async (request) => {
      requirePerson(request);
      // A stack that does not exist is said as such, not listed as one without runs (a typo).
      if (request.query.stack !== undefined && !(await ctx.store.getStack(request.query.stack)))
        throw new ApiError(404, 'NOT_FOUND', `stack ${request.query.stack} does not exist`);
      const runs = await ctx.store.listRuns({
        stackId: request.query.stack,
        limit: request.query.limit ?? 50,
        ...(request.query.before !== undefined ? { before: request.query.before } : {}),
      });
      return { runs: runs.map((r) => runView(r)) };
    },
  );

  api.get(
    '/runs/:id',
    { schema: { params: RunParams, response: { 200: RunOutput, ...errorResponses } } },
    async (request) => {
      requirePerson(request);
      const run = await existingRun(ctx, request.params.id);
      const states = await ctx.store.runStates(run.id);
      return runView(
        run,
        states.map(({ state, at }) => ({ state, at })),
      );
    },
  );

  api.get(
    '/runs/:id/logs',
    {
      schema: {
        params: RunParams,
        querystring: LogQuery,
        response: { 200: LogOutput, ...errorResponses },
      },
    },
    async (request) => {
      requirePerson(request);
      const run = await existingRun(ctx, request.params.id);
      const after = request.query.after ?? 0;
      const chunks = await ctx.store.readLog(run.id, after, request.query.limit ?? 500);
      return { chunks, next: chunks.at(-1)?.seq ?? after };
    },
  );

  const decide = (path: 'confirm' | 'discard' | 'cancel') =>
    api.post(
      `/runs/:id/${path}`,
      { schema: { params: RunParams, response: { 200: RunOutput, ...errorResponses } } },
      async (request) => {
        const caller = requirePerson(request);
        let run = await existingRun(ctx, request.params.id);
        let reason = `${path === 'cancel' ? 'canceled' : path === 'confirm' ? 'confirmed' : 'discarded'} by ${caller.id}`;
        if (path === 'cancel') {
          const stopping = await askWorkerToStop(ctx, run, reason);
          if (stopping.asked) return runView(stopping.run);
          run = stopping.run;
          // Asked long ago, and the worker is stuck before its job: a second cancel ends it here.
          if (run.stopRequest && !isTerminal(run.state)) {
            reason = `${run.stopRequest.reason}, and again by ${caller.id} ${Math.round((ctx.now().getTime() - Date.parse(run.stopRequest.at)) / 1000)} s later: worker ${run.workerId ?? '?'} had not started its job nor said that it stopped the run`;
          }
        }
        const to =
          path === 'confirm'
            ? 'CONFIRMED'
            : path === 'discard'
              ? 'DISCARDED'
              : cancelTarget(run.state);
        if (to === null) {
          throw new ApiError(
            409,
            'RUN_TRANSITION_INVALID',
            `run ${run.id} has ended (${run.state}); there is nothing to cancel`,
          );
        }
        const from = path === 'cancel' ? [run.state] : (['UNCONFIRMED'] as const);
        const changed = await ctx.store.transitionRun(
          run.id,
          to,
          {
            from,
            patch: {
              stateReason: reason,
              // The run leaves its worker's hands (an ended run's lease would be looked at by
              // every lease sweep again, for nothing).
              ...(to === 'CONFIRMED' || isTerminal(to) ? { releaseWorker: true } : {}),
            },
          },
          ctx.now(),
        );
        // A discarded or canceled plan's workspace goes at once.
        await forgetWorkspaceIfEnded(ctx, changed);
        // Its followers hear of the change through the store's run feed (observeRuns).
        ctx.signals.notify(changed.poolId);
        return runView(changed);
      },
    );
  decide('confirm');
  decide('discard');
  decide('cancel');
}
