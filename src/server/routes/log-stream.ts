/**
 * `GET /runs/:id/logs/stream`: a run's log and states as server-sent events, pushed the moment
 * they are stored (the run feed says when), until the run has ended and everything was sent.
 *
 *   event: run   data: the run as GET /runs/:id answers   (at the start and on every change)
 *   id: <seq>    event: log   data: {"seq","text","at"}   (every stored chunk after `after`)
 *   event: end   data: {}                                   (the run ended, all chunks sent:
 *                                                           its log quiet for END_QUIET_MS)
 *   : keep-alive                                            (every 15 s of silence)
 *
 * A client that was cut off reconnects with `Last-Event-ID` (the last seq it got), which wins
 * over `after`, and gets exactly the chunks that follow. Memory per connection is bounded: chunks
 * are read from the store a page at a time and the next page only once the socket took the last
 * one; a client that takes nothing for DRAIN_TIMEOUT_MS gets an `error` event (SLOW_READER) and
 * is dropped (it may reconnect where it was). On server shutdown every stream ends at once.
 */
import type { ServerResponse } from 'node:http';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { FastifyInstance } from 'fastify';
import { Type } from 'typebox';
import { isTerminal } from '../../domain/run-state.js';
import { RunParams } from '../../api/schemas.js';
import { ApiError, errorResponses, requirePerson, type ServerContext } from '../app.js';
import type { Run } from '../../store/store.js';
import { runView } from './runs.js';

export const KEEP_ALIVE_MS = 15_000;
/** Chunks read from the store at once (each at most 256 KiB of text). */
const PAGE_CHUNKS = 64;
export const DRAIN_TIMEOUT_MS = 60_000;
/** How long the log of an ended run must have been quiet before the stream ends. */
export const END_QUIET_MS = 3000;

const StreamQuery = Type.Object(
  { after: Type.Optional(Type.Integer({ minimum: 0 })) },
  { additionalProperties: false },
);

/** The seq of `Last-Event-ID`; undefined without one, an error for one that is not a seq. */
function lastEventId(header: string | string[] | undefined): number | undefined {
  if (header === undefined) return undefined;
  const text = Array.isArray(header) ? header[0] : header;
  if (text === undefined || text.trim() === '') return undefined;
  if (!/^\d{1,15}$/.test(text.trim())) {
    throw new ApiError(
      400,
      'BAD_REQUEST',
      `Last-Event-ID ${JSON.stringify(text.slice(0, 40))} is not a log sequence number`,
      'Send the id of the last log event received (a whole number), or no Last-Event-ID.',
    );
  }
  return Number(text.trim());
}

export function registerLogStreamRoute(server: FastifyInstance, ctx: ServerContext): void {
  const api = server.withTypeProvider<TypeBoxTypeProvider>();
  api.get(
    '/runs/:id/logs/stream',
    {
      schema: {
        summary: "Follow a run's log and states live (server-sent events)",
        description:
          'Answers text/event-stream: `event: run` (data: the run, as GET /runs/{id}) at the start and on every change; every stored chunk after `after` (or the `Last-Event-ID` header, which wins) as `id: <seq>`, `event: log`, `data: {"seq","text","at"}`; `event: end` (data: {}) once the run has ended and every chunk was sent, then the stream closes. A `: keep-alive` comment every 15 s. A client that reads nothing for 60 s gets `event: error` (data: {"code":"SLOW_READER"}) and is dropped; reconnect with Last-Event-ID.',
        params: RunParams,
        querystring: StreamQuery,
        headers: Type.Object({
          'last-event-id': Type.Optional(
            Type.String({
              maxLength: 40,
              description: 'The seq of the last log event received: resume after it.',
            }),
          ),
        }),
        response: {
          200: {
            description: 'The event stream.',
            content: { 'text/event-stream': { schema: { type: 'string' } } },
          },
          ...errorResponses,
        },
      },
    },
    async (request, reply) => {
      requirePerson(request);
      const from = lastEventId(request.headers['last-event-id']) ?? request.query.after ?? 0;
      const run = await ctx.store.getRun(request.params.id);
      if (!run) throw new ApiError(404, 'NOT_FOUND', `run ${request.params.id} does not exist`);
      reply.hijack();
      const raw = reply.raw;
      raw.writeHead(200, {
        'content-type': 'text/event-stream; charset=utf-8',
        'cache-control': 'no-store',
        // Proxies (nginx) would otherwise hold events back in their buffers.
        'x-accel-buffering': 'no',
      });
      raw.flushHeaders();
      try {
        await streamRun(ctx, run.id, from, raw);
      } catch (err) {
        console.error(`berth server: log stream of run ${run.id} failed:`, err);
      } finally {
        // A server that is closing drops the connection too: it would otherwise stay open as an
        // idle keep-alive connection, and the server wait for it.
        const socket = raw.socket;
        if (ctx.closing.aborted) raw.end(() => socket?.destroy());
        else raw.end();
      }
    },
  );
}

