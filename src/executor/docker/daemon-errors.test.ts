import { describe, expect, it } from 'vitest';
import { splitCreateWarnings } from './daemon-errors.js';

describe('splitCreateWarnings', () => {
  it('passes on warnings that weaken nothing berth asked for, and rejects the rest', () => {
    const swap =
      'Your kernel does not support swap limit capabilities or the cgroup is not mounted. Memory limited without swap.';
    const platform =
      "The requested image's platform (linux/arm64) does not match the detected host platform (linux/amd64/v3) and no specific platform was requested";
    const memory =
      'Your kernel does not support memory limit capabilities or the cgroup is not mounted. Limitation discarded.';
    const pids =
      'Your kernel does not support pids limit capabilities or the cgroup is not mounted. PIDs limit discarded.';
    expect(splitCreateWarnings([swap, memory, platform, pids])).toEqual({
      notes: [swap, platform],
      rejected: [memory, pids],
    });
    expect(splitCreateWarnings([])).toEqual({ notes: [], rejected: [] });
  });
});
