/** A table of runs (the stack page's), newest first. */
import type { Run } from '../../api/client.js';
import { isTerminal } from '../../domain/run-state.js';
import { link, stateBadge } from '../app.js';
import { h, timeAgo } from '../dom.js';

export function runsTable(runs: Run[], caption: string): HTMLElement {
  if (runs.length === 0) return h('p', { class: 'quiet' }, 'No runs yet.');
  return h(
    'div',
    { class: 'table-scroll' },
    h(
      'table',
      {},
      h('caption', { class: 'visually-hidden' }, caption),
      h(
        'thead',
        {},
        h(
          'tr',
          {},
          ...['Run', 'Type', 'State', 'Commit', 'Triggered'].map((t) =>
            h('th', { scope: 'col' }, t),
          ),
        ),
      ),
      h(
        'tbody',
        {},
        ...runs.map((run) =>
          h(
            'tr',
            {},
            h(
              'th',
              { scope: 'row' },
              link(`/ui/runs/${run.id}`, h('span', { class: 'mono' }, run.id)),
            ),
            h('td', {}, run.type),
            h(
              'td',
              {},
              stateBadge(run.state),
              // Canceled while held: its worker is stopping it (run.ts says more).
              run.stopRequested && !isTerminal(run.state)
                ? h('span', { class: 'quiet' }, ' stopping')
                : null,
            ),
            h('td', { class: 'mono' }, run.commit ? run.commit.slice(0, 12) : '—'),
            h('td', {}, timeAgo(run.createdAt), ` by ${run.triggeredBy}`),
          ),
        ),
      ),
    ),
  );
}
