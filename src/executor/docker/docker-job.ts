/**
 * One job's container, once created: phases as execs (or the sole phase as the container's own
 * process), interruption, files in and out, removal. See the JobHandle contract in
 * ../executor.ts.
 */
import type { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { BerthError } from '../../domain/errors.js';
import {
  CONTROL_DIR,
  WORKSPACE_DIR,
  type JobHandle,
  type OutputStream,
  type Phase,
  type PhaseOutcome,
  type TreeEntry,
} from '../executor.js';
import { listArchive, type ArchiveEntry } from './archive.js';
import { toEndPhaseExecBody, toInterruptExecBody, toPhaseExecBody } from './convert.js';
import { DockerApiError, containerError } from './daemon-errors.js';
import {
  ROOT,
  phaseScriptEntry,
  readContainerFile,
  removeJob,
  uploadArchive,
} from './engine-calls.js';
import type { EngineClient } from './engine-client.js';
import { writeHostEntries } from './host-workspace.js';
import { StreamDemuxer } from './stream-demux.js';

export interface DockerJobParts {
  containerId: string;
  containerName: string;
  imageReference: string;
  home: string;
  warnings: readonly string[];
  /** Phase scripts already in the container. */
  preloaded: Set<string>;
  /** The phase that is the container's own process (created, not yet started); null: keeper. */
  solePhase: string | null;
  /** The job's directory on this machine whose parts are mounted (host-workspace.ts); null: copied. */
  hostDir: string | null;
}

export class DockerJob implements JobHandle {
  readonly containerId: string;
  readonly containerName: string;
  readonly warnings: readonly string[];
  private destroying: Promise<void> | undefined;
  /** The last interrupt, and the phase it was for (see interrupt). */
  private interrupting: { phase: DockerJob['current']; done: Promise<void> } | undefined;
  private soleStarted = false;
  /**
   * The phase being started or run: until its process runs, a SIGINT would reach nothing (see
   * interrupt). An exec's id, or the sole phase's container start.
   */
  private current: { execId: Promise<string | null> } | { starting: Promise<void> } | null = null;

  constructor(
    private readonly engine: EngineClient,
    private readonly parts: DockerJobParts,
  ) {
    this.containerId = parts.containerId;
    this.containerName = parts.containerName;
    this.warnings = parts.warnings;
  }

  async runPhase(
    phase: Phase,
    onOutput: (stream: OutputStream, chunk: Buffer) => void | Promise<void>,
    onStarted?: () => void,
  ): Promise<PhaseOutcome> {
    if (this.parts.solePhase !== null) return this.runSolePhase(phase, onOutput, onStarted);
    let execCreated: (id: string | null) => void = () => undefined;
    const current = { execId: new Promise<string | null>((resolve) => (execCreated = resolve)) };
    this.current = current;
    try {
      const script = phaseScriptEntry(phase.script);
      if (!this.parts.preloaded.has(script.name)) {
        await this.writeControl(script, `the script of phase ${phase.name}`);
        this.parts.preloaded.add(script.name);
      }
      const scriptPath = `/${script.name}`;
      const exec = await this.engine.json<{ Id: string }>(
        'POST',
        `/containers/${this.containerId}/exec`,
        {
          body: toPhaseExecBody(
            scriptPath,
            { ...phase.env, HOME: this.parts.home },
            phase.workingDir,
          ),
        },
      );
      execCreated(exec.Id);
      const res = await this.engine.hijack('POST', `/exec/${exec.Id}/start`, {
        body: { Detach: false, Tty: false },
      });
      onStarted?.();
      await pumpOutput(res, onOutput);
      const exitCode = await this.exitCodeOf(exec.Id);
      await this.endPhaseProcesses();
      return { exitCode };
    } finally {
      execCreated(null);
      if (this.current === current) this.current = null;
    }
  }

  /** Kills whatever the phase left running (background jobs, daemons) before anything else runs. */
  private async endPhaseProcesses(): Promise<void> {
    // The container may have stopped meanwhile (killed, stopped): then no process of the phase
    // is left, and the engine says so at either step.
    const gone = (err: unknown): boolean =>
      err instanceof DockerApiError &&
      (err.status === 404 ||
        err.status === 409 ||
        /is not running|no such container/i.test(err.engineMessage));
    let res;
    try {
      const exec = await this.engine.json<{ Id: string }>(
        'POST',
        `/containers/${this.containerId}/exec`,
        { body: toEndPhaseExecBody() },
      );
      res = await this.engine.stream('POST', `/exec/${exec.Id}/start`, {
        body: { Detach: false, Tty: false },
      });
    } catch (err) {
      if (gone(err)) return;
      throw err;
    }
    res.resume();
    await new Promise<void>((resolve) => {
      res.on('end', resolve);
      res.on('close', resolve);
      res.on('error', () => resolve());
    });
  }

  /**
   * The sole phase: attach to the created container, start it, stream its output, and take the
   * exit status from the engine once the process has ended.
   */
  private async runSolePhase(
    phase: Phase,
    onOutput: (stream: OutputStream, chunk: Buffer) => void | Promise<void>,
    onStarted?: () => void,
  ): Promise<PhaseOutcome> {
    if (this.soleStarted || phase.name !== this.parts.solePhase) {
      throw new BerthError(
        'BERTH_INTERNAL',
        `container ${this.containerName} runs only its phase ${this.parts.solePhase}; phase ${phase.name} cannot run in it`,
      );
    }
    this.soleStarted = true;
    let startedOrNot: () => void = () => undefined;
    const current = { starting: new Promise<void>((resolve) => (startedOrNot = resolve)) };
    this.current = current;
    try {
      let res;
      try {
        res = await this.engine.hijack('POST', `/containers/${this.containerId}/attach`, {
          query: { stream: 1, stdout: 1, stderr: 1 },
        });
        try {
          // The engine answers once the container's process runs.
          await this.engine.json('POST', `/containers/${this.containerId}/start`);
        } catch (err) {
          res.destroy();
          throw containerError(err, this.parts.imageReference);
        }
      } finally {
        startedOrNot();
      }
      onStarted?.();
      await pumpOutput(res, onOutput);
      const waited = await this.engine.json<{ StatusCode: number }>(
        'POST',
        `/containers/${this.containerId}/wait`,
        { query: { condition: 'not-running' } },
      );
      return { exitCode: waited.StatusCode };
    } finally {
      if (this.current === current) this.current = null;
    }
  }

  private async exitCodeOf(execId: string): Promise<number> {
    for (let attempt = 0; attempt < 50; attempt += 1) {
      const info = await this.engine.json<{ Running: boolean; ExitCode: number | null }>(
        'GET',
        `/exec/${execId}/json`,
      );
      if (!info.Running) return info.ExitCode ?? 137;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    throw new BerthError(
      'BERTH_INTERNAL',
      `phase exec ${execId} closed its output but the engine still reports it running`,
    );
  }

  readFile(containerPath: string, maxBytes = 64 * 1024 * 1024): Promise<Buffer | null> {
    return readContainerFile(this.engine, this.containerId, containerPath, maxBytes);
  }

  async exportWorkspace(destination: Writable): Promise<void> {
    const res = await this.engine.stream('GET', `/containers/${this.containerId}/archive`, {
      query: { path: WORKSPACE_DIR },
    });
    await pipeline(res, destination);
  }

  async listTree(directory: string): Promise<TreeEntry[]> {
    let res;
    try {
      res = await this.engine.stream('GET', `/containers/${this.containerId}/archive`, {
        query: { path: directory },
      });
    } catch (err) {
      if (err instanceof DockerApiError && err.status === 404) return [];
      throw err;
    }
    // The archive's names start with the directory's own name: strip it.
    const entries = await listArchive(res);
    return entries
      .map((e) => ({ ...e, path: e.name.split('/').slice(1).filter(Boolean).join('/') }))
      .filter((e) => e.path !== '')
      .map(({ path, kind, mode }) => ({ path, kind, mode }));
  }

  async writeControlFile(containerPath: string, content: string): Promise<void> {
    const name = containerPath.replace(/^\//, '');
    await this.writeControl(
      { kind: 'file', name, mode: 0o644, owner: ROOT, content },
      containerPath,
    );
  }

  /**
   * A file of berth's (root's, read-only to the job) into the control directory: on disk when that
   * is mounted from the host (where the job cannot write), through the engine otherwise.
   */
  private async writeControl(file: ArchiveEntry & { kind: 'file' }, what: string): Promise<void> {
    if (this.parts.hostDir && file.name.startsWith(`${CONTROL_DIR.slice(1)}/`))
      await writeHostEntries(this.parts.hostDir, [file]);
    else await uploadArchive(this.engine, this.containerId, [file], what);
  }

  interrupt(): Promise<void> {
    // Once per phase: a second SIGINT ends Terraform at once instead of gracefully.
    const phase = this.current;
    if (phase !== null && this.interrupting?.phase === phase) return this.interrupting.done;
    const done = this.interruptOnce();
    this.interrupting = { phase, done };
    return done;
  }

  private async interruptOnce(): Promise<void> {
    // A phase whose process is being started would miss a SIGINT sent now (it reaches only the
    // processes there are), and then run its whole grace: the SIGINT goes once the process runs.
    const current = this.current;
    if (current) {
      await this.untilStarted(current);
      // That phase ended meanwhile, or never started: what runs now (after_run hooks, which run
      // after a stop on purpose) was not asked to stop.
      if (this.current !== current) return;
    }
    try {
      const exec = await this.engine.json<{ Id: string }>(
        'POST',
        `/containers/${this.containerId}/exec`,
        {
          body: toInterruptExecBody(),
        },
      );
      await this.engine.json('POST', `/exec/${exec.Id}/start`, {
        body: { Detach: true, Tty: false },
      });
    } catch {
      // Nothing to interrupt (container stopped or gone); the caller escalates to kill after grace.
    }
  }

  /** Resolves once the phase's process runs, or can no longer (it ended, or never started). */
  private async untilStarted(
    current: { execId: Promise<string | null> } | { starting: Promise<void> },
  ): Promise<void> {
    if ('starting' in current) {
      await current.starting;
      return;
    }
    // Not made at all (the phase failed before): nothing will run.
    const execId = await current.execId;
    if (execId === null) return;
    for (let attempt = 0; attempt < 250 && this.current === current; attempt += 1) {
      const info = await this.engine
        .json<{ ExitCode: number | null; Pid: number }>('GET', `/exec/${execId}/json`)
        .catch(() => null);
      // Pid, not Running: the engine says Running just before it has the process started.
      if (!info || info.Pid > 0 || info.ExitCode !== null) return;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }

  async kill(): Promise<void> {
    try {
      await this.engine.json('POST', `/containers/${this.containerId}/kill`, {
        query: { signal: 'KILL' },
      });
    } catch (err) {
      if (err instanceof DockerApiError && (err.status === 404 || err.status === 409)) return;
      throw err;
    }
  }

  destroy(): Promise<void> {
    this.destroying ??= removeJob(this.engine, this.containerId, this.parts.hostDir);
    return this.destroying;
  }
}

/**
 * Reads smaller than this are followed by a pause of GATHER_MS. The engine writes a job's output
 * in frames of about 4 KiB; read as they come, each costs a wake-up, a read, a pass through the
 * output pipeline and a write of its own: on a fast job, berth read 17,500 single frames of 200 MB
 * and spent more CPU time on those than on the bytes. A millisecond later the next read takes
 * up to 64 KiB at once; a job that writes a line now and then sees its line a millisecond later.
 */
export const GATHER_BELOW = 32 * 1024;
export const GATHER_MS = 1;

/**
 * Delivers a multiplexed engine stream (exec start, attach: the hijacked connection) to onOutput
 * until it ends, pausing the engine while the consumer catches up. It ends when the process
 * exits or is killed.
 */
async function pumpOutput(
  res: Readable,
  onOutput: (stream: OutputStream, chunk: Buffer) => void | Promise<void>,
): Promise<void> {
  let waiting: Promise<void> | undefined;
  const demuxer = new StreamDemuxer((stream, payload) => {
    waiting = onOutput(stream, payload) ?? waiting;
  });
  await new Promise<void>((resolve) => {
    res.on('data', (chunk: Buffer) => {
      demuxer.write(chunk);
      if (waiting) {
        // Backpressure: stop reading from the engine until the consumer has caught up.
        const ready = waiting;
        waiting = undefined;
        res.pause();
        void ready.finally(() => res.resume());
      } else if (chunk.length < GATHER_BELOW) {
        // A small read: let the engine's next frames gather in the socket before reading again.
        res.pause();
        setTimeout(() => res.resume(), GATHER_MS);
      }
    });
    res.on('end', resolve);
    res.on('close', resolve);
    res.on('error', () => resolve());
  });
}
