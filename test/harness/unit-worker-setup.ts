/** Each unit test file's own scratch TMPDIR, removed after the file (see unit-setup.ts). */
import { mkdtempSync, rmSync } from 'node:fs';
import path from 'node:path';
import { afterAll, inject } from 'vitest';
import { suiteTmp } from './ownership.js';

const scratch = mkdtempSync(path.join(suiteTmp(inject('suiteDir')), 'unit-'));
process.env.TMPDIR = scratch;

afterAll(() => rmSync(scratch, { recursive: true, force: true }));
