/** What a first run on a machine without the standard runner image is told when it cannot be had. */
import { describe, expect, it } from 'vitest';
import { BerthError } from '../domain/errors.js';
import { DEFAULT_RUNNER_REPOSITORY } from '../launcher/runner-image.js';

describe('the standard runner image can be neither pulled nor built', () => {
  it('names every way out in the fix: --image, BERTH_DEFAULT_RUNNER_IMAGE, a build through a mirror', () => {
    const { hint } = new BerthError('BERTH_RUNNER_IMAGE_BUILD_FAILED', 'building failed');
    expect(hint).toContain('--image REF');
    expect(hint).toContain('BERTH_DEFAULT_RUNNER_IMAGE=REF');
    expect(hint).toContain('runner/Dockerfile');
    expect(hint).toContain(`docker build -t ${DEFAULT_RUNNER_REPOSITORY}:latest runner/`);
    expect(hint).toMatch(/mirror/);
    expect(hint).toContain('docker load');
  });
});
