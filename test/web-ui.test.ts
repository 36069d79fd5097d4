/**
 * The web page in a real browser (Debian's chromium, headless, driven by playwright-core; no
 * browser is ever downloaded) against a real `berth server` and a real `berth worker` on the real
 * engine: sign in, trigger runs from the page and watch their log live while the job still runs,
 * the plan summary, a log with markup and terminal colours shown as coloured text, a secret that
 * never reaches the page or any of its responses, a public pool's refusal shown with its reason,
 * draining a worker. axe-core checks every page (no serious or critical violations), the page
 * keeps its Content-Security-Policy (no violation reported), and the screenshots in docs/images/
 * are taken here, of pages whose content the test has checked.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';
import {
  chromium,
  type Browser,
  type BrowserContext,
  type Page,
  type Response,
} from 'playwright-core';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import { ApiClient } from '../src/api/client.js';
import type { EngineClient } from '../src/executor/docker/engine-client.js';
import { expectNoBerthContainers } from './harness/cleanup.js';
import { BERTH_BIN } from './harness/cli.js';
import { berthContainers, testEngine, touchInContainer } from './harness/engine.js';
import { recordLauncherPid, tempDir } from './harness/ownership.js';
import { until } from './harness/until.js';

const IMAGES = fileURLToPath(new URL('../docs/images/', import.meta.url));
const AXE_SOURCE = readFileSync(
  createRequire(import.meta.url).resolve('axe-core/axe.min.js'),
  'utf8',
);
const SECRET = 'hunter2-web-secret-7f3a9c';
/** A flag only this file's chromium carries: how the test finds its processes afterwards. */
const MARKER = `--berth-web-test=${process.pid}-${Date.now()}`;

let engine: EngineClient;
let browser: Browser;
let context: BrowserContext;
let page: Page;
let url = '';
let admin = '';
let client: ApiClient;
const processes: ChildProcess[] = [];
/** Every response the page received, with its body (for the secret check). */
const bodies: Promise<string>[] = [];
const cspViolations: string[] = [];

/** What each started process has written to stderr so far, whole. */
const transcripts = new WeakMap<ChildProcess, { text: string }>();

