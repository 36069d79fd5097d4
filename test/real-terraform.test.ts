/**
 * The real Terraform binary end to end, where the machine has one (`command -v terraform`): served
 * from the test release mirror (zip, SHA256SUMS signed with the run's test key), resolved,
 * downloaded, verified, cached and mounted by berth into a proposed run on the busybox image
 * (terraform is a static Go binary), running `terraform init` and `terraform plan` on a
 * configuration without providers. No package installs Terraform (BUSL licence): on a machine
 * without it this test is skipped with the reason, the one skip .ci/run allows.
 */
import { readFileSync } from 'node:fs';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import type { EngineClient } from '../src/executor/docker/engine-client.js';
import { expectNothingLeftBehind } from './harness/cleanup.js';
import { finished, runBerth, testStateDir } from './harness/cli.js';
import { testEngine } from './harness/engine.js';
import { jobDir } from './harness/files.js';
import { startReleaseMirror, type ReleaseMirror } from './harness/release-mirror.js';
import { installedTerraform } from './harness/terraform.js';

const terraform = installedTerraform();
let engine: EngineClient;
let mirror: ReleaseMirror | undefined;

beforeAll(async () => {
  engine = testEngine();
  if (!terraform) return;
  mirror = await startReleaseMirror('terraform');
  await mirror.publish(terraform.version, { content: readFileSync(terraform.path) });
});

afterEach(async () => {
  await expectNothingLeftBehind(engine);
});

afterAll(async () => {
  await mirror?.stop();
  engine.close();
});

describe('real Terraform', () => {
  it('runs terraform init and plan from the test release mirror in a proposed run', async (ctx) => {
    if (!terraform || !mirror) {
      ctx.skip('terraform is not installed here (no package provides it); .ci/run lists this skip');
      return;
    }
    const dir = jobDir({
      '.berth/config.yml': `version: 2\nstack_defaults:\n  terraform_version: "${terraform.version}"\n`,
      'main.tf':
        'resource "terraform_data" "example" {\n  input = "from berth"\n}\n\noutput "greeting" {\n  value = "hello from a real terraform"\n}\n',
    });
    const result = await runBerth(
      [
        'run',
        dir,
        '--image',
        inject('busyboxImage'),
        '--pull',
        'never',
        '--network',
        'none',
        '--type',
        'proposed',
        '--env',
        'CHECKPOINT_DISABLE=1',
        '--json',
      ],
      {
        BERTH_STATE_DIR: testStateDir(),
        BERTH_TERRAFORM_RELEASES_URL: mirror.baseUrl,
        BERTH_TERRAFORM_SIGNING_KEY_FILE: mirror.keyFile,
      },
    );
    const end = finished(result);
    expect(result.code, JSON.stringify(end.error) + result.stderr).toBe(0);
    expect(result.events.find((e) => e.type === 'tool.ready')).toMatchObject({
      tool: 'terraform',
      version: terraform.version,
    });
    const log = result.events
      .flatMap((e) => (e.type === 'log' ? [`${e.phase}: ${e.text}`] : []))
      .join('')
      // terraform colours its output.
      .replace(/\u001b\[[0-9;]*m/g, '');
    expect(log).toContain('Terraform has been successfully initialized!');
    expect(log).toMatch(/Plan: 1 to add, 0 to change, 0 to destroy/);
    expect(end.phases.map((p) => [p.name, p.exitCode])).toEqual([
      ['init', 0],
      ['plan', 0],
    ]);
    expect(end).toMatchObject({ state: 'FINISHED', plan: { add: 1, change: 0, destroy: 0 } });
  });
});
