/**
 * Reading the runtime configuration file, `.berth/config.yml` (or the reference product's
 * `.spacelift/config.yml`, same schema): parsed with source positions, validated completely (every
 * problem, with file:line:column and a hint, before any container starts). Anchors, aliases and
 * merge keys work.
 */
import {
  isAlias,
  isMap,
  isScalar,
  isSeq,
  LineCounter,
  parseDocument,
  type Alias,
  type Document,
  type Node,
  type Pair,
  type YAMLMap,
  visit,
} from 'yaml';
import { parseImageReference } from './image-reference.js';
import { parseConstraint } from './versions.js';
import {
  SETTING_NAMES,
  WORKFLOW_TOOLS,
  normaliseProjectRoot,
  projectRootProblem,
  type ConfigProblem,
  type HookName,
  type RuntimeConfig,
  type StackSettings,
  type WorkflowTool,
} from './runtime-config.js';

class Collector {
  readonly problems: ConfigProblem[] = [];
  constructor(
    private readonly file: string,
    private readonly lines: LineCounter,
  ) {}

  add(node: Node | Pair | null | undefined, message: string, hint: string): void {
    const range =
      (node && 'range' in node ? node.range : undefined) ??
      (node && 'key' in node ? (node.key as Node | null)?.range : undefined);
    const position = this.lines.linePos(range?.[0] ?? 0);
    this.problems.push({
      file: this.file,
      line: position.line,
      column: position.col,
      message,
      hint,
    });
  }
}

/**
 * Bounds on merge-key expansion. The file is a tenant's, and merge keys are expanded here, outside
 * the YAML library's own alias limit: without bounds a few hundred bytes of nested or circular
 * merges block or crash the launcher before any run timeout applies.
 */
export const MERGE_LIMITS = { depth: 16, pairs: 10_000 } as const;

/** What one file's merge expansion has cost so far; each map is expanded once. */
interface MergeState {
  pairs: number;
  exceeded: boolean;
  expanded: Map<YAMLMap, Pair[]>;
}

const mergeStates = new WeakMap<Collector, MergeState>();

function mergeState(out: Collector): MergeState {
  let state = mergeStates.get(out);
  if (!state) {
    state = { pairs: 0, exceeded: false, expanded: new Map() };
    mergeStates.set(out, state);
  }
  return state;
}

function isMergeKey(key: unknown): boolean {
  return (
    (isScalar(key) && (key.value === '<<' || typeof key.value === 'symbol')) ||
    key === Symbol.for('<<')
  );
}

/**
 * The pairs of a map with `<<` merge keys expanded: explicit keys win over merged ones, and among
 * merged maps the first to name a key wins (as YAML's merge key type says). Bounded by
 * MERGE_LIMITS; a cycle, or a bound reached, is a problem at the merge key.
 */
function pairsOf(map: YAMLMap, doc: Document, out: Collector, path: YAMLMap[] = []): Pair[] {
  const state = mergeState(out);
  const done = state.expanded.get(map);
  if (done) {
    state.pairs += done.length;
    return done;
  }
  const merged = new Map<string, Pair>();
  const own: Pair[] = [];
  const fail = (at: Node | Pair, message: string): Pair[] => {
    if (!state.exceeded) {
      state.exceeded = true;
      out.add(
        at,
        message,
        'merge each anchor directly where it is needed, without nesting or repeating merges',
      );
    }
    return own;
  };
  for (const pair of map.items) {
    // A value that is an alias with no anchor was said where the document was parsed; checking
    // it again would only add a second, misleading problem (a setting of no value).
    if (isAlias(pair.value) && resolveNode(pair.value, doc) === undefined) continue;
    if (!isMergeKey(pair.key)) {
      own.push(pair);
      continue;
    }
    if (path.length + 1 >= MERGE_LIMITS.depth) {
      return fail(pair, `merge keys nest deeper than ${MERGE_LIMITS.depth} levels`);
    }
    const sources = isSeq(pair.value) ? pair.value.items : [pair.value];
    for (const source of sources) {
      const target = resolveNode(source, doc);
      state.pairs += 1;
      if (!isMap(target)) continue;
      if (target === map || path.includes(target)) {
        return fail(pair, 'a merge key merges a map into itself (a cycle of anchors)');
      }
      for (const p of pairsOf(target, doc, out, [...path, map])) {
        if (state.exceeded) return own;
        const key = keyText(p);
        if (!merged.has(key)) merged.set(key, p);
      }
    }
  }
  const ownKeys = new Set(own.map((p) => keyText(p)));
  const result = [...[...merged.values()].filter((p) => !ownKeys.has(keyText(p))), ...own];
  state.pairs += result.length;
  if (state.pairs > MERGE_LIMITS.pairs) {
    return fail(map, `merge keys expand to more than ${MERGE_LIMITS.pairs} settings`);
  }
  state.expanded.set(map, result);
  return result;
}

