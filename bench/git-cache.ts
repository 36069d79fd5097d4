/**
 * The worker's repository cache against a plain clone: the same repository (2,000 files of
 * about 2 KB, 31 commits), checked out by `RepositoryCache.checkout` with a warm cache (a fetch
 * that brings nothing new, then `read-tree -u`) and by `git clone` + `git checkout` as the worker
 * did before the cache, interleaved. Over file:// on this machine, so the figures are git's and
 * the disk's work, no network: over a network the clone pays the whole transfer on every run.
 * BENCH_ROUNDS (default 7).
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { currentLauncherId, isLauncherAlive } from '../src/launcher/launcher-identity.js';
import { RepositoryCache } from '../src/worker/repository-cache.js';

const rounds = Number(process.env.BENCH_ROUNDS ?? 7);

/** A bare repository of 2,000 files and 31 commits; its path. */
function makeRepository(root: string): string {
  const work = path.join(root, 'work');
  execFileSync('git', ['init', '--quiet', '--initial-branch=main', work]);
  const git = (args: string[]): void => {
    execFileSync('git', ['-C', work, '-c', 'user.name=b', '-c', 'user.email=b@b.invalid', ...args]);
  };
  for (let d = 0; d < 40; d += 1) {
    mkdirSync(path.join(work, `module${d}`));
    for (let f = 0; f < 50; f += 1)
      writeFileSync(
        path.join(work, `module${d}`, `file${f}.tf`),
        `resource "null_resource" "r${d}_${f}" { v = "${'x'.repeat(2000)}${d * 50 + f}" }\n`,
      );
  }
  git(['add', '-A']);
  git(['commit', '--quiet', '-m', 'first']);
  for (let c = 0; c < 30; c += 1) {
    writeFileSync(path.join(work, `module${c}`, 'file0.tf'), `changed ${c}\n`);
    git(['commit', '--quiet', '-am', `change ${c}`]);
  }
  const bare = path.join(root, 'repository.git');
  execFileSync('git', ['clone', '--quiet', '--bare', work, bare]);
  return bare;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] as number;
}

const root = mkdtempSync(path.join(tmpdir(), 'berth-bench-git-'));
try {
  const url = `file://${makeRepository(root)}`;
  const cache = new RepositoryCache({
    dir: path.join(root, 'cache'),
    checkoutsDir: path.join(root, 'checkouts'),
    owner: currentLauncherId(),
    isOwnerAlive: isLauncherAlive,
    env: process.env,
  });
  const viaCache = async (): Promise<number> => {
    const into = path.join(mkdtempSync(path.join(root, 'checkout-')), 'source');
    const started = performance.now();
    await cache.checkout({
      repository: url,
      branch: 'main',
      commit: null,
      credentials: { kind: 'none' },
      allowFileTransport: true,
      into,
    });
    return performance.now() - started;
  };
  const viaClone = (): number => {
    const into = path.join(mkdtempSync(path.join(root, 'clone-')), 'source');
    const started = performance.now();
    execFileSync('git', ['clone', '--quiet', '--no-checkout', '--', url, into]);
    execFileSync('git', ['-C', into, 'checkout', '--quiet', '--detach', 'origin/main']);
    return performance.now() - started;
  };
  const cold = await viaCache();
  const warm: number[] = [];
  const clone: number[] = [];
  for (let i = 0; i < rounds; i += 1) {
    clone.push(viaClone());
    warm.push(await viaCache());
  }
  const result = {
    coldCacheMs: Math.round(cold),
    warmCacheMedianMs: Math.round(median(warm)),
    cloneMedianMs: Math.round(median(clone)),
    warmOverClone: Number((median(warm) / median(clone)).toFixed(2)),
  };
  console.log(`git-cache: ${JSON.stringify(result)}`);
} finally {
  rmSync(root, { recursive: true, force: true });
}
