import { describe, expect, it } from 'vitest';
import { BerthError } from '../domain/errors.js';
import { withToolFlags } from './run-config.js';

function failure(run: () => unknown): BerthError {
  try {
    run();
  } catch (err) {
    expect(err).toBeInstanceOf(BerthError);
    return err as BerthError;
  }
  throw new Error('expected an error');
}

describe('--tool and --tool-version', () => {
  it.each([
    [
      'terraform',
      '1.6.2',
      { terraform_workflow_tool: 'TERRAFORM_FOSS', terraform_version: '1.6.2' },
    ],
    ['opentofu', '~> 1.8', { terraform_workflow_tool: 'OPEN_TOFU', opentofu_version: '~> 1.8' }],
    ['tofu', undefined, { terraform_workflow_tool: 'OPEN_TOFU' }],
    [
      'OPEN_TOFU',
      '>= 1.6, < 2.0',
      { terraform_workflow_tool: 'OPEN_TOFU', opentofu_version: '>= 1.6, < 2.0' },
    ],
    ['custom', undefined, { terraform_workflow_tool: 'CUSTOM' }],
  ])('--tool %s --tool-version %s', (tool, version, settings) => {
    expect(withToolFlags({ runner_image: 'x' }, tool, version)).toEqual({
      runner_image: 'x',
      ...settings,
    });
  });

  it('takes the tool from the stack settings file when --tool is not given', () => {
    expect(
      withToolFlags({ terraform_workflow_tool: 'TERRAFORM_FOSS' }, undefined, '1.5.7'),
    ).toEqual({
      terraform_workflow_tool: 'TERRAFORM_FOSS',
      terraform_version: '1.5.7',
    });
  });

  it('refuses an unknown tool, a bad version, a version without a tool and one for CUSTOM', () => {
    expect(failure(() => withToolFlags({}, 'pulumi', undefined)).message).toContain(
      '--tool "pulumi"',
    );
    expect(failure(() => withToolFlags({}, 'terraform', 'latest!')).message).toContain(
      '--tool-version:',
    );
    expect(failure(() => withToolFlags({}, undefined, '1.6.2')).hint).toContain('--tool terraform');
    expect(failure(() => withToolFlags({}, 'custom', '1.0.0')).message).toContain('CUSTOM');
  });
});
