// Builds berth for running: src/ and the dependencies every run needs bundled into
// dist/bundle/main.js, berth's own lazily loaded parts in chunks beside it. Bundling halves the
// time Node.js spends loading berth (see docs/performance.md). Dependencies that only some runs
// load (the AWS SDK, openpgp, fflate, undici, the YAML parser) stay ordinary packages, loaded by Node.js
// when first used. Type checking is `npm run typecheck`; this step does not check types.
import { readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
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

// The web page (src/web): a browser bundle and its stylesheet, named by content hash, and the
// page that loads them. `berth server` serves dist/web; nothing of it comes from elsewhere.
const web = await build({
  entryPoints: { app: 'src/web/main.ts', style: 'src/web/style.css' },
  bundle: true,
  platform: 'browser',
  target: ['chrome120', 'firefox120', 'safari17'],
  format: 'esm',
  minify: true,
  outdir: 'dist/web',
  entryNames: 'assets/[name]-[hash]',
  legalComments: 'none',
  metafile: true,
  logLevel: 'warning',
});
const assets = Object.keys(web.metafile.outputs).map((file) => path.relative('dist/web', file));
const script = assets.find((file) => /^assets\/app-.*\.js$/.test(file));
const style = assets.find((file) => /^assets\/style-.*\.css$/.test(file));
const page = (await readFile('src/web/index.html', 'utf8'))
  .replace('/ui/assets/SCRIPT', `/ui/${script}`)
  .replace('/ui/assets/STYLE', `/ui/${style}`);
await writeFile('dist/web/index.html', page);
const webBytes = Object.values(web.metafile.outputs).reduce((sum, o) => sum + o.bytes, 0);
console.log(`built dist/web (${(webBytes / 1024).toFixed(0)} KiB)`);