function keyText(pair: Pair): string {
  return isScalar(pair.key) ? String(pair.key.value) : String(pair.key);
}

/**
 * Each alias's target, found in one pass over the document (an alias names the closest anchor
 * before it). The library's own Alias.resolve walks the document on every call, which a file
 * full of aliases turns into quadratic time.
 */
const aliasTargets = new WeakMap<Document, Map<Alias, Node | undefined>>();

function resolveNode(node: unknown, doc: Document): unknown {
  if (!isAlias(node)) return node;
  let targets = aliasTargets.get(doc);
  if (!targets) {
    const anchors = new Map<string, Node>();
    const found = new Map<Alias, Node | undefined>();
    visit(doc, {
      Alias(_, alias) {
        found.set(alias, anchors.get(alias.source));
      },
      Node(_, anchored) {
        if (anchored.anchor) anchors.set(anchored.anchor, anchored);
      },
    });
    aliasTargets.set(doc, found);
    targets = found;
  }
  return targets.get(node);
}

/** Levenshtein distance, for "did you mean" hints. */
function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i += 1) {
    const current = [i];
    for (let j = 1; j <= b.length; j += 1) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      current.push(
        Math.min(
          (previous[j] as number) + 1,
          (current[j - 1] as number) + 1,
          (previous[j - 1] as number) + cost,
        ),
      );
    }
    previous = current;
  }
  return previous[b.length] as number;
}