function startBerth(args: string[], env: Record<string, string>): ChildProcess {
  const child = spawn(process.execPath, [BERTH_BIN, ...args], {
    env: { ...process.env, NO_COLOR: '1', ...env },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  if (child.pid !== undefined) recordLauncherPid(child.pid);
  processes.push(child);
  const transcript = { text: '' };
  transcripts.set(child, transcript);
  child.stderr?.on('data', (chunk: Buffer) => (transcript.text += chunk.toString()));
  return child;
}

/**
 * The first match of `pattern` in everything `child` has said, waiting for it if need be. It
 * reads the whole transcript, not only what arrives after the call: two lines the process wrote
 * together may come in one chunk, before the second wait began.
 */
function said(child: ChildProcess, pattern: RegExp, timeoutMs = 60_000): Promise<RegExpExecArray> {
  const transcript = transcripts.get(child) as { text: string };
  return new Promise((resolve, reject) => {
    const check = (): void => {
      const match = pattern.exec(transcript.text);
      if (!match) return;
      stop();
      resolve(match);
    };
    const exited = (code: number | null): void => {
      stop();
      reject(new Error(`berth exited (${code}) before saying ${pattern}: ${transcript.text}`));
    };
    const timer = setTimeout(() => {
      stop();
      reject(new Error(`berth did not say ${pattern} in ${timeoutMs} ms: ${transcript.text}`));
    }, timeoutMs);
    const stop = (): void => {
      clearTimeout(timer);
      child.stderr?.off('data', check);
      child.off('exit', exited);
    };
    // Listeners added after startBerth's: the transcript already holds the chunk.
    child.stderr?.on('data', check);
    child.on('exit', exited);
    check();
  });
}

function stackDir(files: Record<string, string>): string {
  const dir = tempDir('berth-web-stack-');
  for (const [name, text] of Object.entries(files)) {
    mkdirSync(path.dirname(path.join(dir, name)), { recursive: true });
    writeFileSync(path.join(dir, name), text);
  }
  return dir;
}

/** A CUSTOM workflow whose plan writes markup, colours and a secret, then waits for /tmp/go. */
const WORKFLOW = [
  'init: echo custom-init',
  'plan: sh plan.sh "{{ .PlanFileName }}"',
  'showPlan: cat plan.json',
  'apply: echo "applying $(cat {{.PlanFileName}})"',
  'destroy: echo destroyed',
].join('\n');
const PLAN_SCRIPT = [
  "printf 'first line of the plan\\n'",
  'printf \'<script>window.__xss = 1</script><img src=x onerror="window.__xss = 2"> \\033[31mred text\\033[0m plain\\n\'',
  'echo "secret is $WEB_SECRET"',
  'while [ ! -f /tmp/go ]; do sleep 0.05; done',
  'echo "line after go"',
  'echo planned > "$1"',
  '',
].join('\n');
const PLAN_JSON = JSON.stringify({
  resource_changes: [
    { address: 'a.b', change: { actions: ['create'] } },
    { address: 'a.c', change: { actions: ['update'] } },
    { address: 'a.d', change: { actions: ['delete'] } },
    { address: 'a.e', change: { actions: ['create'] } },
  ],
});

/** axe-core on the page as it is: no serious or critical violation. */
async function expectAccessible(what: string): Promise<void> {
  await page.evaluate(AXE_SOURCE);
  const result = await page.evaluate<{ id: string; impact: string; nodes: number; html: string }[]>(
    'axe.run().then((r) => r.violations.map((v) => ({ id: v.id, impact: v.impact, nodes: v.nodes.length, html: v.nodes[0] && v.nodes[0].html })))',
  );
  expect(
    result.filter((v) => v.impact === 'serious' || v.impact === 'critical'),
    `axe on ${what}`,
  ).toEqual([]);
}

/** Screenshots for the docs, light and dark; the caller has checked what they show. */
async function screenshots(name: string): Promise<void> {
  for (const scheme of ['light', 'dark'] as const) {
    await page.emulateMedia({ colorScheme: scheme });
    await page.screenshot({ path: path.join(IMAGES, `${name}-${scheme}.png`), fullPage: false });
  }
  await page.emulateMedia({ colorScheme: 'light' });
}

/** The page fits a phone's width: nothing scrolls sideways but the tables and the log. */
async function expectFitsPhone(): Promise<void> {
  const size = page.viewportSize();
  await page.setViewportSize({ width: 390, height: 844 });
  const overflow = await page.evaluate<number>(
    'document.documentElement.scrollWidth - window.innerWidth',
  );
  if (size) await page.setViewportSize(size);
  expect(overflow).toBeLessThanOrEqual(0);
}

async function waitForState(state: string | RegExp, timeout = 90_000): Promise<void> {
  await page.locator('.status .badge').filter({ hasText: state }).waitFor({ timeout });
}

async function runningContainer(): Promise<string> {
  for (;;) {
    const running = (await berthContainers(engine)).filter((c) => c.State === 'running');
    if (running.length === 1) return (running[0] as { Id: string }).Id;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** Chromium processes of this file still alive. */
function ourChromiumProcesses(): number[] {
  const found: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (readFileSync(`/proc/${entry}/cmdline`, 'utf8').includes(MARKER))
        found.push(Number(entry));
    } catch {
      // Gone meanwhile.
    }
  }
  return found;
}

beforeAll(async () => {
  engine = testEngine();
  mkdirSync(IMAGES, { recursive: true });
  const server = startBerth(
    ['server', '--listen', '127.0.0.1:0', '--data-dir', tempDir('berth-web-server-')],
    {
      // Heartbeats every 5 s: a cancel reaches the worker soon, and a worker slowed down by the
      // browser's load is not taken for a dead one.
      BERTH_WORKER_LEASE_TIMEOUT: '15s',
    },
  );
  const [, token] = await said(server, /admin token \(shown once, keep it\): (\S+)/);
  admin = token as string;
  url = (await said(server, /listening on (http:\/\/\S+)/))[1] as string;
  client = new ApiClient(url, admin);

  const pool = await client.createPool({
    id: 'builders',
    name: 'Builders',
    kind: 'private',
    pullPolicy: 'never',
  });
  // The test registry's images are allowed at first (its stack is made), not after (below).
  const shared = await client.createPool({
    id: 'shared',
    name: 'Shared',
    kind: 'public',
    allowList: [inject('registryAddress')],
  });
  for (const token of [pool.token, shared.token]) {
    const worker = startBerth(['worker', '--server', url], {
      BERTH_POOL_TOKEN: token,
      BERTH_STATE_DIR: tempDir('berth-web-worker-'),
    });
    await said(worker, /registered in pool/);
  }
  const image = inject('busyboxImage');
  const custom = { tool: 'CUSTOM' as const, runnerImage: image, pool: 'builders' };
  const files = {
    'main.tf': '',
    '.berth/workflow.yml': WORKFLOW,
    'plan.sh': PLAN_SCRIPT,
    'plan.json': PLAN_JSON,
  };
  await client.createStack({
    id: 'network',
    name: 'network',
    localDir: stackDir(files),
    labels: ['team-core'],
    ...custom,
  });
  await client.setVariable('network', 'WEB_SECRET', SECRET, true);
  await client.setVariable('network', 'REGION', 'eu-west-1', false);
  await client.createStack({
    id: 'dns',
    name: 'dns',
    localDir: stackDir(files),
    autoDeploy: true,
    labels: ['team-edge'],
    ...custom,
  });
  await client.createStack({
    id: 'billing',
    name: 'billing',
    localDir: stackDir(files),
    labels: ['team-money'],
    ...custom,
  });
  await client.createStack({
    id: 'on-shared',
    name: 'on-shared',
    repository: 'https://git.example.invalid/on-shared.git',
    branch: 'main',
    runnerImage: inject('registryImage'),
    pool: 'shared',
  });
  await client.updatePool('shared', { allowList: [] });

  browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    headless: true,
    // As root (CI), chromium's own sandbox cannot start.
    args: ['--no-sandbox', MARKER],
  });
  context = await browser.newContext({
    viewport: { width: 1280, height: 800 },
    acceptDownloads: true,
  });
  page = await context.newPage();
  page.on('response', (res: Response) => {
    bodies.push(
      res.body().then(
        (b) => b.toString('utf8'),
        () => '',
      ),
    );
  });
  page.on('console', (message) => {
    if (/Content Security Policy/i.test(message.text())) cspViolations.push(message.text());
  });
  page.on('pageerror', (err) => cspViolations.push(`page error: ${err.message}`));
  // Each wait above has its own limit; this one only keeps a hang from costing the whole hook
  // timeout of the suite.
}, 240_000);

