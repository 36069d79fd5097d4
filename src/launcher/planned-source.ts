/**
 * The runtime configuration a confirmed plan ran with, for its apply. A stack whose source is a
 * directory on the worker's machine stays live between plan and apply: whoever may write there
 * could change the workflow's apply commands or hooks after the plan was reviewed. (A repository
 * stack is checked out at the run's commit again, so its configuration is the planned one.) The
 * saved workspace holds the source as the plan saw it: its configuration and workflow files, and
 * its directories (the project root is checked to be one), are taken from there. The
 * workspace's other files, and what the job wrote, stay in the archive the apply restores.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { BerthError } from '../domain/errors.js';
import { formatBytes } from '../domain/units.js';
import { readArchiveFiles } from '../executor/docker/archive.js';
import { JOB_FILE_LIMIT } from './job-files.js';
import { CONFIG_FILES, WORKFLOW_FILES } from './run-config.js';
import type { SealedArchive } from './sealed-archive.js';

/**
 * The saved workspace's tar names start with the workspace directory's own name; the source is
 * its `source` directory (/mnt/workspace/source).
 */
const ROOT = ['workspace', 'source'];

/** A name of the archive as a path in the source ('' for its root); null if it is not in it. */
function below(name: string): string | null {
  const parts = name.split('/').filter((part) => part !== '');
  if (ROOT.some((part, i) => parts[i] !== part)) return null;
  if (parts.some((part) => part === '..' || part === '.')) return null;
  return parts.slice(ROOT.length).join('/');
}

/** Writes the planned configuration into `into` (made here), a source directory for planRun. */
export async function extractPlannedSource(archive: SealedArchive, into: string): Promise<void> {
  const wanted = new Set(
    [...CONFIG_FILES, ...WORKFLOW_FILES].map((file) => file.split(path.sep).join('/')),
  );
  const { directories, files, refused } = await readArchiveFiles(
    await archive.open(),
    (name) => wanted.has(below(name) ?? ''),
    JOB_FILE_LIMIT,
  );
  // The plan read it as a regular file of at most the limit (readJobFile), so this is not what
  // the plan read: no apply with other configuration than the reviewed one.
  if (refused.length > 0)
    throw new BerthError(
      'BERTH_SAVED_WORKSPACE_INVALID',
      `the saved workspace's ${refused.map((name) => below(name) ?? name).join(', ')} is not a regular file of at most ${formatBytes(JOB_FILE_LIMIT)} (a link, or larger): the apply cannot take the configuration its plan ran with from it`,
      {
        hint: "Discard the run and trigger a new one; keep the runtime configuration and workflow files regular files in the stack's directory.",
      },
    );
  await mkdir(into, { recursive: true, mode: 0o700 });
  for (const name of directories) {
    const relative = below(name);
    if (relative) await mkdir(path.join(into, relative), { recursive: true, mode: 0o700 });
  }
  for (const [name, content] of files) {
    const file = path.join(into, below(name) as string);
    await mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
    await writeFile(file, content, { mode: 0o600 });
  }
}
