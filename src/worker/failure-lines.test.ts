import { describe, expect, it } from 'vitest';
import { BerthError } from '../domain/errors.js';
import { failureLines } from './worker.js';

describe('failureLines', () => {
  it("never ends a worker's log with the command-line template of the generic usage fix", () => {
    const text = failureLines(new BerthError('BERTH_USAGE', 'something the stack says'));
    expect(text).not.toContain('COMMAND --help');
    expect(text).toContain(
      "[berth: fix: The run's settings come from its stack and its pool on the server",
    );
  });

  it('keeps a fix of its own as it is', () => {
    const text = failureLines(new BerthError('BERTH_USAGE', 'bad', { hint: 'Do this.' }));
    expect(text).toBe('[berth: error: bad [BERTH_USAGE]]\n[berth: fix: Do this.]\n');
  });
});
