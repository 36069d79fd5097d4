/** Job directories for the tests: a fresh temporary directory with the given files. */
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

export function jobDir(files: Record<string, string> = { 'main.tf': 'terraform {}\n' }): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'berth-job-'));
  for (const [name, content] of Object.entries(files)) {
    mkdirSync(path.dirname(path.join(dir, name)), { recursive: true });
    writeFileSync(path.join(dir, name), content);
  }
  return dir;
}
