/**
 * The two views of a run: `--json` (one event per line on stdout) and the human view (job output
 * on stdout/stderr with a time stamp per line, berth's own lines on stderr, a summary at the end).
 */
import pc from 'picocolors';
import type { BerthError } from '../domain/errors.js';
import {
  stopReasonText,
  stoppingText,
  type RunEvent,
  type RunSummary,
} from '../domain/run-events.js';
import { formatBytes, formatDuration } from '../domain/units.js';
import { printable } from '../domain/printable.js';
import type { PlanSummary } from '../domain/workflow.js';
import type { OutputChunk } from '../launcher/run-job.js';

export interface Output {
  stdout: NodeJS.WritableStream & { isTTY?: boolean };
  stderr: NodeJS.WritableStream & { isTTY?: boolean };
}

/** An error the way every berth command shows it on stderr: message, code, and the fix. */
export function errorText(error: BerthError): string {
  return `${pc.red('berth: error:')} ${error.message} [${error.code}]\n${fixText(error.hint)}`;
}

/** The fix line that ends every error berth shows. */
export function fixText(hint: string): string {
  return `${pc.bold('fix:')} ${hint}\n`;
}

export function jsonRenderer(out: Output): (event: RunEvent) => void {
  return (event) => {
    out.stdout.write(`${JSON.stringify(event)}\n`);
  };
}

/** The plan's counts and resources; addresses come from the job, so they are shown escaped. */
export function planLine(plan: PlanSummary): string {
  const listed = plan.resources.map((r) => `${printable(r.address)} (${r.actions.join('/')})`);
  if (plan.resourcesNotShown > 0) listed.push(`${plan.resourcesNotShown} more`);
  const counts = `${plan.add} to add, ${plan.change} to change, ${plan.destroy} to destroy`;
  return `plan: ${counts}${listed.length ? `: ${listed.join(', ')}` : ''}`;
}

function clock(ts: string): string {
  return ts.slice(11, 23);
}

/** The human view: events, and the job's masked output as bytes (RunDeps.output). */
export interface HumanView {
  emit: (event: RunEvent) => void;
  output: (chunk: OutputChunk) => void;
}

export function humanRenderer(out: Output): (event: RunEvent) => void {
  return humanView(out).emit;
}

export function humanView(out: Output): HumanView {
  const atLineStart = { stdout: true, stderr: true };
  const layers = new Map<string, { current: number; total: number; done: boolean }>();
  let pullLineOpen = false;
  const note = (text: string): void => {
    if (pullLineOpen) {
      out.stderr.write('\n');
      pullLineOpen = false;
    }
    out.stderr.write(`${pc.dim('berth:')} ${text}\n`);
  };
  /**
   * Job output with a time stamp at the start of each line: text (`log` events, UTF-8 out), or
   * a byte string (`latin1` out: the bytes as they came, stamps being ASCII).
   */
  const writeJob = (
    stream: 'stdout' | 'stderr',
    text: string,
    ts: string,
    encoding: 'utf8' | 'latin1',
  ): void => {
    // One replace per chunk (not a string per line): this is the hot path for large outputs.
    const stamp = pc.dim(`${clock(ts)} `);
    // A global regular expression builds its result as one flat string; replaceAll builds a rope
    // of two pieces per line that the write then has to flatten (about 8 % of berth's CPU time
    // on a 200 MB run). A lookahead (not stamping after the last newline) would double the cost.
    const ends = text.endsWith('\n');
    const inner = (ends ? text.slice(0, -1) : text).replace(/\n/g, `\n${stamp}`);
    const body = ends ? `${inner}\n` : inner;
    out[stream].write(atLineStart[stream] ? stamp + body : body, encoding);
    atLineStart[stream] = ends;
  };

  const emit = (event: RunEvent): void => {
    switch (event.type) {
      case 'run.started':
        note(`run ${event.runId}: ${event.sourceDir} on ${event.image} (${event.imageSource})`);
        break;
      case 'image.pull': {
        if (event.layer === null) {
          if (!out.stderr.isTTY) note(`pull: ${event.status}`);
          break;
        }
        const layer = layers.get(event.layer) ?? { current: 0, total: 0, done: false };
        if (event.total) layer.total = event.total;
        if (event.current !== undefined) layer.current = event.current;
        layer.done = /complete|already exists/i.test(event.status);
        if (layer.done && layer.total) layer.current = layer.total;
        layers.set(event.layer, layer);
        const done = [...layers.values()].filter((l) => l.done).length;
        const current = [...layers.values()].reduce((sum, l) => sum + l.current, 0);
        const total = [...layers.values()].reduce((sum, l) => sum + l.total, 0);
        const line = `pulling: ${done}/${layers.size} layers, ${formatBytes(current)}${total ? ` of ${formatBytes(total)}` : ''}`;
        if (out.stderr.isTTY) {
          out.stderr.write(`\r${pc.dim('berth:')} ${line}\u001b[K`);
          pullLineOpen = true;
        } else if (layer.done) {
          note(`${event.layer}: ${event.status} (${line})`);
        }
        break;
      }
      case 'workspace.copying':
        note(`copying the workspace into the container: ${formatBytes(event.bytes)} so far`);
        break;
      case 'image.build':
        note(`build: ${event.line}`);
        break;
      case 'run.configured':
        note(`stack ${event.stack}${event.file ? ` (runtime configuration ${event.file})` : ''}`);
        for (const [name, { value, source }] of Object.entries(event.settings)) {
          note(
            `  ${name} = ${typeof value === 'string' ? value : JSON.stringify(value)}  [${source}]`,
          );
        }
        break;
      case 'run.state':
        note(`state ${pc.bold(event.state)}`);
        break;
      case 'plan.summary':
        note(planLine(event));
        break;
      case 'tool.ready':
        note(
          `${event.tool} ${event.version} (${event.platform}) ${event.downloaded ? 'downloaded and verified' : 'from the verified cache'}, ${event.delivery === 'copied' ? 'copied to' : 'mounted at'} ${event.path}`,
        );
        break;
      case 'plugins.found':
        note(
          event.providers.length === 0
            ? 'no custom providers under /plugins'
            : `custom providers from /plugins: ${event.providers.map((p) => `${p.source} ${p.version}`).join(', ')}`,
        );
        break;
      case 'image.checked':
        note(
          `image checked with ${event.registry} for a ${event.pool} pool${event.rule ? ` (allow-list: ${event.rule})` : ''}: ${event.digest}; credentials: ${event.credentials}`,
        );
        break;
      case 'image.resolved':
        note(`image ${event.reference} ${event.source} (${event.digest ?? event.id})`);
        break;
      case 'container.started':
        note(`container ${event.containerName} started`);
        break;
      case 'warning':
        note(pc.yellow(`warning: ${event.message}`));
        break;
      case 'phase.started':
        note(`phase ${pc.bold(event.phase)} started`);
        break;
      case 'log':
        writeJob(event.stream, event.text, event.ts, 'utf8');
        break;
      case 'phase.finished':
        for (const stream of ['stdout', 'stderr'] as const) {
          if (!atLineStart[stream]) {
            out[stream].write('\n');
            atLineStart[stream] = true;
          }
        }
        note(
          `phase ${pc.bold(event.phase)} ended with exit code ${event.exitCode ?? 'none'} after ${formatDuration(event.durationMs)}`,
        );
        break;
      case 'run.stopping':
        note(pc.yellow(stoppingText(event)));
        break;
      case 'run.finished':
        out.stderr.write(formatSummary(event));
        break;
    }
  };
  return {
    emit,
    output: (chunk) => writeJob(chunk.stream, chunk.bytes, chunk.ts, 'latin1'),
  };
}

