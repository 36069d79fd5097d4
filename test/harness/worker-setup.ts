/**
 * Runs in each integration test worker before its test file: the run's own temp dir becomes
 * TMPDIR (for the tests and every berth they spawn), and the temp dirs a file made through
 * `tempDir` are removed after it. See ownership.ts.
 */
import path from 'node:path';
import { afterAll, inject } from 'vitest';
import { OUTER_TMPDIR_ENV } from './registry.js';
import { removeTempDirs, SUITE_DIR_ENV, suiteTmp } from './ownership.js';

const root = inject('suiteDir');
process.env[SUITE_DIR_ENV] = root;
process.env[OUTER_TMPDIR_ENV] = path.dirname(root);
process.env.TMPDIR = suiteTmp(root);

afterAll(removeTempDirs);
