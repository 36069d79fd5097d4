import {
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { newRunId } from './run-job.js';
import {
  DEFAULT_KEEP_RUNS,
  LAUNCHER_FILE,
  claimRunDirectory,
  keepRunsFrom,
  pruneRunDirectories,
} from './run-history.js';

const dirs: string[] = [];

afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

const now = new Date('2026-12-01T12:00:00Z');
const daysAgo = (days: number): Date => new Date(now.getTime() - days * 24 * 3600_000);

/** A state directory with a run directory (and its log) per time, modified at that time. */
function stateDir(runs: { at: Date; modified?: Date }[]): { dir: string; ids: string[] } {
  const dir = mkdtempSync(path.join(tmpdir(), 'berth-run-history-'));
  dirs.push(dir);
  const ids = runs.map(({ at, modified }) => {
    const id = newRunId(at);
    const runDir = path.join(dir, 'runs', id);
    mkdirSync(runDir, { recursive: true });
    writeFileSync(path.join(runDir, 'output.log'), 'log\n');
    const when = modified ?? at;
    utimesSync(path.join(runDir, 'output.log'), when, when);
    utimesSync(runDir, when, when);
    return id;
  });
  return { dir, ids };
}

const left = (dir: string): string[] => readdirSync(path.join(dir, 'runs')).sort();

describe('the run directories berth run keeps (BERTH_KEEP_RUNS)', () => {
  it('keeps the newest, this run counted among them, and removes the older ones', async () => {
    const { dir, ids } = stateDir([5, 4, 3, 2].map((d) => ({ at: daysAgo(d) })));
    const { removed, failed } = await pruneRunDirectories(dir, 3, now);
    // Three kept, this run's (not made yet) one of them: the two newest stay.
    expect(left(dir)).toEqual([ids[2], ids[3]]);
    expect(removed.map((d) => path.basename(d)).sort()).toEqual([ids[0], ids[1]]);
    expect(failed).toEqual([]);
  });

  it("never removes a directory modified within the last day (another berth's run going on), nor what berth did not name", async () => {
    const { dir, ids } = stateDir([
      { at: daysAgo(9), modified: new Date(now.getTime() - 3600_000) },
      { at: daysAgo(8) },
      { at: daysAgo(1) },
    ]);
    mkdirSync(path.join(dir, 'runs', 'my-notes'));
    await pruneRunDirectories(dir, 1, now);
    expect(left(dir)).toEqual([ids[0], 'my-notes']);
  });

  it('never removes the directory of a berth process still alive (a plan waiting days for its answer)', async () => {
    const { dir, ids } = stateDir([3, 2, 1].map((d) => ({ at: daysAgo(d) })));
    const claim = async (id: string, launcher: string) => {
      await claimRunDirectory(dir, id, launcher);
      const runDir = path.join(dir, 'runs', id);
      for (const file of [path.join(runDir, LAUNCHER_FILE), runDir])
        utimesSync(file, daysAgo(3), daysAgo(3));
    };
    await claim(ids[0] as string, 'live-launcher');
    await claim(ids[1] as string, 'gone-launcher');
    await pruneRunDirectories(dir, 1, now, (launcher) => launcher === 'live-launcher');
    expect(left(dir)).toEqual([ids[0]]);
    expect(readFileSync(path.join(dir, 'runs', ids[0] as string, LAUNCHER_FILE), 'utf8')).toBe(
      'live-launcher\n',
    );
  });

  it('keeps everything with `all`, and does nothing without a runs directory', async () => {
    const { dir, ids } = stateDir([3, 2, 1].map((d) => ({ at: daysAgo(d) })));
    expect(await pruneRunDirectories(dir, null, now)).toEqual({ removed: [], failed: [] });
    expect(left(dir)).toEqual(ids);
    const empty = mkdtempSync(path.join(tmpdir(), 'berth-run-history-'));
    dirs.push(empty);
    expect(await pruneRunDirectories(empty, 1, now)).toEqual({ removed: [], failed: [] });
  });

  it('says which directory it could not remove, and why, instead of failing the run', async () => {
    // Something berth cannot take for a run's directory under a run's name (root removes
    // whatever the modes say, so modes would not do as a test).
    const { dir, ids } = stateDir([{ at: daysAgo(3) }, { at: daysAgo(2) }]);
    const blocked = path.join(dir, 'runs', ids[0] as string);
    rmSync(blocked, { recursive: true });
    writeFileSync(blocked, 'not a directory');
    const { removed, failed } = await pruneRunDirectories(dir, 1, now);
    expect(failed).toEqual([
      { dir: blocked, why: expect.stringMatching(/^ENOTDIR: not a directory/) as unknown },
    ]);
    expect(removed).toEqual([path.join(dir, 'runs', ids[1] as string)]);
    expect(left(dir)).toEqual([ids[0]]);
  });

  it('reads BERTH_KEEP_RUNS: a count of 1 or more, or all; anything else is refused with its value', () => {
    expect(keepRunsFrom({})).toBe(DEFAULT_KEEP_RUNS);
    expect(keepRunsFrom({ BERTH_KEEP_RUNS: ' 5 ' })).toBe(5);
    expect(keepRunsFrom({ BERTH_KEEP_RUNS: 'all' })).toBeNull();
    for (const bad of ['0', '-1', '2.5', 'many', '1e3']) {
      expect(() => keepRunsFrom({ BERTH_KEEP_RUNS: bad })).toThrow(
        `BERTH_KEEP_RUNS="${bad}" is not a number of runs (1 or more) nor \`all\``,
      );
    }
  });
});