export function formatSummary(summary: RunSummary): string {
  const colour = summary.state === 'FINISHED' ? pc.green : pc.red;
  const lines = [
    '',
    `${pc.bold('berth')} run ${summary.runId} ${colour(pc.bold(summary.state))} in ${formatDuration(summary.durations.totalMs)} (berth exit code ${summary.exitCode})`,
    `  image      ${summary.image.reference}${summary.image.source ? ` [${summary.image.source}]` : ''}`,
  ];
  if (summary.image.id)
    lines.push(
      `             id ${summary.image.id}${summary.image.digest ? `, digest ${summary.image.digest}` : ''}`,
    );
  if (summary.containerName) lines.push(`  container  ${summary.containerName} (removed)`);
  lines.push(`  preparing  ${formatDuration(summary.durations.preparingMs)}`);
  if (summary.configuration) {
    lines.push(
      `  stack      ${summary.configuration.stack}${summary.configuration.file ? ` (${summary.configuration.file})` : ''}`,
    );
    for (const [name, { value, source }] of Object.entries(summary.configuration.settings)) {
      lines.push(
        `             ${name} = ${typeof value === 'string' ? value : JSON.stringify(value)} [${source}]`,
      );
    }
  }
  for (const phase of summary.phases) {
    lines.push(
      `  phase      ${phase.name}: exit code ${phase.exitCode ?? 'none'} in ${formatDuration(phase.durationMs)}`,
    );
  }
  if (summary.plan) {
    lines.push(
      `  plan       ${summary.plan.add} to add, ${summary.plan.change} to change, ${summary.plan.destroy} to destroy`,
    );
  }
  if (summary.afterRun) {
    lines.push(
      `  after_run  exit code ${summary.afterRun.exitCode ?? 'none'} in ${formatDuration(summary.afterRun.durationMs)}`,
    );
  }
  if (summary.stop) {
    const how =
      summary.stop.endedBy === 'SIGINT'
        ? `SIGINT sent; the job ended within the ${formatDuration(summary.stop.graceMs)} grace period`
        : `SIGINT sent; the job was still running after ${formatDuration(summary.stop.graceMs)} and was killed with SIGKILL`;
    lines.push(`  stopped    ${stopReasonText(summary.stop.reason)}: ${how}`);
  }
  if (summary.log.path) {
    const cut =
      summary.log.bytesCut > 0 ? `, ${formatBytes(summary.log.bytesCut)} cut from the middle` : '';
    lines.push(
      `  log        ${summary.log.path} (${formatBytes(summary.log.bytes)} of output${cut})`,
    );
  }
  if (summary.error) {
    lines.push(`  ${pc.red('error')}      ${summary.error.message} [${summary.error.code}]`);
    lines.push(`  ${pc.bold('fix')}        ${summary.error.hint}`);
  }
  return `${lines.join('\n')}\n`;
}
