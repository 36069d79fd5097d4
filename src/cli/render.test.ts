import { describe, expect, it } from 'vitest';
import { humanRenderer, humanView, planLine } from './render.js';

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

describe('humanView', () => {
  it('writes job output bytes as they came, each line stamped, and closes an open line', () => {
    const written: Buffer[] = [];
    const sink = {
      write: (s: string, encoding: BufferEncoding) => (
        written.push(Buffer.from(s, encoding)),
        true
      ),
    } as unknown as NodeJS.WritableStream;
    const view = humanView({ stdout: sink, stderr: sink });
    const ts = '2026-11-30T14:07:26.123Z';
    const euro = Buffer.from('€');
    const chunks = [
      Buffer.concat([Buffer.from('a\n'), euro.subarray(0, 2)]),
      Buffer.concat([euro.subarray(2), Buffer.from([0x0a, 0xff])]),
    ];
    for (const chunk of chunks) {
      view.output({ phase: 'task', stream: 'stdout', bytes: chunk.toString('latin1'), ts });
    }
    view.emit({ type: 'phase.finished', phase: 'task', exitCode: 0, durationMs: 5, ts });
    const out = Buffer.concat(written)
      .toString('latin1')
      .replace(/\u001b\[\d+m/g, '');
    const stamp = '14:07:26.123 ';
    expect(out.startsWith(`${stamp}a\n${stamp}\xe2\x82\xac\n${stamp}\xff\n`)).toBe(true);
    expect(out).toContain('phase task ended with exit code 0');
  });
});
