/**
 * What a run reports while it happens: the `--json` stream is exactly these events, one per line,
 * and the human view renders the same events. Secrets never appear in an event: log text is
 * masked before it becomes one.
 */

/**
 * How a run ended. As in the reference: CANCELED when it was stopped before anything of the job
 * ran, STOPPED when it was stopped after (Ctrl-C, SIGTERM); a timeout is a failure. UNCONFIRMED
 * ends only a worker's part of a tracked run: its plan waits on the server for a decision.
 */
export type RunState = 'FINISHED' | 'FAILED' | 'CANCELED' | 'STOPPED' | 'DISCARDED' | 'UNCONFIRMED';

import { formatDuration } from './units.js';
import type { PlanSummary } from './workflow.js';

/** Why a run was stopped before its job ended by itself. */
export type StopReason = 'run-timeout' | 'logs-timeout' | 'canceled';

export interface PhaseRecord {
  name: string;
  exitCode: number | null;
  durationMs: number;
}

export interface StopRecord {
  reason: StopReason;
  /** `SIGINT`: the job ended within the grace period; `SIGKILL`: it was killed. */
  endedBy: 'SIGINT' | 'SIGKILL';
  graceMs: number;
}

/** The settings a run resolved, each with the layer it came from. */
export interface RunConfiguration {
  stack: string;
  /** The runtime configuration file read, if any. */
  file: string | null;
  settings: Record<string, { value: unknown; source: string }>;
}

export interface RunSummary {
  runId: string;
  state: RunState;
  /** berth's process exit code for this outcome (see docs/usage.md). */
  exitCode: number;
  /** The job's own exit code (its last phase), null when no phase ran to an end. */
  jobExitCode: number | null;
  image: {
    reference: string;
    id: string | null;
    digest: string | null;
    source: 'present' | 'pulled' | 'built' | null;
  };
  containerId: string | null;
  containerName: string | null;
  phases: PhaseRecord[];
  /** The after_run hooks' phase, when there were any and they ran. */
  afterRun: PhaseRecord | null;
  /** Proposed and tracked runs: what the plan adds, changes and destroys. */
  plan: PlanSummary | null;
  configuration: RunConfiguration | null;
  durations: { preparingMs: number; totalMs: number };
  stop: StopRecord | null;
  error: { code: string; message: string; hint: string } | null;
  log: { path: string | null; bytes: number; bytesCut: number };
  warnings: string[];
}

export type RunEvent =
  | {
      type: 'run.started';
      runId: string;
      sourceDir: string;
      image: string;
      imageSource: string;
      ts: string;
    }
  | ({ type: 'run.configured'; ts: string } & RunConfiguration)
  | { type: 'run.state'; state: string; ts: string }
  | ({ type: 'plan.summary'; ts: string } & PlanSummary)
  | {
      type: 'tool.ready';
      tool: string;
      version: string;
      platform: string;
      downloaded: boolean;
      /** Where the binary is in the container, and how it got there. */
      path: string;
      delivery: 'mounted' | 'copied';
      ts: string;
    }
  | {
      type: 'plugins.found';
      providers: { source: string; version: string; file: string }[];
      ts: string;
    }
  | {
      type: 'image.checked';
      pool: string;
      registry: string;
      rule: string | null;
      credentials: string;
      digest: string;
      ts: string;
    }
  | {
      type: 'image.pull';
      layer: string | null;
      status: string;
      current?: number;
      total?: number;
      ts: string;
    }
  | { type: 'image.build'; line: string; ts: string }
  | {
      type: 'image.resolved';
      reference: string;
      id: string;
      digest: string | null;
      source: 'present' | 'pulled' | 'built';
      ts: string;
    }
  | { type: 'workspace.copying'; bytes: number; ts: string }
  | { type: 'container.started'; containerId: string; containerName: string; ts: string }
  | { type: 'warning'; message: string; ts: string }
  | { type: 'phase.started'; phase: string; ts: string }
  | { type: 'log'; phase: string; stream: 'stdout' | 'stderr'; text: string; ts: string }
  | {
      type: 'phase.finished';
      phase: string;
      exitCode: number | null;
      durationMs: number;
      ts: string;
    }
  | {
      type: 'run.stopping';
      reason: StopReason;
      signal: 'SIGINT' | 'SIGKILL';
      graceMs: number;
      ts: string;
    }
  | ({ type: 'run.finished'; ts: string } & RunSummary);

/** Distributes the Omit over the union so each event keeps its own fields. */
export type RunEventInput = RunEvent extends infer E
  ? E extends RunEvent
    ? Omit<E, 'ts'>
    : never
  : never;

/** A stop's reason in words. */
export function stopReasonText(reason: StopReason): string {
  switch (reason) {
    case 'run-timeout':
      return 'run timeout reached';
    case 'logs-timeout':
      return 'no output for longer than the logs timeout';
    default:
      return 'canceled';
  }
}

/**
 * What a stopping run does, in words: berth run's note, and a worker's line in the run's log.
 * `why` says why when the launcher's own reason does not (a worker stopped, not a person).
 */
export function stoppingText(
  event: Extract<RunEvent, { type: 'run.stopping' }>,
  why: string = stopReasonText(event.reason),
): string {
  return event.signal === 'SIGINT'
    ? `stopping (${why}): SIGINT sent to the job, ${formatDuration(event.graceMs)} grace before SIGKILL`
    : `stopping (${why}): SIGKILL`;
}
