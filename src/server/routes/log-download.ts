/**
 * The whole stored log of a run as one text file (`GET /runs/{id}/logs/download`): the web
 * page's "download" link, for what its bounded window of lines no longer shows. The stored log
 * is already masked; it is read page by page from the store and streamed, so a 50 MB log never
 * sits in memory whole.
 */
import { Readable } from 'node:stream';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { FastifyInstance } from 'fastify';
import { RunParams } from '../../api/schemas.js';
import { ApiError, errorResponses, requirePerson, type ServerContext } from '../app.js';

const PAGE = 1000;

export function registerLogDownload(server: FastifyInstance, ctx: ServerContext): void {
  const api = server.withTypeProvider<TypeBoxTypeProvider>();
  api.get(
    '/runs/:id/logs/download',
    {
      schema: {
        params: RunParams,
        produces: ['text/plain'],
        response: {
          200: { type: 'string', description: 'the stored (masked) log as text' },
          ...errorResponses,
        },
      },
    },
    async (request, reply) => {
      requirePerson(request);
      const run = await ctx.store.getRun(request.params.id);
      if (!run) throw new ApiError(404, 'NOT_FOUND', `run ${request.params.id} does not exist`);
      const { store } = ctx;
      const runId = run.id;
      async function* pages(): AsyncGenerator<string> {
        let after = 0;
        for (;;) {
          const chunks = await store.readLog(runId, after, PAGE);
          if (chunks.length === 0) return;
          yield chunks.map((c) => c.text).join('');
          after = (chunks.at(-1) as { seq: number }).seq;
        }
      }
      return (
        reply
          .type('text/plain; charset=utf-8')
          .header('content-disposition', `attachment; filename="berth-run-${run.id}.log"`)
          // The stream is the text the schema describes; the typed reply only knows strings.
          .send(Readable.from(pages()) as unknown as string)
      );
    },
  );
}
