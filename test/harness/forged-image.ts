/**
 * Images whose configuration says what an attacker wants it to say (an architecture with `../`
 * in it, say): the tests' busybox image saved from the engine, its configuration changed, and
 * loaded back under a new name, exactly as `docker load` of a tenant's tarball would.
 */
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import tar from 'tar-stream';
import type { EngineClient } from '../../src/executor/docker/engine-client.js';
import { readAll } from '../../src/executor/docker/engine-client.js';

async function entriesOf(stream: Readable): Promise<Map<string, Buffer>> {
  const extract = tar.extract();
  const files = new Map<string, Buffer>();
  const reading = (async () => {
    for await (const entry of extract) {
      const chunks: Buffer[] = [];
      for await (const chunk of entry) chunks.push(chunk as Buffer);
      if (entry.header.type === 'file') files.set(entry.header.name, Buffer.concat(chunks));
    }
  })();
  stream.pipe(extract);
  await reading;
  return files;
}

/** Loads `source` again as `reference`, with `change` applied to its image configuration. */
export async function loadForgedImage(
  engine: EngineClient,
  source: string,
  reference: string,
  change: (config: Record<string, unknown>) => void,
): Promise<void> {
  const saved = await engine.stream('GET', `/images/${encodeURI(source)}/get`, {
    deadlineMs: 120_000,
  });
  const files = await entriesOf(saved);
  const manifest = JSON.parse((files.get('manifest.json') as Buffer).toString('utf8')) as {
    Config: string;
    RepoTags: string[] | null;
    Layers: string[];
  }[];
  const entry = manifest[0] as (typeof manifest)[number];
  const config = JSON.parse((files.get(entry.Config) as Buffer).toString('utf8')) as Record<
    string,
    unknown
  >;
  change(config);
  const configText = Buffer.from(JSON.stringify(config));
  const configName = `${createHash('sha256').update(configText).digest('hex')}.json`;
  const pack = tar.pack();
  const add = (name: string, content: Buffer): void => {
    pack.entry({ name, size: content.length, mode: 0o644 }, content);
  };
  add(configName, configText);
  for (const layer of entry.Layers) add(layer, files.get(layer) as Buffer);
  add(
    'manifest.json',
    Buffer.from(
      JSON.stringify([{ Config: configName, RepoTags: [reference], Layers: entry.Layers }]),
    ),
  );
  pack.finalize();
  const res = await engine.stream('POST', '/images/load', {
    query: { quiet: 1 },
    body: Readable.from(pack),
    contentType: 'application/x-tar',
    deadlineMs: 120_000,
  });
  const text = await readAll(res);
  if (text.includes('"error"')) throw new Error(`loading ${reference} failed: ${text}`);
}
