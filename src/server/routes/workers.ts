/**
 * Workers as people see them: status (IDLE, BUSY, DRAINED, OFFLINE), last heartbeat, current
 * runs; drain.
 */
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { FastifyInstance } from 'fastify';
import { WorkerList, WorkerOutput, WorkerParams } from '../../api/schemas.js';
import type { Worker } from '../../store/store.js';
import {
  ApiError,
  errorResponses,
  requireAdmin,
  requirePerson,
  type ServerContext,
} from '../app.js';

async function workerView(ctx: ServerContext, worker: Worker) {
  const runs = (await ctx.store.listRuns({ heldBy: worker.id, limit: 500 })).map((r) => r.id);
  return {
    id: worker.id,
    pool: worker.poolId,
    host: worker.host,
    berthVersion: worker.berthVersion,
    engineVersion: worker.engineVersion,
    concurrency: worker.concurrency,
    status: isOffline(ctx, worker)
      ? ('OFFLINE' as const)
      : worker.drained
        ? ('DRAINED' as const)
        : runs.length > 0
          ? ('BUSY' as const)
          : ('IDLE' as const),
    drained: worker.drained,
    lastHeartbeatAt: worker.lastHeartbeatAt,
    runs,
  };
}

/**
 * Online: heard from after this moment (the lease time ago) and not said it leaves; a live
 * worker heartbeats three times within the lease, so one not heard from since has died or lost
 * the server. The worker list and a pool's delete (the store's query) both count by it.
 */
export function onlineSince(ctx: ServerContext): Date {
  return new Date(ctx.now().getTime() - ctx.leaseMs);
}

function isOffline(ctx: ServerContext, worker: Worker): boolean {
  return worker.leftAt !== null || Date.parse(worker.lastHeartbeatAt) <= onlineSince(ctx).getTime();
}

export function registerWorkerAdminRoutes(server: FastifyInstance, ctx: ServerContext): void {
  const api = server.withTypeProvider<TypeBoxTypeProvider>();

  api.get(
    '/workers',
    { schema: { response: { 200: WorkerList, ...errorResponses } } },
    async (request) => {
      requirePerson(request);
      const workers = await ctx.store.listWorkers();
      return { workers: await Promise.all(workers.map((w) => workerView(ctx, w))) };
    },
  );

  for (const verb of ['drain', 'undrain'] as const) {
    api.post(
      `/workers/:id/${verb}`,
      { schema: { params: WorkerParams, response: { 200: WorkerOutput, ...errorResponses } } },
      async (request) => {
        requireAdmin(request);
        if (!(await ctx.store.setWorkerDrained(request.params.id, verb === 'drain'))) {
          throw new ApiError(404, 'NOT_FOUND', `worker ${request.params.id} is not registered`);
        }
        const worker = await ctx.store.getWorker(request.params.id);
        // Forgotten in between (BERTH_WORKER_FORGET_AFTER): as if it had not been there.
        if (!worker) {
          throw new ApiError(404, 'NOT_FOUND', `worker ${request.params.id} is not registered`);
        }
        // A waiting worker hears of it now rather than at its next lease.
        ctx.signals.notify(worker.poolId);
        return workerView(ctx, worker);
      },
    );
  }
}
