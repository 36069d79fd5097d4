/** Worker pools: public or private, the public allow-list, default image, pull policy, token. */
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { FastifyInstance } from 'fastify';
import { Type } from 'typebox';
import { checkImageReference } from '../../domain/image-reference.js';
import { parseAllowList, stackImageRefusal } from '../../domain/pool-policy.js';
import {
  IdParams,
  PoolInput,
  PoolOutput,
  PoolPatchInput,
  PoolWithToken,
} from '../../api/schemas.js';
import type { Pool } from '../../store/store.js';
import {
  ApiError,
  errorResponses,
  requireAdmin,
  requirePerson,
  type ServerContext,
} from '../app.js';
import { hashToken, newToken } from '../auth.js';
import { onlineSince } from './workers.js';

/**
 * The allow-list a pool of `kind` keeps for `given`: a public pool's empty list is berth's
 * default list; a private pool runs images from any registry, so it has none.
 */
function allowListOf(kind: Pool['kind'], given: string[]): string[] {
  if (given.length > 0) {
    const parsed = parseAllowList(given.join(','));
    if ('error' in parsed) throw new ApiError(400, 'BAD_REQUEST', `allowList: ${parsed.error}`);
    if (kind === 'private')
      throw new ApiError(
        400,
        'BAD_REQUEST',
        'allowList is for public pools: a private pool runs images from any registry',
      );
  }
  return kind === 'public' && given.length === 0 ? ['default'] : given;
}

/**
 * A default image must be a valid reference, and a public pool's must come from a registry on its
 * own allow-list: every run of the pool without an image of its own uses it. `given`: the request
 * names the image (else it is the pool's current one, checked against a new list).
 */
function checkDefaultImage(
  image: string | null | undefined,
  pool: { id: string; kind: Pool['kind']; allowList: string[] },
  change: 'create' | 'update',
  given = true,
): void {
  if (!image) return;
  const what = given ? 'defaultImage' : `the pool's current default image ${image}`;
  const problem = checkImageReference(image);
  if (problem) throw new ApiError(400, 'BAD_REQUEST', `${what}: ${problem.message}`);
  const refusal = stackImageRefusal(image, pool);
  if (!refusal) return;
  throw new ApiError(
    400,
    'IMAGE_NOT_ALLOWED',
    `public pool ${pool.id}'s default image ${image} is refused by its own allow-list (${refusal.reason}): every run of a stack without an image of its own would be refused`,
    change === 'create'
      ? `Give the pool a default image from a registry on its allow-list, or add ${refusal.registry} to the list (\`berth pool create ${pool.id} --kind public --allowed-registries LIST --default-image REF\`).`
      : `Give the pool a default image from a registry on its allow-list, or keep ${refusal.registry} on the list (\`berth pool update ${pool.id} --default-image REF\` or \`--allowed-registries LIST\`).`,
  );
}

export function registerPoolRoutes(server: FastifyInstance, ctx: ServerContext): void {
  const api = server.withTypeProvider<TypeBoxTypeProvider>();

  api.post(
    '/pools',
    { schema: { body: PoolInput, response: { 201: PoolWithToken, ...errorResponses } } },
    async (request, reply) => {
      requireAdmin(request);
      const input = request.body;
      const allowList = allowListOf(input.kind, input.allowList ?? []);
      checkDefaultImage(
        input.defaultImage,
        { id: input.id, kind: input.kind, allowList },
        'create',
      );
      const token = newToken('pool');
      const pool = await ctx.store.createPool(
        {
          id: input.id,
          name: input.name ?? input.id,
          kind: input.kind,
          allowList,
          defaultImage: input.defaultImage || null,
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

  api.patch(
    '/pools/:id',
    {
      schema: {
        params: IdParams,
        body: PoolPatchInput,
        response: { 200: PoolOutput, ...errorResponses },
      },
    },
    async (request) => {
      requireAdmin(request);
      const pool = await ctx.store.getPool(request.params.id);
      if (!pool)
        throw new ApiError(404, 'NOT_FOUND', `worker pool ${request.params.id} does not exist`);
      const { name, allowList, defaultImage, pullPolicy } = request.body;
      const nextAllowList =
        allowList !== undefined ? allowListOf(pool.kind, allowList) : pool.allowList;
      // The default image the pool will have, against the list it will have (a change of name or
      // pull policy alone leaves both as they were).
      if (defaultImage !== undefined || allowList !== undefined)
        checkDefaultImage(
          defaultImage === undefined ? pool.defaultImage : defaultImage,
          { ...pool, allowList: nextAllowList },
          'update',
          defaultImage !== undefined,
        );
      // A null arrives as '' (the validator tries a union's string first): both mean none.
      const updated = await ctx.store.updatePool(pool.id, {
        ...(name !== undefined ? { name } : {}),
        ...(allowList !== undefined ? { allowList: nextAllowList } : {}),
        ...(defaultImage !== undefined ? { defaultImage: defaultImage || null } : {}),
        ...(pullPolicy !== undefined ? { pullPolicy: pullPolicy || null } : {}),
      });
      if (!updated)
        throw new ApiError(404, 'NOT_FOUND', `worker pool ${request.params.id} does not exist`);
      return updated;
    },
  );

  api.delete(
    '/pools/:id',
    { schema: { params: IdParams, response: { 204: Type.Null(), ...errorResponses } } },
    async (request, reply) => {
      requireAdmin(request);
      if (!(await ctx.store.deletePool(request.params.id, onlineSince(ctx))))
        throw new ApiError(404, 'NOT_FOUND', `worker pool ${request.params.id} does not exist`);
      return reply.status(204).send(null);
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
