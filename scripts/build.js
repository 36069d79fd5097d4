// Builds berth for running: src/ and the dependencies every run needs bundled into
// dist/bundle/main.js, berth's own lazily loaded parts in chunks beside it. Bundling halves the
// time Node.js spends loading berth (see docs/performance.md). Dependencies that only some runs
// load (the AWS SDK, openpgp, fflate, undici, the YAML parser) stay ordinary packages, loaded by Node.js
// when first used. Type checking is `npm run typecheck`; this step does not check types.
import { rm } from 'node:fs/promises';
import { build } from 'esbuild';

const outdir = 'dist/bundle';
await rm('dist', { recursive: true, force: true });
const result = await build({
  entryPoints: { main: 'src/cli/main.ts' },
  bundle: true,
  splitting: true,
  platform: 'node',
  target: 'node20',
  format: 'esm',
  // The server's dependencies load only for `berth server` (better-sqlite3 is native code).
  external: [
    '@aws-sdk/*',
    'fflate',
    'openpgp',
    'undici',
    'yaml',
    'fastify',
    '@fastify/*',
    'typebox',
    'kysely',
    'better-sqlite3',
    'pg',
  ],
  // Every file stays two levels below the package root: code finds runner/ and keys/ relative
  // to its own file.
  outdir,
  chunkNames: '[name]-[hash]',
  // CommonJS dependencies call require() for Node's own modules.
  banner: {
    js: "import { createRequire as berthCreateRequire } from 'node:module'; const require = berthCreateRequire(import.meta.url);",
  },
  legalComments: 'linked',
  metafile: true,
  logLevel: 'warning',
});
const bytes = Object.values(result.metafile.outputs).reduce((sum, o) => sum + o.bytes, 0);
console.log(
  `built ${outdir}/main.js (${Object.keys(result.metafile.outputs).length} files, ${(bytes / 1024).toFixed(0)} KiB)`,
);
