/**
 * One stack: its settings, its variables (a secret shows only that it is set: the API never
 * sends its value), its runs, and buttons to trigger a proposed or a tracked run.
 */
import { api, act, navigate, type Page } from '../app.js';
import { h, replace, timeAgo } from '../dom.js';
import { runsTable } from './runs-table.js';

function setting(term: string, value: Node | string | null): HTMLElement[] {
  return [h('dt', {}, term), h('dd', {}, value ?? h('span', { class: 'quiet' }, 'not set'))];
}

export const stackPage: Page = async (main, params) => {
  const id = params.id as string;
  const [stack, runs] = await Promise.all([
    api.getStack(id),
    api.listRuns({ stack: id, limit: 50 }),
  ]);
  const trigger = (type: 'proposed' | 'tracked'): HTMLButtonElement => {
    const button: HTMLButtonElement = h(
      'button',
      {
        type: 'button',
        class: type === 'tracked' ? 'primary' : '',
        onclick: () =>
          void act(button, async () => {
            const run = await api.trigger(stack.id, { type });
            navigate(`/ui/runs/${run.id}`);
          }),
      },
      type === 'tracked' ? 'Trigger tracked run' : 'Trigger proposed run',
    );
    return button;
  };
  replace(
    main,
    h('h1', {}, stack.name, h('span', { class: 'subtitle' }, ` stack ${stack.id}`)),
    h('div', { class: 'actions' }, trigger('proposed'), trigger('tracked')),
    h('h2', {}, 'Settings'),
    h(
      'dl',
      { class: 'settings' },
      ...setting('Source', stack.repository ?? stack.localDir),
      ...setting('Branch', stack.branch),
      ...setting('Project root', stack.projectRoot || '.'),
      ...setting('Tool', stack.tool ? `${stack.tool} ${stack.toolVersion ?? ''}`.trim() : null),
      ...setting('Runner image', stack.runnerImage),
      ...setting('Pool', stack.pool),
      ...setting('Labels', stack.labels.length ? stack.labels.join(', ') : null),
      ...setting('Auto-deploy', stack.autoDeploy ? 'on' : 'off'),
      ...setting('Updated', timeAgo(stack.updatedAt)),
    ),
    h('h2', {}, 'Environment'),
    stack.variables.length === 0
      ? h('p', { class: 'quiet' }, 'No variables.')
      : h(
          'ul',
          { class: 'variables' },
          ...stack.variables.map((v) =>
            h(
              'li',
              {},
              h('code', {}, v.name),
              ' ',
              v.secret
                ? h('span', { class: 'badge quiet' }, 'secret, set')
                : h('code', { class: 'value' }, v.value ?? ''),
            ),
          ),
        ),
    h('h2', {}, 'Runs'),
    runsTable(runs, `Runs of ${stack.name}`),
  );
  return () => {};
};
