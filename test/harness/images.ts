/**
 * Images the tests build for themselves (no registry is reachable): a busybox image made from
 * Debian's busybox-static in well under a second, and images built on top of it. Every image is
 * named after a hash of what went into it, so repeated runs reuse it.
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, mkdir, rm, symlink, writeFile, copyFile, chmod } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { execFileSync, spawn } from 'node:child_process';
import type { EngineClient } from '../../src/executor/docker/engine-client.js';
import { readAll } from '../../src/executor/docker/engine-client.js';
import { DockerApiError } from '../../src/executor/docker/daemon-errors.js';
import { buildImage } from '../../src/executor/docker/image-build.js';
import { imageExists, tagImage } from './engine.js';

export const BUSYBOX = '/bin/busybox';

function hash(...parts: (string | Buffer)[]): string {
  const h = createHash('sha256');
  for (const part of parts) h.update(part);
  return h.digest('hex').slice(0, 16);
}

export function requireBusybox(): void {
  if (
    !existsSync(BUSYBOX) ||
    !execFileSync(BUSYBOX, ['--list'], { encoding: 'utf8' }).includes('sh')
  ) {
    throw new Error(
      `the tests make their images from a static busybox at ${BUSYBOX}: install it with \`apt-get install -y busybox-static\` (or run \`sudo bash .ci/run\`, which installs everything the tests need)`,
    );
  }
}

/** Imports a root filesystem directory as an image (like `tar -C DIR -c . | docker import -`). */
export async function importRootfs(
  engine: EngineClient,
  rootfs: string,
  repo: string,
  tag: string,
  change?: string,
): Promise<void> {
  // tar(1) keeps device nodes, hard links and ownership exactly as debootstrap made them.
  const tar = spawn('tar', ['--numeric-owner', '-C', rootfs, '-c', '.'], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const exited = new Promise<number | null>((resolve) => tar.on('close', resolve));
  const res = await engine.stream('POST', '/images/create', {
    query: { fromSrc: '-', repo, tag, changes: change },
    body: tar.stdout,
    contentType: 'application/x-tar',
    deadlineMs: 300_000,
  });
  const text = await readAll(res);
  const code = await exited;
  if (code !== 0 || text.includes('"error"'))
    throw new Error(`import of ${repo}:${tag} failed (tar exit ${code}): ${text}`);
}

/** The label the busybox test image is imported with: the hash its name carries. */
const BUSYBOX_LABEL = 'berth-test.busybox';

/** An image's id and labels, or null when the engine has none under `reference`. */
export async function imageInspect(
  engine: EngineClient,
  reference: string,
): Promise<{ Id: string; Config?: { Labels?: Record<string, string> | null } } | null> {
  try {
    return await engine.json('GET', `/images/${encodeURI(reference)}/json`);
  } catch (err) {
    if (err instanceof DockerApiError && err.status === 404) return null;
    throw err;
  }
}

async function imageLabels(
  engine: EngineClient,
  reference: string,
): Promise<Record<string, string> | null> {
  return (await imageInspect(engine, reference))?.Config?.Labels ?? null;
}

/** The busybox image most tests run on: sh and the usual tools, no passwd entry for 1983. */
export async function ensureBusyboxImage(engine: EngineClient): Promise<string> {
  requireBusybox();
  const binary = readFileSync(BUSYBOX);
  const id = hash(binary, 'v1');
  const reference = `berth-test/busybox:${id}`;
  // Ours only if it carries our label: on an engine kept between runs, a bug may have put
  // another image under this name (berth once built its runner image over a default image);
  // then it is imported again, and the images built FROM it get new names (ensureBuiltImage).
  if ((await imageLabels(engine, reference))?.[BUSYBOX_LABEL] === id) return reference;
  const dir = await mkdtemp(path.join(tmpdir(), 'berth-busybox-'));
  try {
    for (const sub of ['bin', 'etc', 'tmp', 'root']) await mkdir(path.join(dir, sub));
    await chmod(path.join(dir, 'tmp'), 0o1777);
    await copyFile(BUSYBOX, path.join(dir, 'bin', 'busybox'));
    const applets = execFileSync(BUSYBOX, ['--list'], { encoding: 'utf8' })
      .split('\n')
      .filter(Boolean);
    for (const applet of applets) {
      if (applet !== 'busybox') await symlink('busybox', path.join(dir, 'bin', applet));
    }
    await writeFile(
      path.join(dir, 'etc', 'passwd'),
      'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n',
    );
    await writeFile(path.join(dir, 'etc', 'group'), 'root:x:0:\nnogroup:x:65534:\n');
    const [repo, tag] = reference.split(':') as [string, string];
    await importRootfs(engine, dir, repo, tag, `LABEL ${BUSYBOX_LABEL}=${id}`);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  return reference;
}

/**
 * Builds an image from a Dockerfile text (FROM one of the test images) and files, named by content.
 */
export async function ensureBuiltImage(
  engine: EngineClient,
  name: string,
  dockerfile: string,
  files: Record<string, string> = {},
): Promise<string> {
  // Named by content, the base image's id included: a base that changed is built on again.
  const base = /^FROM\s+(\S+)/m.exec(dockerfile)?.[1];
  const baseId = base ? ((await imageInspect(engine, base))?.Id ?? '') : '';
  const reference = `berth-test/${name}:${hash(dockerfile, JSON.stringify(files), baseId)}`;
  if (await imageExists(engine, reference)) return reference;
  const dir = await mkdtemp(path.join(tmpdir(), 'berth-build-'));
  try {
    await writeFile(path.join(dir, 'Dockerfile'), dockerfile);
    for (const [file, content] of Object.entries(files))
      await writeFile(path.join(dir, file), content);
    await buildImage(engine, { contextDir: dir, tag: reference }, () => undefined);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  return reference;
}

/**
 * An image as a user's own build is: made on this machine from `base` (no registry origin, never
 * pulled), tagged `repository:tag`; `name` keeps each test file's build its own.
 */
export async function ensureLocalOnlyImage(
  engine: EngineClient,
  name: string,
  base: string,
  repository: string,
  tag: string,
): Promise<void> {
  const built = await ensureBuiltImage(engine, name, `FROM ${base}\nLABEL built.here=yes\n`);
  await tagImage(engine, built, repository, tag);
}
