/**
 * The small part of Go's text/template that workflow files written for the reference use:
 *
 *   {{ .Field }}                          a value (string, number or boolean)
 *   {{ if .Field }}…{{ else }}…{{ end }}  `if not .Field` too; false, "", 0 and [] are false
 *   {{ range .List }}…{{ . }}…{{ end }}   once per element, `.` being the element
 *   {{- … -}}                             trims the white space before / after the action
 *
 * Anything else (functions, pipelines, variables, nested fields) is an error that names it:
 * berth fills command lines, it does not run template programs.
 */

export type TemplateValue = string | number | boolean | readonly string[];
export type TemplateData = Readonly<Record<string, TemplateValue>>;

type Node =
  | { kind: 'text'; text: string }
  | { kind: 'value'; path: string }
  | { kind: 'if'; negated: boolean; path: string; then: Node[]; otherwise: Node[] }
  | { kind: 'range'; path: string; body: Node[] };

class TemplateError extends Error {}

interface Action {
  text: string;
  /** Where the action starts in the template, for messages. */
  at: number;
}

/** Splits the template into text and actions, applying the trim markers. */
function tokenize(template: string): (string | Action)[] {
  const tokens: (string | Action)[] = [];
  const pattern = /\{\{(-\s)?\s*([\s\S]*?)\s*(\s-)?\}\}/g;
  let last = 0;
  let trimNext = false;
  for (let match = pattern.exec(template); match; match = pattern.exec(template)) {
    let text = template.slice(last, match.index);
    if (trimNext) text = text.replace(/^\s+/, '');
    if (match[1]) text = text.replace(/\s+$/, '');
    if (text) tokens.push(text);
    tokens.push({ text: match[2] ?? '', at: match.index });
    trimNext = Boolean(match[3]);
    last = pattern.lastIndex;
  }
  let rest = template.slice(last);
  if (trimNext) rest = rest.replace(/^\s+/, '');
  if (rest.includes('{{'))
    throw new TemplateError(`an unclosed "{{" at ${template.indexOf('{{', last)}`);
  if (rest) tokens.push(rest);
  return tokens;
}

const FIELD = /^\.(?:[A-Za-z_][A-Za-z0-9_]*)?$/;

function field(text: string, action: Action): string {
  if (!FIELD.test(text))
    throw new TemplateError(`{{ ${action.text} }} is not something berth fills`);
  return text;
}

/** Parses tokens until one of `stops` (an action text) and returns the nodes and that stop. */
function parse(
  tokens: (string | Action)[],
  position: { index: number },
  stops: readonly string[],
): { nodes: Node[]; stop: string | null } {
  const nodes: Node[] = [];
  while (position.index < tokens.length) {
    const token = tokens[position.index++] as string | Action;
    if (typeof token === 'string') {
      nodes.push({ kind: 'text', text: token });
      continue;
    }
    const words = token.text.split(/\s+/);
    const [keyword] = words;
    if (stops.includes(token.text)) return { nodes, stop: token.text };
    if (keyword === 'if') {
      const negated = words[1] === 'not';
      const rest = words.slice(negated ? 2 : 1);
      if (rest.length !== 1)
        throw new TemplateError(`{{ ${token.text} }} is not something berth fills`);
      const path = field(rest[0] as string, token);
      const then = parse(tokens, position, ['else', 'end']);
      const otherwise =
        then.stop === 'else' ? parse(tokens, position, ['end']) : { nodes: [], stop: then.stop };
      if (otherwise.stop !== 'end') throw new TemplateError(`{{ ${token.text} }} has no {{ end }}`);
      nodes.push({ kind: 'if', negated, path, then: then.nodes, otherwise: otherwise.nodes });
    } else if (keyword === 'range') {
      if (words.length !== 2)
        throw new TemplateError(`{{ ${token.text} }} is not something berth fills`);
      const path = field(words[1] as string, token);
      const body = parse(tokens, position, ['end']);
      if (body.stop !== 'end') throw new TemplateError(`{{ ${token.text} }} has no {{ end }}`);
      nodes.push({ kind: 'range', path, body: body.nodes });
    } else if (keyword === 'end' || keyword === 'else') {
      throw new TemplateError(`{{ ${token.text} }} at ${token.at} closes nothing`);
    } else {
      nodes.push({ kind: 'value', path: field(token.text, token) });
    }
  }
  return { nodes, stop: null };
}

function lookup(
  path: string,
  data: TemplateData,
  dot: TemplateValue | TemplateData,
): TemplateValue | TemplateData {
  if (path === '.') return dot;
  const name = path.slice(1);
  // Fields are the run's, also inside a range (Go would look them up on the element).
  if (!Object.hasOwn(data, name)) {
    throw new TemplateError(
      `{{ ${path} }} is not a value berth knows; the values are ${Object.keys(data)
        .map((k) => `.${k}`)
        .join(', ')}`,
    );
  }
  return data[name] as TemplateValue;
}

function truthy(value: TemplateValue | TemplateData): boolean {
  if (Array.isArray(value)) return value.length > 0;
  if (typeof value === 'object') return true;
  return Boolean(value);
}

function render(
  nodes: readonly Node[],
  data: TemplateData,
  dot: TemplateValue | TemplateData,
): string {
  let out = '';
  for (const node of nodes) {
    if (node.kind === 'text') out += node.text;
    else if (node.kind === 'value') {
      const value = lookup(node.path, data, dot);
      if (typeof value === 'object')
        throw new TemplateError(`{{ ${node.path} }} is a list or the whole run, not one value`);
      out += String(value);
    } else if (node.kind === 'if') {
      const holds = truthy(lookup(node.path, data, dot)) !== node.negated;
      out += render(holds ? node.then : node.otherwise, data, dot);
    } else {
      const list = lookup(node.path, data, dot);
      if (!Array.isArray(list))
        throw new TemplateError(`{{ range ${node.path} }}: ${node.path} is not a list`);
      for (const item of list as readonly string[]) out += render(node.body, data, item);
    }
  }
  return out;
}

/** Fills a command template; an error says what in the template berth cannot fill. */
export function renderTemplate(
  template: string,
  data: TemplateData,
): { text: string } | { error: string } {
  try {
    const tokens = tokenize(template);
    const position = { index: 0 };
    const { nodes } = parse(tokens, position, []);
    return { text: render(nodes, data, data) };
  } catch (err) {
    if (err instanceof TemplateError) return { error: err.message };
    throw err;
  }
}
