/**
 * A JobUserCache kept on disk in berth's state directory, so separate `berth run` processes skip
 * reading /etc/passwd out of an image they have seen before. Entries are keyed by image id (a
 * content digest) and never go stale; an unreadable entry is simply read again from the image.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { PasswdEntry } from '../executor/docker/convert.js';
import type { HomeState, JobUserCache } from '../executor/docker/docker-executor.js';

export class FileJobUserCache implements JobUserCache {
  constructor(private readonly dir: string) {}

  private file(imageId: string): string {
    return path.join(this.dir, `${imageId.replace(/^sha256:/, '')}.json`);
  }

  private async read(imageId: string): Promise<{ entry?: PasswdEntry | null; home?: HomeState }> {
    try {
      return JSON.parse(await readFile(this.file(imageId), 'utf8')) as {
        entry?: PasswdEntry | null;
        home?: HomeState;
      };
    } catch {
      return {};
    }
  }

  async get(imageId: string): Promise<PasswdEntry | null | undefined> {
    return (await this.read(imageId)).entry;
  }

  async set(imageId: string, entry: PasswdEntry | null): Promise<void> {
    await this.write(imageId, { ...(await this.read(imageId)), entry });
  }

  async getHome(imageId: string): Promise<HomeState | undefined> {
    const { home } = await this.read(imageId);
    return home === 'absent' || home === 'fine' || home === 'other' ? home : undefined;
  }

  async setHome(imageId: string, home: HomeState): Promise<void> {
    await this.write(imageId, { ...(await this.read(imageId)), home });
  }

  private async write(
    imageId: string,
    record: { entry?: PasswdEntry | null; home?: HomeState },
  ): Promise<void> {
    const target = this.file(imageId);
    // Two writes of one process at once (the passwd entry, the HOME) each have their own.
    const temp = `${target}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
    try {
      await mkdir(this.dir, { recursive: true, mode: 0o700 });
      await writeFile(temp, JSON.stringify(record), { mode: 0o600 });
      await rename(temp, target);
    } catch {
      // A cache that cannot be written (a full disk) only costs the next run one read.
      await rm(temp, { force: true }).catch(() => undefined);
    }
  }
}
