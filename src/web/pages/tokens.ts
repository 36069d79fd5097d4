/**
 * API tokens (admins only): the list (never a token itself: the server keeps only hashes), a new
 * token shown this once, and revoking one. The server refuses to revoke the token of the caller's
 * own session and the last admin token; its refusal is shown as any error is.
 */
import type { ApiToken } from '../../api/client.js';
import { act, api, type Page } from '../app.js';
import { h, replace, timeAgo } from '../dom.js';

export const tokensPage: Page = async (main) => {
  const body = h('tbody');
  const shown = h('div', { class: 'new-token', 'aria-live': 'polite' });
  /** The id of the token shown once in `shown`: it stays until it is copied, unless revoked. */
  let shownId: string | null = null;

  const revokeButton = (token: ApiToken): HTMLButtonElement => {
    const b: HTMLButtonElement = h(
      'button',
      {
        type: 'button',
        'aria-label': `Revoke token ${token.name} (${token.id})`,
        onclick: () => {
          if (!confirm(`Revoke the token ${token.name}? Whoever uses it is signed out at once.`))
            return;
          void act(b, async () => {
            await api.revokeToken(token.id);
            if (token.id === shownId) {
              replace(shown);
              shownId = null;
            }
            await draw();
          });
        },
      },
      'Revoke',
    );
    return b;
  };

  const draw = async (): Promise<void> => {
    const tokens = await api.listTokens();
    replace(
      body,
      ...tokens.map((t) =>
        h(
          'tr',
          {},
          h('th', { scope: 'row' }, t.name, h('br'), h('code', { class: 'small' }, t.id)),
          h('td', {}, t.role),
          h('td', {}, timeAgo(t.createdAt)),
          h('td', {}, revokeButton(t)),
        ),
      ),
    );
  };

  const name = h('input', {
    id: 'token-name',
    name: 'name',
    required: true,
    maxlength: '200',
    autocomplete: 'off',
    placeholder: 'ci-pipeline',
  });
  const role = h(
    'select',
    { id: 'token-role', name: 'role' },
    h('option', { value: 'user' }, 'user: stacks and runs'),
    h('option', { value: 'admin' }, 'admin: also pools, workers and tokens'),
  );
  const create: HTMLButtonElement = h(
    'button',
    { type: 'submit', class: 'primary' },
    'Create token',
  );
  const form = h(
    'form',
    { class: 'token-form', 'aria-labelledby': 'new-token-title' },
    h('h2', { id: 'new-token-title' }, 'New token'),
    h('label', { for: 'token-name' }, 'Name'),
    name,
    h('label', { for: 'token-role' }, 'Role'),
    role,
    create,
  );
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    void act(create, async () => {
      const made = await api.createToken({
        name: name.value.trim(),
        role: role.value as 'user' | 'admin',
      });
      name.value = '';
      shownId = made.apiToken.id;
      replace(
        shown,
        h('p', {}, `Token ${made.apiToken.name}, shown this once: copy it now.`),
        h('code', { class: 'token-value', id: 'new-token-value' }, made.token),
      );
      await draw();
    });
  });

  replace(
    main,
    h('h1', {}, 'API tokens'),
    h(
      'p',
      { class: 'quiet' },
      'For scripts and people (`berth login`, Authorization: Bearer). The server keeps only a hash of each token.',
    ),
    h(
      'div',
      { class: 'table-scroll' },
      h(
        'table',
        {},
        h('caption', { class: 'visually-hidden' }, 'API tokens'),
        h(
          'thead',
          {},
          h(
            'tr',
            {},
            ...['Token', 'Role', 'Created', 'Action'].map((t) => h('th', { scope: 'col' }, t)),
          ),
        ),
        body,
      ),
    ),
    form,
    shown,
  );
  await draw();
  return () => {};
};
