/**
 * What every page shares: the API client (signed in by the session cookie), navigation inside
 * the page without reloads, and the one place errors are shown (a live region, with the
 * server's code, message and hint).
 */
import { ApiClient, ApiClientError } from '../api/client.js';
import { h, replace } from './dom.js';

/** The page talks to the server that served it. `fetch` is called unbound (browsers insist). */
export const api = new ApiClient(location.origin, null, (input, init) => fetch(input, init));

/** A page: draws itself into `main` and answers how to stop (timers, live logs). */
export type Page = (main: HTMLElement, params: Record<string, string>) => Promise<() => void>;

let navigateHandler: (path: string) => void = () => {};

export function onNavigate(handler: (path: string) => void): void {
  navigateHandler = handler;
}

export function navigate(path: string): void {
  history.pushState(null, '', path);
  navigateHandler(path);
}

/** A link inside the page: followed without a reload (a modified click opens a tab as usual). */
export function link(path: string, ...children: (Node | string)[]): HTMLAnchorElement {
  return h(
    'a',
    {
      href: path,
      onclick: (event: Event) => {
        const e = event as MouseEvent;
        if (e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
        e.preventDefault();
        navigate(path);
      },
    },
    ...children,
  );
}

/** Shows an error (or clears it with null) in the page's alert region. */
export function showError(err: unknown): void {
  const region = document.getElementById('alert') as HTMLElement;
  if (err === null) {
    replace(region);
    region.hidden = true;
    return;
  }
  region.hidden = false;
  if (err instanceof ApiClientError) {
    replace(
      region,
      h('strong', {}, err.message),
      ' ',
      h('code', {}, err.code),
      err.hint ? h('span', { class: 'hint' }, ' ', err.hint) : null,
    );
  } else replace(region, h('strong', {}, err instanceof Error ? err.message : 'something failed'));
}

/** Runs an action of a button: disabled while it runs, its error shown. */
export async function act(button: HTMLButtonElement, action: () => Promise<void>): Promise<void> {
  button.disabled = true;
  showError(null);
  try {
    await action();
  } catch (err) {
    showError(err);
  } finally {
    button.disabled = false;
  }
}

/** A run state as a badge whose colour class follows its meaning. */
export function stateBadge(state: string): HTMLElement {
  const tone =
    state === 'FINISHED'
      ? 'good'
      : state === 'FAILED' || state === 'STOPPED'
        ? 'bad'
        : state === 'UNCONFIRMED'
          ? 'wait'
          : state === 'CANCELED' || state === 'DISCARDED'
            ? 'quiet'
            : 'busy';
  return h('span', { class: `badge ${tone}` }, state);
}
