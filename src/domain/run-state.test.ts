import { describe, expect, it } from 'vitest';
import {
  RUN_KINDS,
  RUN_STATES,
  cancelTarget,
  checkTransition,
  heldByWorker,
  holdsStackLock,
  isTerminal,
  nextStates,
  type RunKind,
  type RunStateName,
} from './run-state.js';

/** Every path each run type takes when nothing goes wrong. */
const HAPPY: Record<RunKind, RunStateName[][]> = {
  TASK: [['QUEUED', 'READY', 'PREPARING', 'PERFORMING', 'FINISHED']],
  PROPOSED: [['QUEUED', 'READY', 'PREPARING', 'INITIALIZING', 'PLANNING', 'FINISHED']],
  TRACKED: [
    [
      'QUEUED',
      'READY',
      'PREPARING',
      'INITIALIZING',
      'PLANNING',
      'UNCONFIRMED',
      'CONFIRMED',
      'PREPARING_APPLY',
      'APPLYING',
      'FINISHED',
    ],
    ['QUEUED', 'READY', 'PREPARING', 'INITIALIZING', 'PLANNING', 'APPLYING', 'FINISHED'],
    ['QUEUED', 'READY', 'PREPARING', 'INITIALIZING', 'PLANNING', 'UNCONFIRMED', 'DISCARDED'],
  ],
  DESTROY: [['QUEUED', 'READY', 'PREPARING', 'INITIALIZING', 'DESTROYING', 'FINISHED']],
};

describe('the run state machine', () => {
  it.each(Object.entries(HAPPY))('%s runs take their documented paths', (kind, paths) => {
    for (const path of paths) {
      for (let i = 1; i < path.length; i += 1) {
        const from = path[i - 1] as RunStateName;
        const to = path[i] as RunStateName;
        expect(checkTransition(kind as RunKind, from, to), `${from} → ${to}`).toEqual({ ok: true });
      }
    }
  });

  it.each([
    ['TASK', 'PREPARING', 'PLANNING'],
    ['PROPOSED', 'PLANNING', 'UNCONFIRMED'],
    ['PROPOSED', 'PLANNING', 'APPLYING'],
    ['DESTROY', 'INITIALIZING', 'PLANNING'],
    ['TRACKED', 'UNCONFIRMED', 'APPLYING'],
    ['TRACKED', 'QUEUED', 'PREPARING'],
    ['TRACKED', 'APPLYING', 'CANCELED'],
    ['TASK', 'PERFORMING', 'CANCELED'],
  ] as const)('refuses %s %s → %s, saying what may follow', (kind, from, to) => {
    const result = checkTransition(kind, from, to);
    expect(result.ok).toBe(false);
    if (!result.ok) {
      expect(result.refusal.code).toBe('RUN_TRANSITION_INVALID');
      expect(result.refusal.message).toContain(`${kind} run in state ${from} cannot become ${to}`);
      expect(result.refusal.message).toContain('it may become');
    }
  });

  it('says in which states a worker holds the run: from its lease to its end or its wait', () => {
    expect(RUN_STATES.filter(heldByWorker)).toEqual([
      'PREPARING',
      'INITIALIZING',
      'PLANNING',
      'PREPARING_APPLY',
      'APPLYING',
      'PERFORMING',
      'DESTROYING',
    ]);
  });

  it('lets nothing leave an end state', () => {
    for (const kind of RUN_KINDS) {
      for (const state of RUN_STATES.filter(isTerminal)) {
        expect(nextStates(kind, state)).toEqual([]);
        const result = checkTransition(kind, state, 'QUEUED');
        expect(!result.ok && result.refusal.message).toBe(
          `the run has ended (${state}); it cannot become QUEUED`,
        );
      }
    }
  });

  it('lets every active state fail, and cancel before the job ran or stop after', () => {
    for (const kind of RUN_KINDS) {
      for (const state of RUN_STATES) {
        const next = nextStates(kind, state);
        if (next.length === 0) continue;
        expect(next, `${kind} ${state}`).toContain('FAILED');
        const target = cancelTarget(state);
        expect(target).not.toBeNull();
        expect(next, `${kind} ${state} → ${target}`).toContain(target);
      }
    }
  });

  it('puts a run whose worker vanished before its container started back in the queue', () => {
    expect(checkTransition('TASK', 'PREPARING', 'READY')).toEqual({ ok: true });
    expect(checkTransition('TRACKED', 'PREPARING_APPLY', 'CONFIRMED')).toEqual({ ok: true });
    expect(checkTransition('TASK', 'PERFORMING', 'READY').ok).toBe(false);
  });

  it('cancels to CANCELED before the job ran, STOPPED after, DISCARDED while unconfirmed', () => {
    expect(cancelTarget('QUEUED')).toBe('CANCELED');
    expect(cancelTarget('PREPARING')).toBe('CANCELED');
    expect(cancelTarget('PLANNING')).toBe('STOPPED');
    expect(cancelTarget('UNCONFIRMED')).toBe('DISCARDED');
    expect(cancelTarget('FINISHED')).toBeNull();
  });

  it('takes the stack lock for tracked and destroy runs only, from READY until the end', () => {
    expect(holdsStackLock('TRACKED', 'QUEUED')).toBe(false);
    expect(holdsStackLock('TRACKED', 'READY')).toBe(true);
    expect(holdsStackLock('TRACKED', 'UNCONFIRMED')).toBe(true);
    expect(holdsStackLock('DESTROY', 'DESTROYING')).toBe(true);
    expect(holdsStackLock('TRACKED', 'FINISHED')).toBe(false);
    expect(holdsStackLock('PROPOSED', 'PLANNING')).toBe(false);
    expect(holdsStackLock('TASK', 'PERFORMING')).toBe(false);
  });
});
