import { describe, expect, it } from 'vitest';
import { coerceError } from '../../domain/errors.js';
import { containerError, DockerApiError, pullError, splitCreateWarnings } from './daemon-errors.js';

describe('engine refusals', () => {
  // Seen with Podman's Docker API: a 409 on attach came out as BERTH_INTERNAL, "a bug in berth".
  it.each([400, 404, 409, 500, 503])(
    'an answer %i is never BERTH_INTERNAL, whichever way it leaves berth',
    (status) => {
      const refusal = new DockerApiError(status, 'something the engine said', 'POST /x/attach');
      for (const error of [
        coerceError(refusal),
        containerError(refusal, 'img'),
        pullError(refusal, 'img'),
      ]) {
        expect(error.code).not.toBe('BERTH_INTERNAL');
        expect(error.message).toContain('something the engine said');
      }
      expect(coerceError(refusal).code).toBe('BERTH_DOCKER_API');
    },
  );
});

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
