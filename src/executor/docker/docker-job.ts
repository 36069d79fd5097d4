/**
 * One job's container, once started: phases as execs, interruption, files in and out, removal.
 * See the JobHandle contract in ../executor.ts.
 */
import { createWriteStream } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { BerthError } from '../../domain/errors.js';
import {
  WORKSPACE_DIR,
  type JobHandle,
  type OutputStream,
  type Phase,
  type PhaseOutcome,
  type TreeEntry,
} from '../executor.js';
import { listArchive } from './archive.js';
import { toInterruptExecBody, toPhaseExecBody } from './convert.js';
import { DockerApiError } from './daemon-errors.js';
import {
  ROOT,
  phaseScriptEntry,
  readContainerFile,
  removeContainer,
  uploadArchive,
} from './engine-calls.js';
import type { EngineClient } from './engine-client.js';
import { StreamDemuxer } from './stream-demux.js';

export class DockerJob implements JobHandle {
  private destroying: Promise<void> | undefined;

  constructor(
    private readonly engine: EngineClient,
    readonly containerId: string,
    readonly containerName: string,
    private readonly home: string,
    readonly warnings: readonly string[],
    private readonly preloaded: Set<string>,
  ) {}

  async runPhase(
    phase: Phase,
    onOutput: (stream: OutputStream, chunk: Buffer) => void | Promise<void>,
  ): Promise<PhaseOutcome> {
    const script = phaseScriptEntry(phase.script);
    if (!this.preloaded.has(script.name)) {
      await uploadArchive(
        this.engine,
        this.containerId,
        [script],
        `the script of phase ${phase.name}`,
      );
      this.preloaded.add(script.name);
    }
    const scriptPath = `/${script.name}`;
    const exec = await this.engine.json<{ Id: string }>(
      'POST',
      `/containers/${this.containerId}/exec`,
      {
        body: toPhaseExecBody(scriptPath, { ...phase.env, HOME: this.home }, phase.workingDir),
      },
    );
    const res = await this.engine.stream('POST', `/exec/${exec.Id}/start`, {
      body: { Detach: false, Tty: false },
    });
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
        }
      });
      // The stream ends when the phase's process exits (or the container is killed).
      res.on('end', resolve);
      res.on('close', resolve);
      res.on('error', () => resolve());
    });
    return { exitCode: await this.exitCodeOf(exec.Id) };
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

  readFile(containerPath: string): Promise<Buffer | null> {
    return readContainerFile(this.engine, this.containerId, containerPath, 64 * 1024 * 1024);
  }

  async exportWorkspace(file: string): Promise<void> {
    const res = await this.engine.stream('GET', `/containers/${this.containerId}/archive`, {
      query: { path: WORKSPACE_DIR },
    });
    await mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
    await pipeline(res, createWriteStream(file, { mode: 0o600 }));
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
    await uploadArchive(
      this.engine,
      this.containerId,
      [{ kind: 'file', name: containerPath.replace(/^\//, ''), mode: 0o644, owner: ROOT, content }],
      containerPath,
    );
  }

  async interrupt(): Promise<void> {
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
    this.destroying ??= removeContainer(this.engine, this.containerId);
    return this.destroying;
  }
}
