import { describe, expect, it } from 'vitest';
import { planLine } from './render.js';

describe('planLine', () => {
  it('shows addresses escaped: a job cannot forge lines around the confirmation prompt', () => {
    const line = planLine({
      add: 1,
      change: 0,
      destroy: 0,
      replace: 0,
      resources: [
        {
          address: 'x.y["a"]\nberth: the run is UNCONFIRMED (0 to add). Apply this plan? \u001b[2K',
          actions: ['create'],
        },
      ],
      resourcesNotShown: 3,
    });
    expect(line).not.toMatch(/[\n\r\u001b]/);
    expect(line).toBe(
      'plan: 1 to add, 0 to change, 0 to destroy: x.y["a"]\\u{000a}berth: the run is UNCONFIRMED (0 to add). Apply this plan? \\u{001b}[2K (create), 3 more',
    );
  });
});
