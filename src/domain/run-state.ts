/**
 * The one state machine of a run driven by a server (the reference's run model): which states a
 * run of each type passes through, and which moves between them are allowed. Everything that
 * changes a run's state (the API, the scheduler, a worker's report, a lease that expired) asks
 * this module first; a move it refuses is a 409 with a stable code, never a changed record.
 *
 *   QUEUED → READY → PREPARING → PERFORMING                       → FINISHED   (task)
 *                              → INITIALIZING → PLANNING          → FINISHED   (proposed)
 *                                             → PLANNING → UNCONFIRMED → CONFIRMED
 *                                                → PREPARING_APPLY → APPLYING  → FINISHED   (tracked)
 *                                             → DESTROYING                    → FINISHED   (destroy)
 *
 * Every active state may end FAILED; CANCELED ends a run before any of the job ran (and a run
 * whose worker vanished before its container started goes back to the queue instead), STOPPED
 * after; DISCARDED ends a plan nobody confirmed.
 */

export const RUN_KINDS = ['TASK', 'PROPOSED', 'TRACKED', 'DESTROY'] as const;
export type RunKind = (typeof RUN_KINDS)[number];

export const RUN_STATES = [
  'QUEUED',
  'READY',
  'PREPARING',
  'INITIALIZING',
  'PLANNING',
  'UNCONFIRMED',
  'CONFIRMED',
  'PREPARING_APPLY',
  'APPLYING',
  'PERFORMING',
  'DESTROYING',
  'FINISHED',
  'FAILED',
  'DISCARDED',
  'CANCELED',
  'STOPPED',
] as const;
export type RunStateName = (typeof RUN_STATES)[number];

export const TERMINAL_STATES: readonly RunStateName[] = [
  'FINISHED',
  'FAILED',
  'DISCARDED',
  'CANCELED',
  'STOPPED',
];

export function isTerminal(state: RunStateName): boolean {
  return TERMINAL_STATES.includes(state);
}

/** States in which a worker holds the run (a lease, a container). */
export const WORKER_STATES: readonly RunStateName[] = [
  'PREPARING',
  'INITIALIZING',
  'PLANNING',
  'PREPARING_APPLY',
  'APPLYING',
  'PERFORMING',
  'DESTROYING',
];

/** States in which no container of the run has started yet: cancel means CANCELED. */
const NOT_STARTED: readonly RunStateName[] = [
  'QUEUED',
  'READY',
  'PREPARING',
  'CONFIRMED',
  'PREPARING_APPLY',
];

/** The job's own states: reached once its container runs, left for an end state. */
const RUNNING: readonly RunStateName[] = [
  'INITIALIZING',
  'PLANNING',
  'APPLYING',
  'PERFORMING',
  'DESTROYING',
];

/** The forward moves of each run type (end states are added below). */
const FORWARD: Record<RunKind, Partial<Record<RunStateName, readonly RunStateName[]>>> = {
  TASK: {
    QUEUED: ['READY'],
    READY: ['PREPARING'],
    PREPARING: ['PERFORMING', 'READY'],
    PERFORMING: ['FINISHED'],
  },
  PROPOSED: {
    QUEUED: ['READY'],
    READY: ['PREPARING'],
    PREPARING: ['INITIALIZING', 'READY'],
    INITIALIZING: ['PLANNING'],
    PLANNING: ['FINISHED'],
  },
  TRACKED: {
    QUEUED: ['READY'],
    READY: ['PREPARING'],
    PREPARING: ['INITIALIZING', 'READY'],
    INITIALIZING: ['PLANNING'],
    // Auto-deploy applies in the same container; otherwise the plan waits for a decision.
    PLANNING: ['UNCONFIRMED', 'APPLYING', 'FINISHED'],
    UNCONFIRMED: ['CONFIRMED', 'DISCARDED'],
    CONFIRMED: ['PREPARING_APPLY'],
    PREPARING_APPLY: ['APPLYING', 'CONFIRMED'],
    APPLYING: ['FINISHED'],
  },
  DESTROY: {
    QUEUED: ['READY'],
    READY: ['PREPARING'],
    PREPARING: ['INITIALIZING', 'READY'],
    INITIALIZING: ['DESTROYING'],
    DESTROYING: ['FINISHED'],
  },
};

/** Every state a run of this type may move to from `from`. */
export function nextStates(kind: RunKind, from: RunStateName): RunStateName[] {
  if (isTerminal(from)) return [];
  const forward = FORWARD[kind][from];
  if (forward === undefined) return [];
  const ends: RunStateName[] = ['FAILED'];
  if (NOT_STARTED.includes(from)) ends.push('CANCELED');
  if (RUNNING.includes(from)) ends.push('STOPPED');
  return [...forward, ...ends];
}

export type TransitionRefusal = {
  code: 'RUN_TRANSITION_INVALID';
  message: string;
};

/** Checks one move; the refusal says what the run may do instead. */
export function checkTransition(
  kind: RunKind,
  from: RunStateName,
  to: RunStateName,
): { ok: true } | { ok: false; refusal: TransitionRefusal } {
  const allowed = nextStates(kind, from);
  if (allowed.includes(to)) return { ok: true };
  return {
    ok: false,
    refusal: {
      code: 'RUN_TRANSITION_INVALID',
      message: isTerminal(from)
        ? `the run has ended (${from}); it cannot become ${to}`
        : `a ${kind} run in state ${from} cannot become ${to} (it may become ${allowed.join(', ')})`,
    },
  };
}

/** What cancelling a run in `state` makes it: CANCELED before the job ran, STOPPED after. */
export function cancelTarget(state: RunStateName): RunStateName | null {
  if (isTerminal(state)) return null;
  if (state === 'UNCONFIRMED') return 'DISCARDED';
  return RUNNING.includes(state) ? 'STOPPED' : 'CANCELED';
}

/** Whether a worker holds a run in this state: preparing its job, or running it. */
export function heldByWorker(state: RunStateName): boolean {
  return state === 'PREPARING' || state === 'PREPARING_APPLY' || RUNNING.includes(state);
}

/**
 * Runs that take the stack's lock: one tracked or destroy run per stack at a time, in trigger
 * order; proposed runs and tasks may overlap.
 */
export function takesStackLock(kind: RunKind): boolean {
  return kind === 'TRACKED' || kind === 'DESTROY';
}

/**
 * Whether a run holds its stack's lock in this state. An UNCONFIRMED tracked run keeps it: the
 * plan it waits on must still match the state it will apply to.
 */
export function holdsStackLock(kind: RunKind, state: RunStateName): boolean {
  return takesStackLock(kind) && state !== 'QUEUED' && !isTerminal(state);
}
