/**
 * berth's web page: a small TypeScript front end without a framework. The page has five views
 * and one live log; plain DOM building (dom.ts) keeps every text out of markup by construction,
 * adds nothing to download or audit, and builds in milliseconds with the esbuild the project
 * already uses (docs/web-ui.md says more).
 *
 * Here: the shell (navigation, who is signed in, sign-out), the sign-in form, and the routes.
 */
import { ApiClientError } from '../api/client.js';
import { api, link, navigate, onNavigate, showError, type Page } from './app.js';
import { h, replace } from './dom.js';
import { runPage } from './pages/run.js';
import { stackPage } from './pages/stack.js';
import { stacksPage } from './pages/stacks.js';
import { tokensPage } from './pages/tokens.js';
import { workersPage } from './pages/workers.js';

const ROUTES: [RegExp, Page, string][] = [
  [/^\/ui\/?$/, stacksPage, 'Stacks'],
  [/^\/ui\/stacks\/([a-z0-9-]+)$/, stackPage, 'Stack'],
  [/^\/ui\/runs\/([0-9A-Z]+)$/, runPage, 'Run'],
  [/^\/ui\/workers$/, workersPage, 'Worker pools'],
  [/^\/ui\/tokens$/, tokensPage, 'API tokens'],
];

const main = document.getElementById('main') as HTMLElement;
const nav = document.getElementById('nav') as HTMLElement;
let stopPage: () => void = () => {};

function unauthenticated(err: unknown): boolean {
  return err instanceof ApiClientError && err.status === 401;
}

async function show(path: string): Promise<void> {
  stopPage();
  stopPage = () => {};
  showError(null);
  const route = ROUTES.find(([pattern]) => pattern.test(path));
  if (!route) {
    replace(
      main,
      h('h1', {}, 'Not found'),
      h('p', {}, 'This page does not exist. '),
      link('/ui/', 'All stacks'),
    );
    return;
  }
  const [pattern, page, title] = route;
  const id = pattern.exec(path)?.[1];
  document.title = `${id ? `${title} ${id}` : title} · berth`;
  for (const a of nav.querySelectorAll('a')) {
    if (
      a.getAttribute('href') === path ||
      (path.startsWith('/ui/stacks') && a.getAttribute('href') === '/ui/')
    )
      a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  replace(main, h('p', { class: 'quiet' }, 'Loading…'));
  try {
    stopPage = await page(main, id ? { id } : {});
    main.focus({ preventScroll: true });
  } catch (err) {
    if (unauthenticated(err)) return signIn();
    replace(main, h('h1', {}, 'Could not load this page'));
    showError(err);
  }
}

function shell(caller: { kind: string; id: string }): void {
  const signOut: HTMLButtonElement = h(
    'button',
    {
      type: 'button',
      class: 'link-button',
      onclick: () =>
        void api.signOut().then(
          () => signIn(),
          (err: unknown) => showError(err),
        ),
    },
    'Sign out',
  );
  replace(
    nav,
    h(
      'ul',
      {},
      h('li', {}, link('/ui/', 'Stacks')),
      h('li', {}, link('/ui/workers', 'Worker pools')),
      // Only admins may manage tokens: others are not shown a page the server would refuse.
      caller.kind === 'admin' ? h('li', {}, link('/ui/tokens', 'API tokens')) : null,
    ),
    h('p', { class: 'who' }, `Signed in as ${caller.id} (${caller.kind}) `, signOut),
  );
}

function signIn(): void {
  stopPage();
  stopPage = () => {};
  replace(nav);
  document.title = 'Sign in · berth';
  const token = h('input', {
    id: 'token',
    name: 'token',
    type: 'password',
    autocomplete: 'current-password',
    required: true,
    spellcheck: 'false',
    'aria-describedby': 'token-help',
  });
  const submit = h('button', { type: 'submit', class: 'primary' }, 'Sign in');
  const form = h(
    'form',
    { class: 'sign-in', 'aria-labelledby': 'sign-in-title' },
    h('h1', { id: 'sign-in-title' }, 'Sign in to berth'),
    h('label', { for: 'token' }, 'Token'),
    token,
    h(
      'p',
      { id: 'token-help', class: 'quiet' },
      'The admin token printed on the server’s first start, or an API token. It is sent once; the browser keeps a session cookie, not the token.',
    ),
    submit,
  );
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    submit.disabled = true;
    showError(null);
    api.signIn(token.value.trim()).then(
      (session) => {
        shell(session.caller);
        const path = location.pathname.startsWith('/ui') ? location.pathname : '/ui/';
        navigate(path);
      },
      (err: unknown) => {
        submit.disabled = false;
        showError(err);
        token.focus();
      },
    );
  });
  replace(main, form);
  token.focus();
}

async function start(): Promise<void> {
  onNavigate((path) => void show(path));
  window.addEventListener('popstate', () => void show(location.pathname));
  try {
    const session = await api.session();
    shell(session.caller);
    await show(location.pathname);
  } catch (err) {
    if (unauthenticated(err)) signIn();
    else showError(err);
  }
}

void start();
