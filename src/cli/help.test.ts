/** `berth help run` and the options table of docs/usage.md, checked against each other. */
import { readFileSync } from 'node:fs';
import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { main } from './main.js';

async function helpOf(command: string): Promise<string> {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  let text = '';
  stdout.on('data', (chunk: Buffer) => (text += chunk.toString()));
  const code = await main(['help', command], { stdout, stderr }, {});
  expect(code).toBe(0);
  return text;
}

/** Each option's help entry, joined over its wrapped lines. */
function entries(help: string): Map<string, string> {
  const out = new Map<string, string>();
  let current = '';
  for (const line of help.split('\n')) {
    const start = /^ {2}(--[a-z-]+)/.exec(line);
    if (start) {
      current = start[1] as string;
      out.set(current, line.trim());
    } else if (current && /^ {10,}\S/.test(line)) {
      out.set(current, `${out.get(current) ?? ''} ${line.trim()}`);
    } else {
      current = '';
    }
  }
  return out;
}

const usage = readFileSync(new URL('../../docs/usage.md', import.meta.url), 'utf8');
const table = usage.slice(usage.indexOf('### Options'), usage.indexOf('Durations are'));
const documented = [...table.matchAll(/^\| `(--[a-z-]+)/gm)].map((m) => m[1] as string);

describe('berth help run', () => {
  it('lists exactly the options docs/usage.md documents', async () => {
    const options = [...entries(await helpOf('run')).keys()].filter((o) => o !== '--help');
    expect(options.sort()).toEqual([...documented].sort());
  });

  it('shows at most one default per option', async () => {
    for (const [option, text] of entries(await helpOf('run'))) {
      expect((text.match(/default:/g) ?? []).length, `${option}: ${text}`).toBeLessThanOrEqual(1);
    }
  });
});
