/** The typed client's reading of answers: berth's JSON, its errors, and what is not berth's API. */
import { describe, expect, it } from 'vitest';
import { ANSWER_UNEXPECTED, ApiClient, ApiClientError } from './client.js';

/** A fetch that answers every request with this body and content type. */
function answering(status: number, contentType: string | null, body: string): typeof fetch {
  return () =>
    Promise.resolve(
      new Response(body === '' ? null : body, {
        status,
        headers: contentType ? { 'content-type': contentType } : {},
      }),
    );
}

async function failure(call: Promise<unknown>): Promise<ApiClientError> {
  try {
    await call;
  } catch (err) {
    return err as ApiClientError;
  }
  throw new Error('the call succeeded');
}

describe('ApiClient', () => {
  it("reads berth's JSON answers and refusals (code, message, hint kept)", async () => {
    const json = 'application/json; charset=utf-8';
    const ok = new ApiClient('http://h', 't', answering(200, json, '{"stacks":[{"id":"a"}]}'));
    expect(await ok.listStacks()).toEqual([{ id: 'a' }]);
    const gone = new ApiClient('http://h', 't', answering(204, null, ''));
    await expect(gone.deleteStack('a')).resolves.toBeUndefined();
    const refused = new ApiClient(
      'http://h',
      't',
      answering(404, json, '{"code":"NOT_FOUND","message":"no stack a","hint":"list them"}'),
    );
    const err = await failure(refused.getStack('a'));
    expect([err.status, err.code, err.message, err.hint]).toEqual([
      404,
      'NOT_FOUND',
      'no stack a',
      'list them',
    ]);
  });

  it.each([
    [200, 'text/html; charset=utf-8', '<!doctype html><html><body>berth</body></html>'],
    [502, 'text/html', '<html><h1>502 Bad Gateway</h1></html>'],
    [200, 'application/json', '{"stacks": ['],
    [200, null, ''],
  ])(
    'says a %i %s answer is not berth’s API (never a JSON syntax error)',
    async (status, type, body) => {
      const client = new ApiClient('http://h:8080', 't', answering(status, type, body));
      const err = await failure(client.listStacks());
      expect(err).toBeInstanceOf(ApiClientError);
      expect(err.code).toBe(ANSWER_UNEXPECTED);
      expect(err.status).toBe(status);
      expect(err.message).toContain(
        `http://h:8080 answered ${status} with ${type ? type.split(';')[0] : 'no content type'}`,
      );
      // A proxy's error page stands for a server down or restarting; anything else, another site.
      expect(err.message).toContain(
        status >= 500
          ? 'something before the berth server (a proxy) answered for it; the server may be down or restarting'
          : "the address may not be a berth server's",
      );
    },
  );

  it('gives up following a log at once when a web page answers for the stream', async () => {
    const client = new ApiClient('http://h', 't', answering(200, 'text/html', '<html></html>'));
    const err = await failure(
      client.followLogs(
        '01JRUN',
        { log: () => undefined, run: () => undefined },
        { retryDelayMs: 1 },
      ),
    );
    expect(err.code).toBe(ANSWER_UNEXPECTED);
  });

  it('ends a follow whose stream is lost after the run ended, saying so, instead of trying for a minute', async () => {
    let calls = 0;
    const stream = (states: string[]): Response =>
      new Response(
        states.map((state) => `event: run\ndata: {"id":"01JRUN","state":"${state}"}\n\n`).join(''),
        { status: 200, headers: { 'content-type': 'text/event-stream' } },
      );
    // The stream says the run ended, then the server goes away before the stream's end.
    const serverGoes = (states: string[]): typeof fetch => {
      calls = 0;
      return () => {
        calls += 1;
        return calls === 1
          ? Promise.resolve(stream(states))
          : Promise.reject(new TypeError('fetch failed'));
      };
    };
    const lost: string[] = [];
    const states: string[] = [];
    const ended = new ApiClient('http://h', 't', serverGoes(['PERFORMING', 'FINISHED']));
    await ended.followLogs(
      '01JRUN',
      { log: () => undefined, run: (run) => states.push(run.state), lost: (why) => lost.push(why) },
      { retryDelayMs: 1 },
    );
    expect(states).toEqual(['PERFORMING', 'FINISHED']);
    // The cut stream, then one more try.
    expect(calls).toBe(2);
    expect(lost).toEqual([
      expect.stringMatching(
        /^the server stopped answering after run 01JRUN ended FINISHED \(.+\): its log here may lack its last lines; `berth runs logs 01JRUN` shows what was stored once the server is back$/,
      ),
    ]);
    // A run still going on: every try is made before the follow gives up.
    const going = new ApiClient('http://h', 't', serverGoes(['PERFORMING']));
    const err = await failure(
      going.followLogs(
        '01JRUN',
        { log: () => undefined, run: () => undefined },
        { retryDelayMs: 1, attempts: 4 },
      ),
    );
    expect(err.code).toBe('SERVER_UNREACHABLE');
    expect(calls).toBe(4);
  });

  it('takes a stream whose server never answers as cut, and says each new try and the return', async () => {
    // Takes the request and never answers it (only the caller's signal ends it).
    const hung: typeof fetch = (_input, init) =>
      new Promise((_resolve, reject) => {
        init?.signal?.addEventListener('abort', () => reject(init.signal?.reason as Error));
      });
    const said: [string, boolean][] = [];
    const client = new ApiClient('http://h', 't', hung);
    const err = await failure(
      client.followLogs(
        '01JRUN',
        {
          log: () => undefined,
          run: () => undefined,
          retrying: (message, back) => said.push([message, back]),
        },
        { retryDelayMs: 1, attempts: 3, connectMs: 30 },
      ),
    );
    expect(err.code).toBe('SERVER_UNREACHABLE');
    expect(err.message).toContain('no answer within 30ms; the server may be overloaded or hung');
    expect(said).toEqual([
      [
        'the log stream of run 01JRUN could not be opened (cannot reach the berth server at http://h (no answer within 30ms; the server may be overloaded or hung)); trying again in 1ms (try 2 of 3)',
        false,
      ],
      [
        expect.stringMatching(/could not be opened \(.+\); trying again in 2ms \(try 3 of 3\)$/),
        false,
      ],
    ]);
    // Back on the next try: said once, and the follow ends with the run.
    let calls = 0;
    const comesBack: typeof fetch = (input, init) => {
      calls += 1;
      if (calls === 1) return hung(input, init);
      return Promise.resolve(
        new Response(
          'event: run\ndata: {"id":"01JRUN","state":"FINISHED"}\n\nevent: end\ndata: {}\n\n',
          {
            status: 200,
            headers: { 'content-type': 'text/event-stream' },
          },
        ),
      );
    };
    said.length = 0;
    await new ApiClient('http://h', 't', comesBack).followLogs(
      '01JRUN',
      { log: () => undefined, run: () => undefined, retrying: (m, back) => said.push([m, back]) },
      { retryDelayMs: 1, connectMs: 30 },
    );
    expect(said.map(([, back]) => back)).toEqual([false, true]);
    expect(said[1]?.[0]).toBe('the log stream of run 01JRUN is back');
  });

  it('says once that an answer is slow, and still takes it', async () => {
    const late: typeof fetch = () =>
      new Promise((resolve) =>
        setTimeout(
          () =>
            resolve(
              new Response('{"stacks":[]}', {
                status: 200,
                headers: { 'content-type': 'application/json' },
              }),
            ),
          150,
        ),
      );
    const client = new ApiClient('http://h', 't', late);
    const said: string[] = [];
    client.onSlowAnswer = (message) => said.push(message);
    client.slowAnswerMs = 20;
    expect(await client.listStacks()).toEqual([]);
    expect(said).toEqual([
      'no answer yet from the berth server at http://h after 20ms (GET /stacks); waiting up to 1m00s in all',
    ]);
    // A quick answer says nothing.
    said.length = 0;
    client.slowAnswerMs = 1_000;
    await client.listStacks();
    expect(said).toEqual([]);
  });

  it('says a stream cut for its silence as such', async () => {
    // Answers, then never sends a byte more (a proxy that holds the connection).
    const silent: typeof fetch = (_input, init) =>
      Promise.resolve(
        new Response(
          new ReadableStream({
            start(controller) {
              init?.signal?.addEventListener('abort', () =>
                controller.error(new DOMException('This operation was aborted', 'AbortError')),
              );
            },
          }),
          { status: 200, headers: { 'content-type': 'text/event-stream' } },
        ),
      );
    const said: string[] = [];
    const err = await failure(
      new ApiClient('http://h', 't', silent).followLogs(
        '01JRUN',
        { log: () => undefined, run: () => undefined, retrying: (m) => said.push(m) },
        { retryDelayMs: 1, attempts: 2, idleMs: 20 },
      ),
    );
    expect(said).toEqual([
      'the log stream of run 01JRUN was cut (nothing heard from the server for 20ms); trying again in 1ms (try 2 of 2)',
      // Connected again (then silent again, and the tries are over).
      'the log stream of run 01JRUN is back',
    ]);
    expect(err.message).toContain('(nothing heard from the server for 20ms)');
  });
});
