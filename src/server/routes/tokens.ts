/**
 * API tokens (admin only): made with a role, shown once and stored as their SHA-256, listed
 * without any secret, revoked at once. The token a caller is using and the last admin token are
 * never revoked: either would lock the caller, or everyone, out of administering the server.
 * A name is given once (TOKEN_NAME_TAKEN): people refer to tokens by name (`berth token revoke
 * NAME`), so two of one name would leave them guessing which one is which.
 */
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { FastifyInstance } from 'fastify';
import { Type } from 'typebox';
import { IdParams, TokenInput, TokenList, TokenWithToken } from '../../api/schemas.js';
import { StoreConflict } from '../../store/store.js';
import { ApiError, errorResponses, requireAdmin, type ServerContext } from '../app.js';
import { hashToken, newToken } from '../auth.js';

const LIST_HINT = '`berth token list` (GET /api/v1/tokens) shows the tokens and their ids.';

export function registerTokenRoutes(server: FastifyInstance, ctx: ServerContext): void {
  const api = server.withTypeProvider<TypeBoxTypeProvider>();

  api.post(
    '/tokens',
    { schema: { body: TokenInput, response: { 201: TokenWithToken, ...errorResponses } } },
    async (request, reply) => {
      requireAdmin(request);
      const name = request.body.name;
      if (name === 'admin') {
        throw new ApiError(
          409,
          'TOKEN_NAME_TAKEN',
          'the name "admin" is the server\'s own admin token\'s (made on its first start)',
          'Pick another name.',
        );
      }
      const nameTaken = async (): Promise<ApiError | null> => {
        const taken = (await ctx.store.listTokens()).find((t) => t.name === name);
        return taken
          ? new ApiError(
              409,
              'TOKEN_NAME_TAKEN',
              `a token named ${JSON.stringify(name)} exists already (id ${taken.id})`,
              `Pick another name, or revoke that token first (\`berth token revoke ${taken.id}\`).`,
            )
          : null;
      };
      const taken = await nameTaken();
      if (taken) throw taken;
      const token = newToken(request.body.role);
      try {
        // Lowercase: a ULID that is also a slug, so ids fit the same path parameter as 'admin'.
        const apiToken = await ctx.store.createToken(
          { id: ctx.newId().toLowerCase(), name, role: request.body.role },
          hashToken(token),
          ctx.now(),
        );
        return await reply.status(201).send({ apiToken, token });
      } catch (err) {
        // Another request made a token of this name since the look above (the name is unique).
        if (err instanceof StoreConflict && err.code === 'TOKEN_NAME_TAKEN')
          throw (await nameTaken()) ?? err;
        throw err;
      }
    },
  );

  api.get(
    '/tokens',
    { schema: { response: { 200: TokenList, ...errorResponses } } },
    async (request) => {
      requireAdmin(request);
      return { tokens: await ctx.store.listTokens() };
    },
  );

  api.delete(
    '/tokens/:id',
    { schema: { params: IdParams, response: { 204: Type.Null(), ...errorResponses } } },
    async (request, reply) => {
      const caller = requireAdmin(request);
      const id = request.params.id;
      if (caller.id === id) {
        throw new ApiError(
          409,
          'TOKEN_IN_USE',
          `token ${id} is the one this request was made with`,
          'Revoke it with another admin token, so that someone can still administer the server.',
        );
      }
      let revoked: boolean;
      try {
        revoked = await ctx.store.deleteToken(id);
      } catch (err) {
        if (!(err instanceof StoreConflict) || err.code !== 'TOKEN_LAST_ADMIN') throw err;
        throw new ApiError(
          409,
          'TOKEN_LAST_ADMIN',
          `token ${id} is the last admin token; without it no one could administer the server`,
          'Create another admin token first (`berth token create NAME --role admin`), then revoke this one.',
        );
      }
      if (!revoked) throw new ApiError(404, 'NOT_FOUND', `token ${id} does not exist`, LIST_HINT);
      return reply.status(204).send(null);
    },
  );
}
