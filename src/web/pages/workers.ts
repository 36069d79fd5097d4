/** Worker pools and their workers: status, last heartbeat, current runs; drain and undrain. */
import type { Worker } from '../../api/client.js';
import { api, act, link, type Page } from '../app.js';
import { h, replace, timeAgo } from '../dom.js';

export const workersPage: Page = async (main) => {
  const draw = async (): Promise<void> => {
    const [pools, workers] = await Promise.all([api.listPools(), api.listWorkers()]);
    const drainButton = (worker: Worker): HTMLButtonElement => {
      const drained = worker.drained;
      const b: HTMLButtonElement = h(
        'button',
        {
          type: 'button',
          'aria-label': `${drained ? 'Undrain' : 'Drain'} worker ${worker.host} (${worker.id})`,
          onclick: () =>
            void act(b, async () => {
              await api.setDrained(worker.id, !drained);
              await draw();
            }),
        },
        drained ? 'Undrain' : 'Drain',
      );
      return b;
    };
    // Redrawn every few seconds: the focused button keeps the focus.
    const focused = document.activeElement?.getAttribute('aria-label');
    replace(
      main,
      h('h1', {}, 'Worker pools'),
      ...(pools.length === 0 ? [h('p', { class: 'quiet' }, 'No pools yet.')] : []),
      ...pools.map((pool) => {
        const own = workers.filter((w) => w.pool === pool.id);
        return h(
          'section',
          { class: 'pool', 'aria-labelledby': `pool-${pool.id}` },
          h(
            'h2',
            { id: `pool-${pool.id}` },
            pool.name,
            h('span', { class: 'subtitle' }, ` ${pool.id}`),
          ),
          h(
            'dl',
            { class: 'settings' },
            h('dt', {}, 'Kind'),
            h('dd', {}, pool.kind),
            h('dt', {}, 'Allowed registries'),
            h(
              'dd',
              {},
              pool.allowList.length
                ? pool.allowList.join(', ')
                : h('span', { class: 'quiet' }, 'any'),
            ),
            h('dt', {}, 'Default image'),
            h('dd', {}, pool.defaultImage ?? h('span', { class: 'quiet' }, 'built-in')),
          ),
          own.length === 0
            ? h('p', { class: 'quiet' }, 'No workers registered.')
            : h(
                'div',
                { class: 'table-scroll' },
                h(
                  'table',
                  {},
                  h('caption', { class: 'visually-hidden' }, `Workers of pool ${pool.id}`),
                  h(
                    'thead',
                    {},
                    h(
                      'tr',
                      {},
                      ...['Worker', 'Status', 'Last heartbeat', 'Current runs', 'Action'].map((t) =>
                        h('th', { scope: 'col' }, t),
                      ),
                    ),
                  ),
                  h(
                    'tbody',
                    {},
                    ...own.map((w) =>
                      h(
                        'tr',
                        {},
                        h(
                          'th',
                          { scope: 'row' },
                          w.host,
                          h('br'),
                          h('code', { class: 'small' }, w.id),
                        ),
                        h(
                          'td',
                          {},
                          h(
                            'span',
                            {
                              class: `badge ${w.status === 'DRAINED' || w.status === 'OFFLINE' ? 'quiet' : w.status === 'BUSY' ? 'busy' : 'good'}`,
                            },
                            w.status,
                          ),
                        ),
                        h('td', {}, timeAgo(w.lastHeartbeatAt)),
                        h(
                          'td',
                          {},
                          ...(w.runs.length === 0
                            ? ['—']
                            : w.runs.flatMap((r, i) => [
                                i > 0 ? ', ' : '',
                                link(`/ui/runs/${r}`, h('code', {}, r)),
                              ])),
                        ),
                        h('td', {}, drainButton(w)),
                      ),
                    ),
                  ),
                ),
              ),
        );
      }),
    );
    if (focused) {
      for (const b of main.querySelectorAll('button')) {
        if (b.getAttribute('aria-label') === focused) b.focus();
      }
    }
  };
  await draw();
  // Heartbeats and current runs change: keep the page fresh without a reload.
  const timer = setInterval(() => void draw().catch(() => {}), 5000);
  return () => clearInterval(timer);
};