function readSettings(map: unknown, doc: Document, where: string, out: Collector): StackSettings {
  const node = resolveNode(map, doc);
  // An alias with no anchor: said where the document is parsed (parseYaml), once.
  if (isAlias(map) && node === undefined) return {};
  const settings: StackSettings = {};
  if (node === null || (isScalar(node) && node.value === null)) return settings;
  if (!isMap(node)) {
    out.add(
      node as Node,
      `${where} must be a mapping of settings`,
      'write it as key: value lines, e.g. runner_image: ghcr.io/org/runner:v1',
    );
    return settings;
  }
  for (const pair of pairsOf(node, doc, out)) {
    const name = keyText(pair);
    const value = resolveNode(pair.value, doc) as Node | null;
    const at = `${where}.${name}`;
    if (!(SETTING_NAMES as readonly string[]).includes(name)) {
      const close = SETTING_NAMES.find(
        (s) => editDistance(s, name.toLowerCase().replace(/-/g, '_')) <= 2,
      );
      out.add(
        pair,
        `unknown setting "${name}" in ${where}`,
        close ? `did you mean ${close}?` : `known settings: ${SETTING_NAMES.join(', ')}`,
      );
      continue;
    }
    const scalar = isScalar(value) ? value.value : undefined;
    switch (name) {
      case 'runner_image': {
        if (typeof scalar !== 'string') {
          out.add(
            value ?? pair,
            `${at} must be a string`,
            'e.g. runner_image: ghcr.io/org/runner:v1',
          );
          break;
        }
        const parsed = parseImageReference(scalar);
        if (!parsed.ok)
          out.add(
            value,
            `${at}: ${parsed.error.message}`,
            'use [REGISTRY/]REPOSITORY[:TAG][@sha256:DIGEST]',
          );
        else settings.runner_image = scalar;
        break;
      }
      case 'terraform_version':
      case 'opentofu_version': {
        if (typeof scalar !== 'string' && typeof scalar !== 'number') {
          out.add(
            value ?? pair,
            `${at} must be a version or a constraint`,
            'e.g. "1.6.2" or "~> 1.6" (quote it)',
          );
          break;
        }
        const constraint = parseConstraint(String(scalar));
        if ('error' in constraint) out.add(value, `${at}: ${constraint.error}`, 'quote it in YAML');
        else settings[name] = String(scalar);
        break;
      }
      case 'terraform_workflow_tool':
        if (typeof scalar === 'string' && (WORKFLOW_TOOLS as readonly string[]).includes(scalar))
          settings.terraform_workflow_tool = scalar as WorkflowTool;
        else
          out.add(
            value ?? pair,
            `${at} must be one of ${WORKFLOW_TOOLS.join(', ')}`,
            `got ${JSON.stringify(scalar ?? null)}`,
          );
        break;
      case 'project_root': {
        if (typeof scalar !== 'string') {
          out.add(
            value ?? pair,
            `${at} must be a string`,
            'a path relative to the repository root, e.g. infra/prod',
          );
          break;
        }
        const problem = projectRootProblem(scalar);
        if (problem)
          out.add(
            value,
            `${at}: ${problem}`,
            'use a path relative to the repository root, e.g. infra/prod',
          );
        else settings.project_root = normaliseProjectRoot(scalar);
        break;
      }
      case 'strict_hooks':
        if (typeof scalar === 'boolean') settings.strict_hooks = scalar;
        else
          out.add(
            value ?? pair,
            `${at} must be true or false`,
            `got ${JSON.stringify(scalar ?? null)}`,
          );
        break;
      case 'environment': {
        if (!isMap(value)) {
          out.add(
            value ?? pair,
            `${at} must be a mapping of NAME: value`,
            'e.g. environment: { TF_LOG: info }',
          );
          break;
        }
        const env: Record<string, string> = {};
        for (const entry of pairsOf(value, doc, out)) {
          const key = keyText(entry);
          const v = resolveNode(entry.value, doc);
          if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(key)) {
            out.add(
              entry,
              `${at}: "${key}" is not an environment variable name`,
              'letters, digits and _, not starting with a digit',
            );
          } else if (isScalar(v) && ['string', 'number', 'boolean'].includes(typeof v.value)) {
            env[key] = String(v.value);
          } else {
            out.add(
              (v as Node | null) ?? entry,
              `${at}.${key} must be a string, number or boolean`,
              'quote complex values',
            );
          }
        }
        settings.environment = env;
        break;
      }
      default: {
        // The hooks: lists of shell commands.
        if (!isSeq(value)) {
          out.add(
            value ?? pair,
            `${at} must be a list of shell commands`,
            `e.g. ${name}: ["terraform fmt -check"]`,
          );
          break;
        }
        const commands: string[] = [];
        for (const item of value.items) {
          const v = resolveNode(item, doc);
          if (isScalar(v) && typeof v.value === 'string') commands.push(v.value);
          else out.add(v as Node, `${at}: every hook must be a string`, 'quote the command');
        }
        settings[name as HookName] = commands;
      }
    }
  }
  return settings;
}

export type ParsedConfig =
  { ok: true; config: RuntimeConfig } | { ok: false; problems: ConfigProblem[] };

