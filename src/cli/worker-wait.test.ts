/** Why a run waiting for a worker is not taken, as `--follow` says it (noWorkerHint). */
import { describe, expect, it } from 'vitest';
import type { Run, Worker } from '../api/client.js';
import { noWorkerHint } from './remote.js';

const run = { id: '01JRUN', pool: 'builders' } as Run;

function worker(id: string, more: Partial<Worker>): Worker {
  return {
    id,
    pool: 'builders',
    host: `${id}.example`,
    berthVersion: '0.1.0',
    engineVersion: '20.10.24',
    concurrency: 1,
    status: 'IDLE',
    drained: false,
    lastHeartbeatAt: '2026-12-01T10:00:00.000Z',
    runs: [],
    ...more,
  };
}

describe('noWorkerHint', () => {
  it('says nothing while some worker of the pool can take the run (busy ones included)', () => {
    const busy = worker('w1', { status: 'BUSY', runs: ['01JOTHER'] });
    expect(noWorkerHint(run, [busy], 'http://berth:8080')).toBeNull();
    const drainedBeside = worker('w2', { status: 'DRAINED', drained: true });
    expect(noWorkerHint(run, [busy, drainedBeside], 'http://berth:8080')).toBeNull();
  });

  it("counts only the run's own pool's workers", () => {
    const elsewhere = worker('w1', { pool: 'other' });
    expect(noWorkerHint(run, [elsewhere], 'http://berth:8080')).toContain(
      'no worker has registered in that pool',
    );
  });

  it('names the worker heard of last when all of them are offline', () => {
    const hint = noWorkerHint(
      run,
      [
        worker('w1', { status: 'OFFLINE', lastHeartbeatAt: '2026-12-01T09:00:00.000Z' }),
        worker('w2', { status: 'OFFLINE', lastHeartbeatAt: '2026-12-01T09:30:00.000Z' }),
      ],
      'https://berth.example',
    );
    expect(hint).toContain(
      'none of its 2 workers is online (last heard of: w2 on w2.example at 2026-12-01T09:30:00.000Z)',
    );
    expect(hint).toContain('berth worker --server https://berth.example`');
    // A server this command trusts with a CA of its own: the worker needs it too.
    expect(noWorkerHint(run, [], 'https://berth.example', '/etc/berth/ca.pem')).toContain(
      'berth worker --server https://berth.example --ca-cert /etc/berth/ca.pem`',
    );
    // Offline is not a lost token: rotating it would lock out workers that were only away.
    expect(hint).not.toContain('rotate-token');
  });

  it('gives the undrain command of each online worker when all of them are drained', () => {
    const hint = noWorkerHint(
      run,
      [
        worker('w1', { status: 'DRAINED', drained: true }),
        worker('w2', { status: 'DRAINED', drained: true }),
        worker('w3', { status: 'OFFLINE', drained: false }),
      ],
      'http://berth:8080',
    );
    expect(hint).toContain(
      'every online worker of it is drained: `berth worker undrain w1` or `berth worker undrain w2` lets them take runs again',
    );
  });
});