afterEach(async () => {
  await expectNoBerthContainers(engine);
});

afterAll(async () => {
  await browser?.close();
  for (const child of processes.reverse()) {
    if (child.exitCode !== null || child.signalCode !== null) continue;
    const exited = new Promise((resolve) => child.on('exit', resolve));
    child.kill('SIGTERM');
    await exited;
  }
  engine?.close();
  // The browser leaves nothing behind: no chromium process of this file runs on (its helper
  // processes may end a moment after the main one).
  await until(() => ourChromiumProcesses().length === 0, 'the chromium processes ended', 30_000);
});

describe('the web page', () => {
  it('signs in with the admin token and lists the stacks with their last run, tool, image and pool', async () => {
    await page.goto(`${url}/`);
    await page.getByLabel('Token', { exact: true }).waitFor();
    expect(new URL(page.url()).pathname).toBe('/ui/');
    await expectAccessible('the sign-in form');
    await page.getByLabel('Token', { exact: true }).fill('berth_admin_wrong');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('alert').filter({ hasText: 'UNAUTHENTICATED' }).waitFor();
    await page.getByLabel('Token', { exact: true }).fill(admin);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('heading', { name: 'Stacks' }).waitFor();
    // The cookie is HttpOnly: the page's scripts cannot read it.
    expect(await page.evaluate('document.cookie')).toBe('');
    const cookies = await context.cookies();
    expect(cookies.map((c) => [c.name, c.httpOnly, c.sameSite])).toEqual([
      ['berth_session', true, 'Strict'],
    ]);

    const rows = page.locator('tbody tr');
    await expect.poll(() => rows.count()).toBe(4);
    const network = rows.filter({ hasText: 'network' });
    expect(await network.textContent()).toContain('never run');
    expect(await network.textContent()).toContain('CUSTOM');
    expect(await network.textContent()).toContain(inject('busyboxImage'));
    expect(await network.textContent()).toContain('builders');
    await page.getByLabel('Search').fill('team-edge');
    await expect.poll(() => rows.count()).toBe(1);
    expect(await rows.first().textContent()).toContain('dns');
    await page.getByLabel('Search').fill('');
    await expectAccessible('the stack list');
    await expectFitsPhone();
  });

  it('triggers a proposed run and shows its log live, colours as colours and markup as text, the secret masked', async () => {
    await page.getByRole('link', { name: 'network' }).click();
    await page.getByRole('heading', { name: /network/ }).waitFor();
    // Secrets are shown as set, never with their value; plain values are shown.
    expect(await page.locator('.variables').textContent()).toContain('WEB_SECRET secret, set');
    expect(await page.locator('.variables').textContent()).toContain('eu-west-1');
    await expectAccessible('the stack page');
    await page.getByRole('button', { name: 'Trigger proposed run' }).click();
    await page.waitForURL(/\/ui\/runs\/[0-9A-Z]{26}$/);

    // The job waits for /tmp/go: what the page shows now, it shows while the job runs.
    const log = page.locator('.log');
    await log.getByText('first line of the plan').waitFor({ timeout: 90_000 });
    await log.getByText('secret is *****').waitFor();
    await waitForState('PLANNING');
    expect(await log.textContent()).not.toContain('line after go');
    const red = log.locator('span.fg-1');
    expect(await red.textContent()).toBe('red text');
    expect(await log.textContent()).toContain(
      '<script>window.__xss = 1</script><img src=x onerror="window.__xss = 2">',
    );
    expect(await log.locator('script, img').count()).toBe(0);
    expect(await page.evaluate('typeof window.__xss')).toBe('undefined');
    await expectAccessible('a running run');

    await touchInContainer(engine, await runningContainer(), '/tmp/go');
    await log.getByText('line after go').waitFor({ timeout: 60_000 });
    await waitForState('FINISHED');
    // The plan summary, from the plan's JSON, prominent; no button for a finished run.
    const plan = page.locator('.plan');
    expect((await plan.textContent())?.replace(/\s+/g, ' ')).toBe(
      '2 to add1 to change1 to destroy'.replace(/\s+/g, ' '),
    );
    expect(await page.getByRole('button', { name: /Confirm|Discard|Cancel/ }).count()).toBe(0);
    const timeline = await page.locator('.timeline').textContent();
    for (const state of ['QUEUED', 'READY', 'PREPARING', 'INITIALIZING', 'PLANNING', 'FINISHED'])
      expect(timeline).toContain(state);
    expect(await page.locator('.settings').textContent()).toContain(inject('busyboxImage'));
    // Where the image choice came from: the stack's own setting.
    expect(await page.locator('.settings').textContent()).toContain(
      'Image chosen bystack settings',
    );
    await expectAccessible('a finished run');
    await screenshots('run');

    // The stored log, whole, one click away.
    const [download] = await Promise.all([
      page.waitForEvent('download'),
      page.getByRole('link', { name: 'Download the stored log' }).click(),
    ]);
    const stored = readFileSync(await download.path(), 'utf8');
    expect(stored).toContain('first line of the plan\n');
    expect(stored).toContain('secret is *****');

    // Back on the list, the stack shows its last run.
    await page.getByRole('link', { name: 'Stacks' }).click();
    const network = page.locator('tbody tr').filter({ hasText: 'network' });
    await network.getByText('FINISHED').waitFor();
    await screenshots('stacks');
  });

  it('runs a tracked run of an auto-deploy stack through apply, the result shown without a reload', async () => {
    await page.goto(`${url}/ui/stacks/dns`);
    await page.getByRole('button', { name: 'Trigger tracked run' }).click();
    await page.waitForURL(/\/ui\/runs\//);
    await page.locator('.log').getByText('first line of the plan').waitFor({ timeout: 90_000 });
    // While the job runs, Cancel is offered, and nothing else.
    await page.getByRole('button', { name: 'Cancel' }).waitFor();
    expect(await page.getByRole('button', { name: /Confirm|Discard/ }).count()).toBe(0);
    await touchInContainer(engine, await runningContainer(), '/tmp/go');
    await waitForState('FINISHED');
    await page.locator('.log').getByText('applying planned').waitFor();
    expect(await page.locator('.timeline').textContent()).toContain('APPLYING');
  });

  it('confirms a tracked run waiting for confirmation, and shows the apply finish', async () => {
    await page.goto(`${url}/ui/stacks/network`);
    await page.getByRole('button', { name: 'Trigger tracked run' }).click();
    await page.waitForURL(/\/ui\/runs\//);
    await page.locator('.log').getByText('first line of the plan').waitFor({ timeout: 90_000 });
    await touchInContainer(engine, await runningContainer(), '/tmp/go');
    await waitForState('UNCONFIRMED');
    expect((await page.locator('.plan').textContent())?.replace(/\s+/g, '')).toBe(
      '2toadd1tochange1todestroy',
    );
    expect(await page.getByRole('button', { name: 'Cancel' }).count()).toBe(0);
    await page.getByRole('button', { name: 'Discard' }).waitFor();
    await page.getByRole('button', { name: 'Confirm' }).click();
    await waitForState('FINISHED');
    await page.locator('.log').getByText('applying planned').waitFor();
    const timeline = (await page.locator('.timeline').textContent()) ?? '';
    for (const state of ['UNCONFIRMED', 'CONFIRMED', 'APPLYING', 'FINISHED'])
      expect(timeline).toContain(state);
    expect(await page.getByRole('button', { name: /Confirm|Discard|Cancel/ }).count()).toBe(0);
  });

  it('cancels a running run from its page', async () => {
    await page.goto(`${url}/ui/stacks/billing`);
    await page.getByRole('button', { name: 'Trigger proposed run' }).click();
    await page.locator('.log').getByText('first line of the plan').waitFor({ timeout: 90_000 });
    await page.getByRole('button', { name: 'Cancel' }).click();
    await waitForState(/STOPPED|CANCELED/, 60_000);
    expect(await page.getByRole('button', { name: 'Cancel' }).count()).toBe(0);
    // The worker stops the job: its container goes.
    await expect
      .poll(async () => (await berthContainers(engine)).length, { timeout: 60_000 })
      .toBe(0);
  });

  it("refuses a run on a public pool whose allow-list does not have the stack's registry, and says why", async () => {
    await page.goto(`${url}/ui/stacks/on-shared`);
    await page.getByRole('button', { name: 'Trigger proposed run' }).click();
    const alert = page.getByRole('alert');
    await alert.filter({ hasText: 'IMAGE_NOT_ALLOWED' }).waitFor();
    const text = (await alert.textContent()) ?? '';
    expect(text).toContain(
      `registry ${inject('registryAddress')} is not on this public pool's allow-list`,
    );
    expect(text).toContain('a private worker pool may use any registry');
    expect(new URL(page.url()).pathname).toBe('/ui/stacks/on-shared');
    expect(await client.listRuns({ stack: 'on-shared' })).toEqual([]);
    await expectAccessible('a refused trigger');
  });

  it('drains and undrains a worker from the pools page', async () => {
    await page.getByRole('link', { name: 'Worker pools' }).click();
    await page.getByRole('heading', { name: /Builders/ }).waitFor();
    await expectAccessible('the worker pools');
    const builders = page.locator('section.pool').filter({ hasText: 'builders' });
    await builders.getByRole('button', { name: /^Drain worker/ }).click();
    await builders.getByText('DRAINED').waitFor();
    expect((await client.listWorkers()).find((w) => w.pool === 'builders')?.status).toBe('DRAINED');
    await builders.getByRole('button', { name: /^Undrain worker/ }).click();
    await builders.getByText('IDLE').waitFor();
    await expectFitsPhone();
  });

  it('creates an API token shown once, and revokes it; refuses to revoke its own session', async () => {
    await page.getByRole('link', { name: 'API tokens' }).click();
    await page.getByRole('heading', { name: 'API tokens' }).waitFor();
    await page.getByLabel('Name').fill('ci-pipeline');
    await page.getByLabel('Role').selectOption('user');
    await page.getByRole('button', { name: 'Create token' }).click();
    const shown = page.locator('#new-token-value');
    await shown.waitFor();
    const token = (await shown.textContent()) ?? '';
    expect(token).toMatch(/^berth_/);
    const row = page.getByRole('row').filter({ hasText: 'ci-pipeline' });
    await row.getByText('user').waitFor();
    await expectAccessible('the API tokens');
    await expectFitsPhone();
    // The token works, as a user: stacks yes, tokens no.
    const asUser = new ApiClient(url, token);
    expect((await asUser.listStacks()).length).toBeGreaterThan(0);
    await expect(asUser.listTokens()).rejects.toMatchObject({ status: 403 });

    page.once('dialog', (dialog) => void dialog.accept());
    await row.getByRole('button', { name: /^Revoke token ci-pipeline/ }).click();
    await row.waitFor({ state: 'detached' });
    await expect(asUser.listStacks()).rejects.toMatchObject({ status: 401 });
    // Shown once: the list and every later answer hold no token.
    expect(await page.content()).not.toContain(token);

    // The admin token signed this session in: the server refuses, the page says why.
    page.once('dialog', (dialog) => void dialog.accept());
    await page
      .getByRole('row')
      .filter({ hasText: 'admin' })
      .getByRole('button', { name: /^Revoke token admin/ })
      .click();
    await page.getByRole('alert').filter({ hasText: 'TOKEN_IN_USE' }).waitFor();
    expect((await client.listTokens()).map((t) => t.id)).toContain('admin');
  });

  it('signs out: the session ends on the server too', async () => {
    await page.getByRole('button', { name: 'Sign out' }).click();
    // The sign-in form replaces the page once the server has ended the session; until then
    // the tokens page is still shown (its revoke buttons' names hold 'token' too).
    await page.getByRole('heading', { name: 'Sign in to berth' }).waitFor();
    await page.getByLabel('Token', { exact: true }).waitFor();
    expect(await context.cookies()).toEqual([]);
    const res = await page.request.get(`${url}/api/v1/stacks`);
    expect(res.status()).toBe(401);
  });

  it('never let the secret reach the page or any response, and kept its Content-Security-Policy', async () => {
    const texts = await Promise.all(bodies);
    expect(texts.length).toBeGreaterThan(20);
    expect(texts.filter((t) => t.includes(SECRET))).toEqual([]);
    expect(await page.content()).not.toContain(SECRET);
    expect(cspViolations).toEqual([]);
  });
});