/** Parses YAML with positions; YAML errors become problems. */
function parseYaml(
  text: string,
  file: string,
): { doc: Document; out: Collector; syntaxErrors: number } {
  const lines = new LineCounter();
  const doc = parseDocument(text, {
    merge: true,
    lineCounter: lines,
    uniqueKeys: true,
    prettyErrors: false,
  });
  const out = new Collector(file, lines);
  for (const error of doc.errors) {
    // Without prettyErrors the parser leaves linePos unset: the offset is where the error is.
    const position = error.linePos?.[0] ?? lines.linePos(error.pos[0]);
    out.problems.push({
      file,
      line: position.line,
      column: position.col,
      message: `YAML: ${error.message.split('\n')[0] ?? error.message}`,
      hint: 'fix the YAML syntax',
    });
  }
  // The parser accepts an alias with no anchor and resolves it to nothing, which would silently
  // drop what it was meant to bring in (`<<: *defaults` with a misspelt anchor).
  visit(doc, {
    Alias(_, alias) {
      // One index of the anchors (resolveNode): Alias.resolve would walk the document each time.
      if (resolveNode(alias, doc) === undefined)
        out.add(
          alias,
          `this value is the alias *${alias.source}, which no anchor defines`,
          `define &${alias.source} on a node before this alias, or fix the alias's name`,
        );
    },
  });
  // An alias with no anchor is no reason to stop there: the rest of the file is checked too, and
  // every problem said at once (a syntax error is: the document is not what it seems).
  return { doc, out, syntaxErrors: doc.errors.length };
}

/** Parses and validates a runtime configuration file's text. Never throws. */
export function parseRuntimeConfig(text: string, file: string): ParsedConfig {
  const { doc, out, syntaxErrors } = parseYaml(text, file);
  if (syntaxErrors > 0) return { ok: false, problems: out.problems };
  const root = doc.contents;
  if (root === null || (isScalar(root) && root.value === null)) {
    // Nothing but comments, or nothing at all: said as such, not as the wrong kind of value.
    out.add(
      root,
      'the runtime configuration is empty',
      'add version: 2 and the settings, or remove the file: berth runs without one',
    );
    return { ok: false, problems: out.problems };
  }
  if (!isMap(root)) {
    out.add(root, 'the runtime configuration must be a mapping', 'start with version: 2');
    return { ok: false, problems: out.problems };
  }
  let version: 1 | 2 | undefined;
  let stackDefaults: StackSettings = {};
  const stacks: Record<string, StackSettings> = {};
  let sawVersion = false;
  for (const pair of pairsOf(root, doc, out)) {
    const key = keyText(pair);
    const value = resolveNode(pair.value, doc) as Node | null;
    if (key === 'version') {
      sawVersion = true;
      const v = isScalar(value) ? value.value : undefined;
      if (v === 1 || v === 2 || v === '1' || v === '2') version = Number(v) as 1 | 2;
      else
        out.add(
          value ?? pair,
          `version must be 1 or 2, not ${JSON.stringify(v ?? null)}`,
          'use version: 2 for new files',
        );
    } else if (key === 'stack_defaults') {
      stackDefaults = readSettings(pair.value, doc, 'stack_defaults', out);
    } else if (key === 'stacks') {
      if (isScalar(value) && value.value === null) continue;
      if (!isMap(value)) {
        out.add(
          value ?? pair,
          'stacks must be a mapping from stack id to settings',
          'e.g. stacks: { prod: { project_root: infra/prod } }',
        );
        continue;
      }
      for (const entry of pairsOf(value, doc, out)) {
        stacks[keyText(entry)] = readSettings(entry.value, doc, `stacks.${keyText(entry)}`, out);
      }
    } else if (!key.startsWith('x-')) {
      out.add(
        pair,
        `unknown key "${key}"`,
        'the top level has version, stack_defaults and stacks (and x-* keys for YAML anchors)',
      );
    }
  }
  if (!sawVersion) out.add(root, 'version is missing', 'add version: 2 at the top');
  if (out.problems.length > 0 || version === undefined)
    return { ok: false, problems: out.problems };
  return { ok: true, config: { file, version, stackDefaults, stacks } };
}

/**
 * A stack's own settings from a file (for `berth run --stack-settings FILE`): the settings
 * mapping alone, validated like a stack entry of the runtime configuration.
 */
export function parseStackSettings(
  text: string,
  file: string,
): { ok: true; settings: StackSettings } | { ok: false; problems: ConfigProblem[] } {
  const { doc, out, syntaxErrors } = parseYaml(text, file);
  if (syntaxErrors > 0) return { ok: false, problems: out.problems };
  const settings = readSettings(doc.contents, doc, 'stack settings', out);
  return out.problems.length > 0 ? { ok: false, problems: out.problems } : { ok: true, settings };
}
