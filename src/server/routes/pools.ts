/** Worker pools: public or private, the public allow-list, default image, pull policy, token. */
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { FastifyInstance } from 'fastify';
import { Type } from 'typebox';
import { parseAllowList } from '../../domain/pool-policy.js';
import { IdParams, PoolInput, PoolOutput, PoolWithToken } from '../../api/schemas.js';
import {
  ApiError,
  errorResponses,
  requireAdmin,
  requirePerson,
  type ServerContext,
} from '../app.js';
import { hashToken, newToken } from '../auth.js';

export function registerPoolRoutes(server: FastifyInstance, ctx: ServerContext): void {
  const api = server.withTypeProvider<TypeBoxTypeProvider>();

  api.post(
    '/pools',
    { schema: { body: PoolInput, response: { 201: PoolWithToken, ...errorResponses } } },
    async (request, reply) => {
      requireAdmin(request);
      const input = request.body;
      const allowList = input.allowList ?? [];
      if (allowList.length > 0) {
        const parsed = parseAllowList(allowList.join(','));
        if ('error' in parsed) throw new ApiError(400, 'BAD_REQUEST', `allowList: ${parsed.error}`);
      }
      if (input.kind === 'private' && allowList.length > 0) {
        throw new ApiError(
          400,
          'BAD_REQUEST',
          'allowList is for public pools: a private pool runs images from any registry',
        );
      }
      const token = newToken('pool');
      const pool = await ctx.store.createPool(
        {
          id: input.id,
          name: input.name ?? input.id,
          kind: input.kind,
          allowList: input.kind === 'public' && allowList.length === 0 ? ['default'] : allowList,
          defaultImage: input.defaultImage ?? null,
          pullPolicy: input.pullPolicy ?? null,
        },
        hashToken(token),
        ctx.now(),
      );
      return reply.status(201).send({ pool, token });
    },
  );

  api.get(
    '/pools',
    {
      schema: {
        response: {
          200: Type.Object({ pools: Type.Array(PoolOutput) }, { additionalProperties: false }),
          ...errorResponses,
        },
      },
    },
    async (request) => {
      requirePerson(request);
      return { pools: await ctx.store.listPools() };
    },
  );

  api.post(
    '/pools/:id/token',
    { schema: { params: IdParams, response: { 200: PoolWithToken, ...errorResponses } } },
    async (request) => {
      requireAdmin(request);
      const token = newToken('pool');
      if (!(await ctx.store.setPoolTokenHash(request.params.id, hashToken(token)))) {
        throw new ApiError(404, 'NOT_FOUND', `worker pool ${request.params.id} does not exist`);
      }
      const pool = await ctx.store.getPool(request.params.id);
      if (!pool)
        throw new ApiError(404, 'NOT_FOUND', `worker pool ${request.params.id} does not exist`);
      return { pool, token };
    },
  );
}