/** Sends the run's events until it has ended, the client went away, or the server closes. */
async function streamRun(
  ctx: ServerContext,
  runId: string,
  after: number,
  raw: ServerResponse,
): Promise<void> {
  const gone = new AbortController();
  raw.on('close', () => gone.abort());
  const stop = AbortSignal.any([gone.signal, ctx.closing]);
  const write = (text: string): Promise<boolean> =>
    send(raw, text, stop, ctx.streamDrainTimeoutMs ?? DRAIN_TIMEOUT_MS);
  let changed: boolean;
  let wake: (() => void) | null = null;
  const unsubscribe = ctx.runFeed.subscribe(runId, () => {
    changed = true;
    wake?.();
  });
  let lastSeq = after;
  let lastChunkAt = 0;
  let lastRun = '';
  const sendRun = async (run: Run): Promise<boolean> => {
    const states = await ctx.store.runStates(run.id);
    const view = runView(
      run,
      states.map(({ state, at }) => ({ state, at })),
    );
    const key = JSON.stringify({ ...view, updatedAt: undefined });
    if (key === lastRun) return true;
    lastRun = key;
    return write(`event: run\ndata: ${JSON.stringify(view)}\n\n`);
  };
  try {
    const first = await ctx.store.getRun(runId);
    if (!first || !(await sendRun(first))) return;
    while (!stop.aborted) {
      changed = false;
      // The run before its chunks, and its event after them: a worker ships a run's output
      // before it reports its end, so a run read as ended has all its chunks stored, and a
      // client that sees the end has them all.
      const run = await ctx.store.getRun(runId);
      if (!run) return;
      for (;;) {
        const chunks = await ctx.store.readLog(runId, lastSeq, PAGE_CHUNKS);
        for (const chunk of chunks) {
          const event = `id: ${chunk.seq}\nevent: log\ndata: ${JSON.stringify(chunk)}\n\n`;
          if (!(await write(event))) return;
          lastSeq = chunk.seq;
          lastChunkAt = Date.parse(chunk.at);
        }
        if (chunks.length < PAGE_CHUNKS) break;
      }
      if (!(await sendRun(run))) return;
      let wait = KEEP_ALIVE_MS;
      if (isTerminal(run.state)) {
        // A run ended by someone else (cancel, a lost lease) may still get the last output its
        // worker ships while stopping the job: the end waits until the log was quiet a moment.
        const quiet = ctx.now().getTime() - Math.max(Date.parse(run.updatedAt), lastChunkAt);
        if (quiet >= END_QUIET_MS) {
          await write('event: end\ndata: {}\n\n');
          return;
        }
        wait = END_QUIET_MS - quiet;
      }
      if (changed) continue;
      const heard = await new Promise<boolean>((resolve) => {
        const done = (value: boolean): void => {
          clearTimeout(timer);
          stop.removeEventListener('abort', aborted);
          wake = null;
          resolve(value);
        };
        const aborted = (): void => done(true);
        const timer = setTimeout(() => done(false), wait);
        stop.addEventListener('abort', aborted, { once: true });
        wake = () => done(true);
      });
      if (!heard && wait === KEEP_ALIVE_MS && !(await write(': keep-alive\n\n'))) return;
    }
  } finally {
    unsubscribe();
  }
}

/**
 * Writes one event; when the socket's buffer is full, waits for it to drain (so the next page is
 * read only then). False: the stream is over (the client left, the server closes, or the client
 * read nothing for DRAIN_TIMEOUT_MS and was dropped).
 */
async function send(
  raw: ServerResponse,
  text: string,
  stop: AbortSignal,
  drainTimeoutMs: number,
): Promise<boolean> {
  if (stop.aborted || raw.destroyed) return false;
  if (raw.write(text)) return true;
  const drained = await new Promise<boolean | null>((resolve) => {
    const done = (value: boolean | null): void => {
      clearTimeout(timer);
      raw.off('drain', onDrain);
      stop.removeEventListener('abort', onStop);
      resolve(value);
    };
    const onDrain = (): void => done(true);
    const onStop = (): void => done(false);
    const timer = setTimeout(() => done(null), drainTimeoutMs);
    raw.on('drain', onDrain);
    stop.addEventListener('abort', onStop, { once: true });
  });
  if (drained === null) {
    // Best effort: the client is not reading, so it may never see this.
    raw.write(
      `event: error\ndata: ${JSON.stringify({ code: 'SLOW_READER', message: `the client read nothing for ${drainTimeoutMs / 1000} s; reconnect with Last-Event-ID` })}\n\n`,
    );
    raw.destroy();
    return false;
  }
  return drained;
}
