import { describe, expect, it } from 'vitest';
import type { Executor } from '../executor/executor.js';
import { ProtocolError, type WorkerProtocol } from './protocol.js';
import type { RepositoryCache } from './repository-cache.js';
import { Worker } from './worker.js';

/** The protocol of a server on which this worker is drained until `undrain` is called. */
function drainedServer() {
  let drained = true;
  const calls: string[] = [];
  let leased: () => void = () => undefined;
  const firstLease = new Promise<void>((resolve) => (leased = resolve));
  const protocol: WorkerProtocol = {
    register: () => {
      calls.push('register');
      // A heartbeat period far longer than the test: only the drained worker's own asks count.
      return Promise.resolve({
        workerId: 'W1',
        pool: 'p',
        leaseMs: 180_000,
        heartbeatMs: 60_000,
        drained: true,
      });
    },
    heartbeat: () => {
      calls.push('heartbeat');
      return Promise.resolve({ stop: [], drained });
    },
    lease: () => {
      calls.push('lease');
      leased();
      return Promise.resolve(null);
    },
    deregister: () => Promise.resolve(),
    report: () => Promise.resolve({ stopRequested: false }),
    log: (_w, _r, firstSeq, texts) => Promise.resolve(firstSeq + texts.length),
    remask: () => Promise.resolve(),
    uploadWorkspace: () => Promise.resolve(),
    downloadWorkspace: () => Promise.resolve(),
  };
  return { protocol, calls, firstLease, undrain: () => (drained = false) };
}

function workerOf(protocol: WorkerProtocol, said: string[]): Worker {
  return new Worker({
    protocol,
    // Neither is used: no run is handed out.
    executor: {} as Executor,
    repositories: {} as RepositoryCache,
    concurrency: 1,
    settings: {} as ConstructorParameters<typeof Worker>[0]['settings'],
    dockerConfig: null,
    env: {},
    stateDir: '/nonexistent',
    defaultRunnerImage: 'runner',
    launcherId: 'local/test/1/1',
    berthVersion: '0.0.0',
    engineVersion: 'test',
    workerId: '01JWORKER0000000000000000A',
    jobSettings: { env: {}, secretEnv: {}, mounts: { all: [], readOnly: [], writeOnly: [] } },
    say: (line) => said.push(line),
  });
}

describe('a drained worker', () => {
  it('takes runs again within about a second of an undrain, not at its next heartbeat', async () => {
    const server = drainedServer();
    const said: string[] = [];
    const worker = workerOf(server.protocol, said);
    await worker.start();
    expect(said.join('\n')).toContain('drained: it takes no runs until');
    const serving = worker.serve();
    await new Promise((resolve) => setTimeout(resolve, 1500));
    expect(server.calls).not.toContain('lease');
    server.undrain();
    await server.firstLease;
    expect(said).toContain('undrained: taking runs again');
    worker.drain();
    await serving;
  }, 15_000);

  it('stopped while it registers, it says goodbye once registered (never left listed IDLE)', async () => {
    const server = drainedServer();
    const calls: string[] = [];
    const worker = workerOf(
      {
        ...server.protocol,
        register: async (info) => {
          worker.drain(); // The signal comes while the registration is on its way.
          return server.protocol.register(info);
        },
        deregister: () => {
          calls.push('deregister');
          return Promise.resolve();
        },
      },
      [],
    );
    await worker.start();
    await worker.serve();
    await worker.leave();
    expect(calls).toEqual(['deregister']);
    expect(server.calls).not.toContain('lease');
  });

  it('stopped while it waits for its id to be free, it ends without registering', async () => {
    const server = drainedServer();
    const said: string[] = [];
    const calls: string[] = [];
    const worker = workerOf(
      {
        ...server.protocol,
        register: () => {
          calls.push('register');
          worker.drain();
          return Promise.reject(new ProtocolError(409, 'WORKER_ID_IN_USE', 'in use elsewhere'));
        },
        deregister: () => {
          calls.push('deregister');
          return Promise.resolve();
        },
      },
      said,
    );
    await worker.start();
    await worker.serve();
    await worker.leave();
    expect(calls).toEqual(['register']);
    expect(worker.id).toBe('');
  });

  it("does not take an older heartbeat's answer, come late, over a newer one", async () => {
    const server = drainedServer();
    const said: string[] = [];
    let beats = 0;
    let late: (answer: { stop: string[]; drained: boolean }) => void = () => undefined;
    let leases = 0;
    const worker = workerOf(
      {
        ...server.protocol,
        // Heartbeats every 200 ms beside the drained worker's own; the first answer comes last.
        register: async (info) => ({ ...(await server.protocol.register(info)), heartbeatMs: 200 }),
        heartbeat: () => {
          beats += 1;
          if (beats === 1) return new Promise((resolve) => (late = resolve));
          return Promise.resolve({ stop: [], drained: false });
        },
        lease: async () => {
          leases += 1;
          await new Promise((resolve) => setTimeout(resolve, 20));
          return null;
        },
      },
      said,
    );
    await worker.start();
    const serving = worker.serve();
    while (leases === 0) await new Promise((resolve) => setTimeout(resolve, 20));
    expect(said).toContain('undrained: taking runs again');
    // The first heartbeat's answer, sent while drained, arrives now.
    late({ stop: [], drained: true });
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(said).not.toContain('drained on the server: no new runs until undrained');
    worker.drain();
    await serving;
  });

  it('forgotten by the server while drained (its heartbeat unknown), registers again, a failed try tried again', async () => {
    const server = drainedServer();
    const said: string[] = [];
    let known = true;
    let registrations = 0;
    const worker = workerOf(
      {
        ...server.protocol,
        register: (info) => {
          registrations += 1;
          // The second registration (the first again) meets a server still coming back.
          if (registrations === 2) return Promise.reject(new Error('connect ECONNREFUSED'));
          known = true;
          return server.protocol.register(info);
        },
        heartbeat: (...args) =>
          known
            ? server.protocol.heartbeat(...args)
            : Promise.reject(
                new ProtocolError(
                  404,
                  'WORKER_NOT_FOUND',
                  'worker W1 is not registered in this pool',
                ),
              ),
      },
      said,
    );
    await worker.start();
    const serving = worker.serve();
    known = false;
    const until = Date.now() + 10_000;
    while (!said.some((line) => line.includes('registered again')) && Date.now() < until)
      await new Promise((resolve) => setTimeout(resolve, 100));
    expect(registrations).toBe(3);
    expect(said.join('\n')).toContain(
      'cannot lease from the server: register again: connect ECONNREFUSED',
    );
    expect(said).toContain(
      "worker W1 registered again in pool p (the server had forgotten this worker: it was not heard from for longer than the server's BERTH_WORKER_FORGET_AFTER); drained: it takes no runs until `berth worker undrain W1`",
    );
    worker.drain();
    await serving;
  }, 15_000);
});
