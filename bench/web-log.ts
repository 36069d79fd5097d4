/**
 * The web page following a run's log, end to end: a real `berth server`, a real `berth worker`
 * on the engine, and Debian's chromium (headless, playwright-core) on the run page.
 *
 *   1. Latency: a task writes a line with its own time stamp (the kernel's uptime, shared by the
 *      container and this machine, 10 ms resolution) every 200 ms; the page records when each
 *      line is drawn (a MutationObserver). Reports p50/p95/max of drawn - written over
 *      BENCH_LINES lines (30). Target: < 250 ms on loopback.
 *   2. 50 MB: a task writes 50 MB of coloured lines; while the page follows it, the page's main
 *      thread is probed (the longest gap between 50 ms timer ticks, and this process's
 *      round trips to the page) and the lines the page holds are counted (bounded window).
 *
 * Needs a Docker engine (DOCKER_HOST), the built dist/ and /usr/bin/chromium.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { chromium, type Page } from 'playwright-core';
import { ApiClient } from '../src/api/client.js';
import { BERTH_BIN, benchImage, percentile } from './common.js';

const LINES = Number(process.env.BENCH_LINES ?? 30);
const BIG_BYTES = Number(process.env.BENCH_BIG_BYTES ?? 50 * 1024 * 1024);
const root = mkdtempSync(path.join(tmpdir(), 'berth-bench-web-'));
const children: ChildProcess[] = [];

function start(args: string[], env: Record<string, string>): ChildProcess {
  const child = spawn(process.execPath, [BERTH_BIN, ...args], {
    env: { ...process.env, NO_COLOR: '1', ...env },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  children.push(child);
  return child;
}

function said(child: ChildProcess, pattern: RegExp): Promise<string> {
  let text = '';
  return new Promise((resolve, reject) => {
    child.stderr?.on('data', (chunk: Buffer) => {
      text += chunk.toString();
      const match = pattern.exec(text);
      if (match) resolve(match[1] ?? match[0]);
    });
    child.on('exit', (code) => reject(new Error(`berth exited (${code}): ${text}`)));
  });
}

function stack(task: string): string {
  const dir = mkdtempSync(path.join(root, 'stack-'));
  mkdirSync(path.join(dir, '.berth'));
  writeFileSync(path.join(dir, '.berth', 'task.sh'), task);
  return dir;
}

/** Milliseconds to add to this machine's uptime (seconds) to get the wall clock. */
function uptimeOffsetMs(): number {
  const uptime = Number(readFileSync('/proc/uptime', 'utf8').split(' ')[0]);
  return Date.now() - uptime * 1000;
}

