/**
 * Builds an image from a directory with the engine's own builder (POST /build). berth uses it for
 * its standard runner image; the tests use it for the images they need.
 */
import { BerthError } from '../../domain/errors.js';
import { createArchive } from './archive.js';
import { DockerApiError, errorText, isDiskFull } from './daemon-errors.js';
import { readJsonLines, type EngineClient } from './engine-client.js';

export interface BuildOptions {
  contextDir: string;
  tag: string;
  /** `host` lets RUN steps reach package mirrors on engines started with --iptables=false. */
  networkMode?: string;
  /** Ask the engine to pull a newer base image first. */
  pull?: boolean;
  labels?: Record<string, string>;
  timeoutMs?: number;
}

/** Builds and returns the new image's id. Build output is handed to `onLine` line by line. */
export async function buildImage(
  engine: EngineClient,
  options: BuildOptions,
  onLine: (line: string) => void,
): Promise<string> {
  const context = createArchive([
    { kind: 'tree', name: '.', sourceDir: options.contextDir, owner: { uid: 0, gid: 0 } },
  ]);
  let imageId: string | undefined;
  let partial = '';
  try {
    const [res] = await Promise.all([
      engine.stream('POST', '/build', {
        query: {
          t: options.tag,
          networkmode: options.networkMode,
          pull: options.pull ? 1 : undefined,
          rm: 1,
          forcerm: 1,
          labels: options.labels ? JSON.stringify(options.labels) : undefined,
        },
        body: context.stream,
        deadlineMs: options.timeoutMs ?? 30 * 60_000,
      }),
      context.done,
    ]);
    await readJsonLines(res, (message) => {
      if (typeof message.error === 'string') throw new Error(message.error);
      const aux = message.aux as { ID?: string } | undefined;
      if (aux?.ID) imageId = aux.ID;
      if (typeof message.stream === 'string') {
        const text = partial + message.stream;
        const lines = text.split('\n');
        partial = lines.pop() ?? '';
        for (const line of lines) if (line.trim()) onLine(line);
      }
    });
  } catch (err) {
    const text = err instanceof DockerApiError ? err.engineMessage : errorText(err);
    throw new BerthError(
      isDiskFull(text) ? 'BERTH_DISK_FULL' : 'BERTH_RUNNER_IMAGE_BUILD_FAILED',
      `building ${options.tag} failed: ${text}`,
      {
        cause: err,
      },
    );
  }
  if (partial.trim()) onLine(partial);
  if (!imageId) {
    const inspect = await engine.json<{ Id: string }>(
      'GET',
      `/images/${encodeURI(options.tag)}/json`,
    );
    imageId = inspect.Id;
  }
  return imageId;
}
