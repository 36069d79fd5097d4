/**
 * Writes docs/api/openapi.json from the API's route schemas (`npm run openapi`). A test fails
 * when the committed document and the server's differ.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { buildServer, openApiDocument } from '../src/server/app.js';
import { hashToken } from '../src/server/auth.js';
import { SecretBox } from '../src/server/secrets.js';
import { openStore } from '../src/store/open-store.js';
import { BlobStore } from '../src/server/blob-store.js';

const dir = mkdtempSync(path.join(tmpdir(), 'berth-openapi-'));
try {
  const store = await openStore({ dataDir: dir });
  const app = await buildServer({
    store,
    secrets: SecretBox.fromKey(Buffer.alloc(32)),
    blobs: await BlobStore.open(path.join(dir, 'blobs'), 1024 ** 3),
    adminTokenHash: hashToken('unused'),
    version: 'openapi',
  });
  const file = new URL('../docs/api/openapi.json', import.meta.url);
  writeFileSync(file, `${JSON.stringify(openApiDocument(app), null, 2)}\n`);
  await app.close();
  await store.close();
  console.log(`wrote ${file.pathname}`);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
