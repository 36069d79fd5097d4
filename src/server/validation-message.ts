/**
 * A request that does not match its schema, said for people: which field, the value given, and
 * what is accepted (the values of a choice; for a pattern, the description the schema gives the
 * field, never the regular expression), from the validator's own errors. The schemas stay the one
 * source of the rules and of their wording (src/api/schemas.ts); this only puts them together.
 */

/** The part of a validator error this reads (Ajv's shape, as Fastify hands it on). */
export interface SchemaError {
  instancePath: string;
  keyword: string;
  params: Record<string, unknown>;
  message?: string;
  /** The schema of the refused value (the validator's `verbose` option): its description. */
  parentSchema?: { description?: unknown };
}

/**
 * `errors` for the request part `context` ('body', 'querystring', 'params'), whose data was
 * `input`; null when none of them is of a kind worded here (the validator's message stands).
 */
export function validationMessage(
  errors: readonly SchemaError[],
  context: string,
  input: unknown,
): string | null {
  const first = errors[0];
  if (!first) return null;
  const at = first.instancePath;
  const name = at ? at.slice(1).replace(/\//g, '.') : context;
  const value = (): string => show(valueAt(input, at));
  const here = errors.filter((e) => e.instancePath === at);
  const allowed = here.flatMap((e) =>
    e.keyword === 'const'
      ? [e.params.allowedValue]
      : e.keyword === 'enum'
        ? ((e.params.allowedValues as unknown[] | undefined) ?? [])
        : [],
  );
  if (allowed.length > 0) {
    const orNull = here.some((e) => e.keyword === 'type' && e.params.type === 'null');
    return `${name} ${value()} is not one of: ${allowed.map(String).join(', ')}${orNull ? ' (or null)' : ''}`;
  }
  switch (first.keyword) {
    case 'pattern': {
      // Every pattern of the API's schemas has a description (schemas.test.ts); a pattern without
      // one would be some other schema's, whose validator message is the best there is.
      const accepted = first.parentSchema?.description;
      return typeof accepted === 'string'
        ? `${name} ${value()} is not valid: it must be ${accepted}`
        : `${name} ${value()} is not valid: it ${first.message ?? 'does not match the schema'}`;
    }
    case 'required':
      return `${context}${at ? ` ${name}` : ''} needs the field ${String(first.params.missingProperty)}`;
    case 'additionalProperties':
      return `${context}${at ? ` ${name}` : ''} has a field this endpoint does not take: ${String(first.params.additionalProperty)}`;
    case 'maxLength':
    case 'minLength':
    case 'maximum':
    case 'minimum':
    case 'maxItems':
    case 'minItems': {
      // Not the value (see below); the bound in words, not the validator's.
      const limit = Number(first.params.limit);
      if (!Number.isFinite(limit))
        return `${name} is not valid: it ${first.message ?? 'does not match the schema'}`;
      const plural = (n: number, one: string): string => `${n} ${one}${n === 1 ? '' : 's'}`;
      const said: Record<string, string> = {
        maxLength: `is too long: at most ${plural(limit, 'character')}`,
        minLength:
          limit === 1
            ? 'is empty: it needs a value'
            : `is too short: at least ${plural(limit, 'character')}`,
        maximum: `is too large: at most ${limit}`,
        minimum: `is too small: at least ${limit}`,
        maxItems: `has too many entries: at most ${limit}`,
        minItems: `has too few entries: at least ${limit}`,
      };
      return `${name} ${said[first.keyword] as string}`;
    }
    case 'type':
    case 'format':
      // Not the value: these fields are free text, a secret variable's value among them, and the
      // answer is printed where the caller runs (a terminal, a CI log). A choice or a pattern's
      // field above is an identifier the API shows back anyway.
      return `${name} is not valid: it ${first.message ?? 'does not match the schema'}`;
    default:
      return null;
  }
}

/** The value at a JSON pointer (the validator's instancePath) in `input`. */
function valueAt(input: unknown, pointer: string): unknown {
  let current = input;
  for (const part of pointer.split('/').slice(1)) {
    const key = part.replace(/~1/g, '/').replace(/~0/g, '~');
    if (current === null || typeof current !== 'object') return undefined;
    current = (current as Record<string, unknown>)[key];
  }
  return current;
}

/** A value as JSON, cut to 100 characters (a body may be hostile or huge). */
function show(value: unknown): string {
  const text = value === undefined ? 'undefined' : JSON.stringify(value);
  return text.length > 100 ? `${text.slice(0, 100)}…` : text;
}
