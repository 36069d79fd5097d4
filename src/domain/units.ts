/** Pure parsers for the human units berth's options take: durations, byte sizes, CPU counts. */

const DURATION_UNITS: Record<string, number> = {
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
};

/**
 * Parses a duration such as `70m`, `1h30m`, `45s`, `250ms` or `7d` into milliseconds. A bare number is
 * rejected: the unit is never guessed. Returns an error message instead of throwing so callers can
 * name the option that carried the value.
 */
export function parseDuration(text: string): { ms: number } | { error: string } {
  const trimmed = text.trim();
  const part = /(\d+(?:\.\d+)?)(ms|d|h|m|s)/y;
  let total = 0;
  let index = 0;
  if (trimmed === '') return { error: 'empty duration' };
  while (index < trimmed.length) {
    part.lastIndex = index;
    const match = part.exec(trimmed);
    if (!match) {
      return {
        error: `cannot read "${trimmed.slice(index)}" as a duration; use a number with a unit: ms, s, m, h or d (e.g. 30s, 7m, 1h30m, 7d)`,
      };
    }
    total += Number(match[1]) * (DURATION_UNITS[match[2] as string] as number);
    index = part.lastIndex;
  }
  if (total <= 0) return { error: 'the duration must be greater than zero' };
  return { ms: Math.round(total) };
}

const SIZE_UNITS: Record<string, number> = {
  '': 1,
  b: 1,
  k: 1024,
  kb: 1024,
  kib: 1024,
  m: 1024 ** 2,
  mb: 1024 ** 2,
  mib: 1024 ** 2,
  g: 1024 ** 3,
  gb: 1024 ** 3,
  gib: 1024 ** 3,
};

/** Parses `512m`, `4MiB`, `2g` or a plain byte count (binary multiples, as Docker does). */
export function parseByteSize(text: string): { bytes: number } | { error: string } {
  const match = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(text);
  const unit = match ? SIZE_UNITS[(match[2] ?? '').toLowerCase()] : undefined;
  if (!match || unit === undefined) {
    return { error: `cannot read "${text}" as a size; use e.g. 512m, 2g or 4MiB` };
  }
  const bytes = Math.floor(Number(match[1]) * unit);
  if (bytes <= 0) return { error: 'the size must be greater than zero' };
  return { bytes };
}

/** Parses a CPU count such as `1.5` into Docker's NanoCPUs. */
export function parseCpus(text: string): { nanoCpus: number } | { error: string } {
  if (!/^\s*\d+(\.\d+)?\s*$/.test(text) || Number(text) <= 0) {
    return {
      error: `cannot read "${text}" as a CPU count; use a positive number such as 1 or 1.5`,
    };
  }
  return { nanoCpus: Math.round(Number(text) * 1e9) };
}

/** Formats milliseconds for people: 850ms, 12.3s, 4m05s, 1h10m. */
export function formatDuration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)}ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)}s`;
  const totalSeconds = Math.round(ms / 1000);
  const hours = Math.floor(totalSeconds / 3600);
  const minutes = Math.floor((totalSeconds % 3600) / 60);
  const seconds = totalSeconds % 60;
  if (hours > 0) return `${hours}h${String(minutes).padStart(2, '0')}m`;
  return `${minutes}m${String(seconds).padStart(2, '0')}s`;
}

/** Formats a byte count with binary units: 512 B, 3.2 KiB, 4.0 MiB. */
export function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value.toFixed(1)} ${units[unit]}`;
}
