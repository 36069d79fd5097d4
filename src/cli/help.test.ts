/**
 * `berth help run` and the options table of docs/usage.md, checked against each other; the server's
 * commands each with a description and `--json`.
 */
import { readFileSync } from 'node:fs';
import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { main } from './main.js';

async function helpOf(command: string): Promise<string> {
  return helpText(['help', command]);
}

/** What `berth ARGV` prints on stdout (help: exit code 0). */
async function helpText(argv: string[]): Promise<string> {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  let text = '';
  stdout.on('data', (chunk: Buffer) => (text += chunk.toString()));
  const code = await main(argv, { stdout, stderr }, {});
  expect(code).toBe(0);
  return text;
}

/** The subcommands a command's help lists, each with its description ('' when it has none). */
function subcommands(help: string): Map<string, string> {
  const out = new Map<string, string>();
  let current = '';
  for (const line of help.slice(help.indexOf('Commands:')).split('\n').slice(1)) {
    const start = /^ {2}(\S+)/.exec(line);
    if (start) {
      current = start[1] as string;
      out.set(current, line.trim().split(/ {2,}/)[1] ?? '');
    } else if (current && /^ {10,}\S/.test(line)) {
      out.set(current, `${out.get(current) ?? ''} ${line.trim()}`);
    }
  }
  out.delete('help');
  return out;
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

describe("the server's commands", () => {
  const groups = [['stack'], ['stack', 'env'], ['runs'], ['pool'], ['token']];

  it.each(groups.map((group) => [group.join(' '), group] as const))(
    'berth %s … has a description for every subcommand',
    async (_name, group) => {
      const listed = subcommands(await helpText([...group, '--help']));
      expect(listed.size).toBeGreaterThan(1);
      for (const [name, description] of listed) expect(description, name).not.toBe('');
    },
  );

  it('every one of them takes --json, as docs/server.md says', async () => {
    const leaves = [['login']];
    for (const group of [...groups, ['token']])
      for (const name of subcommands(await helpText([...group, '--help'])).keys())
        if (name !== 'env') leaves.push([...group, name]);
    expect(leaves.length).toBeGreaterThan(15);
    for (const leaf of leaves)
      expect([...entries(await helpText([...leaf, '--help'])).keys()], leaf.join(' ')).toContain(
        '--json',
      );
  });

  it("says where a stack's source may be: file:// and --dir on the workers' machines, for the admin", async () => {
    for (const command of ['create', 'update']) {
      const options = entries(await helpText(['stack', command, '--help']));
      expect(options.get('--repo')).toContain('file://');
      expect(options.get('--repo')).toContain(
        'only with an admin token, for a stack of a private pool',
      );
      expect(options.get('--dir')).toContain("a directory on the workers' machines");
      expect(options.get('--dir')).toContain('resolved against the current directory here');
      expect(options.get('--dir')).not.toContain("server's machine");
      expect(options.get('--tool')).toContain('terraform | opentofu | custom');
    }
  });
});

describe("the parser's own errors", () => {
  it('are said as berth says errors: one line with the code, then the fix', async () => {
    const stdout = new PassThrough();
    const stderr = new PassThrough();
    let said = '';
    stderr.on('data', (chunk: Buffer) => (said += chunk.toString()));
    const code = await main(['run', '.', '--imgae', 'x'], { stdout, stderr }, {});
    expect(code).toBe(2);
    // Colours (bold `fix:`) as this process's terminal settings have them: not what is checked.
    expect(said.replace(/\x1b\[[0-9;]*m/g, '')).toBe(
      "berth: error: unknown option '--imgae' (Did you mean --image?) [BERTH_USAGE]\n" +
        'fix: Run `berth run --help` for its arguments, options and the values they take.\n',
    );
  });
});
