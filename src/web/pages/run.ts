/**
 * One run, live: state and type, why it ended (a refusal's reason in full), the plan summary
 * first, Confirm / Discard / Cancel only where the run state machine allows them, the commit,
 * the runner image with its digest and where the choice came from, the worker, a timeline of
 * the states with their durations, and the log as the job writes it. Everything updates as the
 * server reports it: no reload.
 */
import type { Run } from '../../api/client.js';
import { cancelTarget, isTerminal } from '../../domain/run-state.js';
import { api, act, link, stateBadge, type Page } from '../app.js';
import { duration, h, replace, timeAgo } from '../dom.js';
import { followRun } from '../live.js';
import { LogView } from '../log-view.js';

/** The page keeps this many lines; the stored log has them all. */
export const LOG_WINDOW = 5000;

function planSummary(run: Run): HTMLElement {
  if (!run.plan) {
    return h(
      'p',
      { class: 'plan none' },
      run.type === 'TASK'
        ? 'A task: no plan.'
        : isTerminal(run.state)
          ? 'No plan.'
          : 'No plan yet.',
    );
  }
  const { add, change, destroy, replace: replaced } = run.plan;
  const part = (n: number, what: string, tone: string): HTMLElement =>
    h('span', { class: `plan-part ${tone}` }, h('strong', {}, String(n)), ` to ${what}`);
  return h(
    'p',
    {
      class: 'plan',
      'aria-label': `Plan: ${add} to add, ${change} to change, ${destroy} to destroy, ${replaced} to replace`,
    },
    part(add, 'add', 'add'),
    part(change, 'change', 'change'),
    part(destroy, 'destroy', 'destroy'),
    replaced ? part(replaced, 'replace', 'change') : null,
  );
}

function timeline(states: { state: string; at: string }[], ended: boolean): HTMLElement {
  return h(
    'ol',
    { class: 'timeline' },
    ...states.map((s, i) => {
      const next = states[i + 1];
      const last = i === states.length - 1;
      const spent = next
        ? duration(Date.parse(next.at) - Date.parse(s.at))
        : ended && last
          ? null
          : `${duration(Date.now() - Date.parse(s.at))} so far`;
      return h(
        'li',
        {},
        stateBadge(s.state),
        ' ',
        h(
          'time',
          { datetime: s.at, title: new Date(s.at).toLocaleString() },
          new Date(s.at).toLocaleTimeString(),
        ),
        spent ? h('span', { class: 'duration' }, ` ${spent}`) : null,
      );
    }),
  );
}

function details(run: Run): HTMLElement {
  const item = (term: string, value: Node | string | null): HTMLElement[] => [
    h('dt', {}, term),
    h('dd', {}, value ?? h('span', { class: 'quiet' }, '—')),
  ];
  return h(
    'dl',
    { class: 'settings' },
    ...item('Commit', run.commit ? h('code', {}, run.commit) : null),
    ...item('Triggered', h('span', {}, timeAgo(run.createdAt), ` by ${run.triggeredBy}`)),
    ...item('Worker', run.worker ? h('code', {}, run.worker) : null),
    ...item('Runner image', run.image.reference ? h('code', {}, run.image.reference) : null),
    ...item(
      'Image digest',
      run.image.digest ? h('code', { class: 'digest' }, run.image.digest) : null,
    ),
    ...item('Image chosen by', run.image.chosenBy ?? null),
    ...item('Image on the worker', run.image.source),
    ...item('Pool', run.pool),
  );
}

export const runPage: Page = async (main, params) => {
  const id = params.id as string;
  let run = await api.getRun(id);
  let states = run.states ?? [];
  const status = h('div', { class: 'status', role: 'status', 'aria-live': 'polite' });
  const plan = h('section', { 'aria-labelledby': 'plan-title', class: 'plan-box' });
  const actions = h('div', { class: 'actions' });
  const info = h('div');
  const history = h('div');
  const log = new LogView(LOG_WINDOW, api.url(api.logDownloadPath(id)));
  const button = (
    label: string,
    decision: 'confirm' | 'discard' | 'cancel',
    tone = '',
  ): HTMLButtonElement => {
    const b: HTMLButtonElement = h(
      'button',
      {
        type: 'button',
        class: tone,
        onclick: () =>
          void act(b, async () => {
            update(await api.decide(run.id, decision));
          }),
      },
      label,
    );
    return b;
  };

  const update = (next: Run): void => {
    // A state change the stream reported without the history: add it to the timeline here.
    if (next.states) states = next.states;
    else if (states.at(-1)?.state !== next.state)
      states = [...states, { state: next.state, at: next.updatedAt }];
    run = next;
    const ended = isTerminal(run.state);
    // Canceled while its job runs: the worker is stopping it, the state changes when it has.
    const stopping = !ended && Boolean(run.stopRequested);
    replace(
      status,
      stateBadge(run.state),
      h('span', { class: 'type' }, ` ${run.type.toLowerCase()} run`),
      ended ? null : h('span', { class: 'live' }, stopping ? ' stopping' : ' live'),
      stopping
        ? h(
            'p',
            { class: 'reason' },
            `Stopping (${run.stopRequested?.reason ?? 'canceled'}): worker ${run.worker ?? ''} stops the run (its job, if started: SIGINT, then SIGKILL after its 30 s grace) and reports its end; the stack stays locked until then.`,
          )
        : run.stateReason
          ? h('p', { class: run.state === 'FAILED' ? 'reason bad' : 'reason' }, run.stateReason)
          : null,
    );
    replace(plan, h('h2', { id: 'plan-title' }, 'Plan'), planSummary(run));
    replace(
      actions,
      run.state === 'UNCONFIRMED' ? button('Confirm', 'confirm', 'primary') : null,
      run.state === 'UNCONFIRMED' ? button('Discard', 'discard') : null,
      cancelTarget(run.state) !== null && run.state !== 'UNCONFIRMED' && !stopping
        ? button('Cancel', 'cancel', 'danger')
        : null,
    );
    replace(info, details(run));
    replace(history, timeline(states, ended));
  };

  replace(
    main,
    h('h1', {}, 'Run ', h('span', { class: 'mono' }, run.id)),
    h('p', { class: 'subtitle' }, 'of stack ', link(`/ui/stacks/${run.stack}`, run.stack)),
    status,
    plan,
    actions,
    h(
      'div',
      { class: 'columns' },
      h(
        'section',
        { 'aria-labelledby': 'details-title' },
        h('h2', { id: 'details-title' }, 'Details'),
        info,
      ),
      h(
        'section',
        { 'aria-labelledby': 'timeline-title' },
        h('h2', { id: 'timeline-title' }, 'Timeline'),
        history,
      ),
    ),
    h(
      'section',
      { 'aria-labelledby': 'log-title', class: 'log-section' },
      h(
        'div',
        { class: 'log-head' },
        h('h2', { id: 'log-title' }, 'Log'),
        h('a', { href: api.url(api.logDownloadPath(id)), download: '' }, 'Download the stored log'),
      ),
      log.element,
    ),
  );
  update(run);
  // The timeline's "so far" grows while the run goes on.
  const tick = setInterval(() => {
    if (!isTerminal(run.state)) replace(history, timeline(states, false));
  }, 1000);
  const stop = followRun(api, id, {
    onLog: (chunk) => log.append(chunk.text),
    onRun: update,
    onEnd: () => {
      // The last word: the run as stored, with its full history.
      void api.getRun(id).then(update, () => {});
    },
    onError: () => {},
  });
  return () => {
    clearInterval(tick);
    stop();
  };
};
