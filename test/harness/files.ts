/** Job directories for the tests: a fresh temporary directory with the given files. */
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { tempDir } from './ownership.js';

export function jobDir(files: Record<string, string> = { 'main.tf': 'terraform {}\n' }): string {
  const dir = tempDir('berth-job-');
  for (const [name, content] of Object.entries(files)) {
    mkdirSync(path.dirname(path.join(dir, name)), { recursive: true });
    writeFileSync(path.join(dir, name), content);
  }
  return dir;
}
