import { describe, expect, it } from 'vitest';
import type { Executor } from '../executor/executor.js';
import type { WorkerProtocol } from './protocol.js';
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
    report: () => Promise.resolve(),
    log: (_w, _r, firstSeq, texts) => Promise.resolve(firstSeq + texts.length),
    remask: () => Promise.resolve(),
    uploadWorkspace: () => Promise.resolve(),
    downloadWorkspace: () => Promise.resolve(),
  };
  return { protocol, calls, firstLease, undrain: () => (drained = false) };
}

describe('a drained worker', () => {
  it('takes runs again within about a second of an undrain, not at its next heartbeat', async () => {
    const server = drainedServer();
    const said: string[] = [];
    const worker = new Worker({
      protocol: server.protocol,
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
      jobSettings: { env: {}, secretEnv: {}, mounts: { all: [], readOnly: [], writeOnly: [] } },
      say: (line) => said.push(line),
    });
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
});