/** Polls an expression in the page (the page's CSP forbids Playwright's own eval-based wait). */
async function waitFor(page: Page, expression: string, timeoutMs: number): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!(await page.evaluate<boolean>(expression))) {
    if (Date.now() > until) throw new Error(`still not ${expression} after ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

const server = start(
  ['server', '--listen', '127.0.0.1:0', '--data-dir', path.join(root, 'data')],
  {},
);
const admin = await said(server, /admin token \(shown once, keep it\): (\S+)/);
const url = await said(server, /listening on (http:\/\/\S+)/);
const api = new ApiClient(url, admin);
const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: ['--no-sandbox'],
});
try {
  const pool = await api.createPool({ id: 'bench', kind: 'private', pullPolicy: 'never' });
  const worker = start(['worker', '--server', url], {
    BERTH_POOL_TOKEN: pool.token,
    BERTH_STATE_DIR: path.join(root, 'worker'),
  });
  await said(worker, /registered in pool/);
  const image = await benchImage();
  await api.createStack({
    id: 'latency',
    localDir: stack(
      `i=0; while [ $i -lt ${LINES} ]; do read up idle < /proc/uptime; echo "mark $i $up"; i=$((i+1)); sleep 0.2; done\n`,
    ),
    runnerImage: image,
    pool: 'bench',
  });
  await api.createStack({
    id: 'big',
    localDir: stack(
      `yes "$(printf 'a line of output \\033[32mwith colour\\033[0m and some padding to make it longer 0123456789')" | head -c ${BIG_BYTES}; echo; echo big-done\n`,
    ),
    runnerImage: image,
    pool: 'bench',
  });

  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  await page.goto(`${url}/ui/`);
  await page.getByLabel('Token').fill(admin);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('heading', { name: 'Stacks' }).waitFor();

  // 1. Latency of a line, written to drawn.
  const offset = uptimeOffsetMs();
  const run = await api.trigger('latency', { type: 'task' });
  await page.goto(`${url}/ui/runs/${run.id}`);
  await page.evaluate(`
    window.__seen = [];
    new MutationObserver(() => {
      const now = Date.now();
      for (const line of document.querySelectorAll('.log .line:not([data-seen])')) {
        const m = /mark (\\d+) ([\\d.]+)/.exec(line.textContent);
        if (m) { line.setAttribute('data-seen', ''); window.__seen.push([Number(m[1]), Number(m[2]), now]); }
      }
    }).observe(document.body, { childList: true, subtree: true, characterData: true });
  `);
  await waitFor(page, `window.__seen.length >= ${LINES}`, 120_000);
  const seen = await page.evaluate<[number, number, number][]>('window.__seen');
  // Lines drawn in the page's first catch-up (written before it was listening) are not latency.
  const live = seen.slice(3).map(([, up, drawn]) => drawn - (up * 1000 + offset));
  console.log(
    `web log latency (job writes a line -> the page draws it), ${live.length} lines: p50 ${percentile(live, 50).toFixed(0)} ms  p95 ${percentile(live, 95).toFixed(0)} ms  max ${Math.max(...live).toFixed(0)} ms  (target < 250 ms; clock resolution 10 ms)`,
  );

  // 2. 50 MB followed live: the page stays responsive and holds a bounded window of lines. First
  // the same probe on an idle page for as long: what this machine's load alone costs.
  const probe = `
    window.__gap = 0; let last = performance.now();
    setInterval(() => { const now = performance.now(); window.__gap = Math.max(window.__gap, now - last - 50); last = now; }, 50);
  `;
  await page.goto(`${url}/ui/`);
  await page.evaluate(probe);
  await new Promise((resolve) => setTimeout(resolve, 10_000));
  const idleGap = await page.evaluate<number>('window.__gap');
  const big = await api.trigger('big', { type: 'task' });
  const started = performance.now();
  await page.goto(`${url}/ui/runs/${big.id}`);
  await page.evaluate(probe);
  const roundTrips: number[] = [];
  for (;;) {
    const t = performance.now();
    const done = await page.evaluate<boolean>(
      `document.querySelector('.log')?.textContent.includes('big-done') ?? false`,
    );
    roundTrips.push(performance.now() - t);
    if (done) break;
    if (performance.now() - started > 600_000)
      throw new Error('the 50 MB run did not end in 10 min');
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  const seconds = (performance.now() - started) / 1000;
  const gap = await page.evaluate<number>('window.__gap');
  const lines = await page.evaluate<number>(`document.querySelectorAll('.log .line').length`);
  const heap = await page.evaluate<number>(
    'performance.memory ? performance.memory.usedJSHeapSize : 0',
  );
  console.log(
    `web log 50 MB: followed to its end in ${seconds.toFixed(1)} s; page main thread: longest stall ${gap.toFixed(0)} ms (idle page on this machine, 10 s: ${idleGap.toFixed(0)} ms), round trips p50 ${percentile(roundTrips, 50).toFixed(0)} ms p95 ${percentile(roundTrips, 95).toFixed(0)} ms max ${Math.max(...roundTrips).toFixed(0)} ms; lines held ${lines}; JS heap ${(heap / 1048576).toFixed(0)} MiB`,
  );
} finally {
  await browser.close();
  for (const child of children.reverse()) {
    if (child.exitCode !== null) continue;
    const exited = new Promise((resolve) => child.on('exit', resolve));
    child.kill('SIGTERM');
    await exited;
  }
  rmSync(root, { recursive: true, force: true });
}
