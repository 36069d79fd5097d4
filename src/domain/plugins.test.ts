import { describe, expect, it } from 'vitest';
import {
  mergeCliConfig,
  providerInstallationBlock,
  scanPlugins,
  usesFilesystemMirror,
  type PluginEntry,
} from './plugins.js';

const file = (path: string, mode = 0o755): PluginEntry => ({ path, kind: 'file', mode });

describe('scanPlugins', () => {
  it('finds providers laid out as the seed document shows, and warns about each broken rule', () => {
    const scan = scanPlugins(
      [
        { path: 'registry.myorg.io', kind: 'directory', mode: 0o755 },
        file('registry.myorg.io/myorg/sops/1.0.0/linux_amd64/terraform-provider-sops'),
        file(
          'registry.myorg.io/myorg/vault/2.1.0-beta1/linux_amd64/terraform-provider-vault_v2.1.0-beta1',
        ),
        file('registry.myorg.io/myorg/sops/1.0.0/terraform-provider-sops'),
        file('registry.myorg.io/myorg/sops/1.0.0/darwin_arm64/terraform-provider-sops'),
        file('registry.myorg.io/myorg/sops/1.0/linux_amd64/terraform-provider-sops'),
        file('registry.myorg.io/myorg/sops/1.0.1/linux_amd64/sops-provider'),
        file('registry.myorg.io/myorg/sops/1.0.2/linux_amd64/terraform-provider-sops', 0o644),
        file('registry.myorg.io/myorg/sops/1.0.3/linuxamd64/terraform-provider-sops'),
        file('README'),
      ],
      'linux_amd64',
    );
    expect(scan.providers).toEqual([
      {
        source: 'registry.myorg.io/myorg/sops',
        version: '1.0.0',
        platform: 'linux_amd64',
        file: '/plugins/registry.myorg.io/myorg/sops/1.0.0/linux_amd64/terraform-provider-sops',
      },
      {
        source: 'registry.myorg.io/myorg/vault',
        version: '2.1.0-beta1',
        platform: 'linux_amd64',
        file: '/plugins/registry.myorg.io/myorg/vault/2.1.0-beta1/linux_amd64/terraform-provider-vault_v2.1.0-beta1',
      },
    ]);
    expect(scan.warnings.map((w) => [w.path, w.rule.split(':')[0]?.split(',')[0]])).toEqual([
      ['/plugins/registry.myorg.io/myorg/sops/1.0.0/terraform-provider-sops', 'wrong depth'],
      [
        '/plugins/registry.myorg.io/myorg/sops/1.0.0/darwin_arm64/terraform-provider-sops',
        'built for darwin_arm64',
      ],
      [
        '/plugins/registry.myorg.io/myorg/sops/1.0/linux_amd64/terraform-provider-sops',
        '"1.0" is not a semantic version (MAJOR.MINOR.PATCH)',
      ],
      [
        '/plugins/registry.myorg.io/myorg/sops/1.0.1/linux_amd64/sops-provider',
        'the file must be named terraform-provider-sops or terraform-provider-sops_v1.0.1',
      ],
      [
        '/plugins/registry.myorg.io/myorg/sops/1.0.2/linux_amd64/terraform-provider-sops',
        'not executable',
      ],
      [
        '/plugins/registry.myorg.io/myorg/sops/1.0.3/linuxamd64/terraform-provider-sops',
        '"linuxamd64" is not an <os>_<arch> directory such as linux_amd64',
      ],
      ['/plugins/README', 'wrong depth'],
    ]);
  });
});

describe('CLI configuration', () => {
  const providers = scanPlugins(
    [
      file('registry.myorg.io/myorg/sops/1.0.0/linux_amd64/terraform-provider-sops'),
      file('registry.myorg.io/myorg/sops/1.1.0/linux_amd64/terraform-provider-sops'),
    ],
    'linux_amd64',
  ).providers;

  it('mirrors exactly the providers found and sends everything else to the registry', () => {
    expect(providerInstallationBlock(providers)).toBe(
      'provider_installation {\n  filesystem_mirror {\n    path    = "/plugins"\n    include = ["registry.myorg.io/myorg/sops"]\n  }\n  direct {\n    exclude = ["registry.myorg.io/myorg/sops"]\n  }\n}\n',
    );
    expect(providerInstallationBlock([])).toBeNull();
  });

  it('keeps the user configuration and adds the block, or leaves the user block alone and says so', () => {
    const block = providerInstallationBlock(providers);
    expect(mergeCliConfig('plugin_cache_dir = "/cache"\n', block)).toEqual({
      text: `plugin_cache_dir = "/cache"\n\n# Added by berth: providers from /plugins\n${block}`,
      warning: null,
    });
    const own = 'provider_installation {\n  direct {}\n}\n';
    expect(mergeCliConfig(own, block).text).toBe(own);
    expect(mergeCliConfig(own, block).warning).toContain('own provider_installation block');
    expect(mergeCliConfig(null, null)).toEqual({ text: '', warning: null });
  });

  it.each<['terraform' | 'tofu', string, boolean]>([
    ['terraform', '0.12.31', false],
    ['terraform', '0.13.0', true],
    ['terraform', '1.5.7', true],
    ['tofu', '1.6.0', true],
  ])('%s %s uses the filesystem mirror: %s', (tool, version, expected) => {
    expect(usesFilesystemMirror(tool, version)).toBe(expected);
  });
});
