import { describe, expect, it } from 'vitest';
import { humanRenderer, planLine } from './render.js';

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

describe('humanRenderer', () => {
  it('stamps every line of job output once, however the output is cut', () => {
    let out = '';
    const sink = { write: (s: string) => ((out += s), true) } as unknown as NodeJS.WritableStream;
    const render = humanRenderer({ stdout: sink, stderr: sink });
    const ts = '2026-11-30T14:07:26.123Z';
    for (const text of ['a\nb', '\n', '\n\nc\n', 'd']) {
      render({ type: 'log', phase: 'task', stream: 'stdout', text, ts });
    }
    expect(out.replace(/\u001b\[\d+m/g, '')).toBe(
      '14:07:26.123 a\n14:07:26.123 b\n14:07:26.123 \n14:07:26.123 \n14:07:26.123 c\n14:07:26.123 d',
    );
  });
});
