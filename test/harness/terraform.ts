/**
 * The machine's real Terraform, for the tests that run it end to end (no package installs it:
 * HashiCorp's BUSL licence). Where there is none those tests are skipped, by name (.ci/run).
 */
import { execFileSync } from 'node:child_process';

/** The real terraform on this machine and its version, or null. */
export function installedTerraform(): { path: string; version: string } | null {
  try {
    const path = execFileSync('sh', ['-c', 'command -v terraform'], { encoding: 'utf8' }).trim();
    const version = JSON.parse(
      execFileSync(path, ['version', '-json'], {
        encoding: 'utf8',
        env: { ...process.env, CHECKPOINT_DISABLE: '1', TF_CLI_CONFIG_FILE: '/dev/null' },
      }),
    ) as { terraform_version: string };
    return { path, version: version.terraform_version };
  } catch {
    return null;
  }
}
