/** The stacks: each with its last run's state and when, tool and version, runner image, pool. */
import type { Stack } from '../../api/client.js';
import { api, link, stateBadge, type Page } from '../app.js';
import { h, replace, timeAgo } from '../dom.js';

type LastRun = NonNullable<Stack['lastRun']>;

function matches(stack: Stack, run: LastRun | undefined, query: string, state: string): boolean {
  if (state && (run?.state ?? 'NONE') !== state) return false;
  const haystack = [stack.id, stack.name, stack.pool, stack.tool ?? '', ...stack.labels]
    .join(' ')
    .toLowerCase();
  return query.split(/\s+/).every((word) => haystack.includes(word.toLowerCase()));
}

export const stacksPage: Page = async (main) => {
  const stacks = await api.listStacks();
  const last = new Map(stacks.flatMap((s) => (s.lastRun ? [[s.id, s.lastRun] as const] : [])));
  const search = h('input', {
    type: 'search',
    id: 'stack-search',
    placeholder: 'name, pool, tool or label',
    autocomplete: 'off',
  });
  const states = [...new Set([...last.values()].map((r) => r.state))].sort();
  const stateFilter = h(
    'select',
    { id: 'stack-state' },
    h('option', { value: '' }, 'any'),
    ...states.map((s) => h('option', { value: s }, s)),
    h('option', { value: 'NONE' }, 'never run'),
  );
  const body = h('tbody');
  const count = h('p', { class: 'count', 'aria-live': 'polite' });
  const draw = (): void => {
    const shown = stacks.filter((s) => matches(s, last.get(s.id), search.value, stateFilter.value));
    replace(
      body,
      ...shown.map((stack) => {
        const run = last.get(stack.id);
        return h(
          'tr',
          {},
          h('th', { scope: 'row' }, link(`/ui/stacks/${stack.id}`, stack.name)),
          h(
            'td',
            {},
            run
              ? link(`/ui/runs/${run.id}`, stateBadge(run.state))
              : h('span', { class: 'quiet' }, 'never run'),
            run ? h('span', { class: 'when' }, ' ', timeAgo(run.updatedAt)) : null,
          ),
          h('td', {}, stack.tool ? `${stack.tool} ${stack.toolVersion ?? ''}`.trim() : '—'),
          h('td', { class: 'mono' }, stack.runnerImage ?? 'pool or built-in default'),
          h('td', {}, stack.pool),
        );
      }),
    );
    count.textContent = `${shown.length} of ${stacks.length} stacks`;
  };
  search.addEventListener('input', draw);
  stateFilter.addEventListener('change', draw);
  replace(
    main,
    h('h1', {}, 'Stacks'),
    h(
      'div',
      { class: 'filters', role: 'search' },
      h('label', { for: 'stack-search' }, 'Search'),
      search,
      h('label', { for: 'stack-state' }, 'Last run'),
      stateFilter,
    ),
    count,
    h(
      'div',
      { class: 'table-scroll' },
      h(
        'table',
        {},
        h('caption', { class: 'visually-hidden' }, 'Stacks and their last run'),
        h(
          'thead',
          {},
          h(
            'tr',
            {},
            ...['Stack', 'Last run', 'Tool', 'Runner image', 'Pool'].map((t) =>
              h('th', { scope: 'col' }, t),
            ),
          ),
        ),
        body,
      ),
    ),
  );
  draw();
  return () => {};
};
