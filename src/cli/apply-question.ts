/**
 * The question `berth run` and `berth stack trigger --follow` ask when a plan waits for
 * confirmation, and the one way both read the answer: `y` or `yes` applies, anything else
 * (an empty line, the end of the input) discards.
 */
export const APPLY_QUESTION = 'Apply this plan? [y/N] (y applies, anything else discards)';

export function appliesPlan(answer: string): boolean {
  return /^y(es)?$/i.test(answer.trim());
}
