#!/usr/bin/env node
import { main } from '../dist/bundle/main.js';

const code = await main(
  process.argv.slice(2),
  { stdout: process.stdout, stderr: process.stderr },
  process.env,
);
process.exitCode = code;
