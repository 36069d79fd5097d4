import { describe, expect, it } from 'vitest';
import {
  formatProblem,
  normaliseProjectRoot,
  parseWorkflowTool,
  projectRootProblem,
  resolveRunnerImage,
  resolveStackSettings,
  type ConfigProblem,
  type RuntimeConfig,
  type StackSettings,
} from './runtime-config.js';
import { parseRuntimeConfig } from './runtime-config-yaml.js';

const FILE = '.berth/config.yml';

function config(text: string): RuntimeConfig {
  const parsed = parseRuntimeConfig(text, FILE);
  if (!parsed.ok) throw new Error(parsed.problems.map(formatProblem).join('\n'));
  return parsed.config;
}

function problems(text: string): ConfigProblem[] {
  const parsed = parseRuntimeConfig(text, FILE);
  if (parsed.ok) throw new Error('expected problems');
  return parsed.problems;
}

describe('parseRuntimeConfig', () => {
  it('reads every setting', () => {
    const parsed = config(`version: 2
stack_defaults:
  runner_image: ghcr.io/org/runner:v1
  terraform_version: "1.5.7"
  opentofu_version: "~> 1.6"
  terraform_workflow_tool: OPEN_TOFU
  environment:
    TF_LOG: info
    RETRIES: 3
    ENABLED: true
  project_root: ./infra//prod/
  strict_hooks: true
  before_init: ["echo one", "echo two"]
  after_init: []
  before_plan: [a]
  after_plan: [b]
  before_apply: [c]
  after_apply: [d]
  before_perform: [e]
  after_perform: [f]
  before_destroy: [g]
  after_destroy: [h]
  after_run: [i]
stacks:
  prod:
    project_root: infra/prod
`);
    expect(parsed.version).toBe(2);
    expect(parsed.stackDefaults).toEqual({
      runner_image: 'ghcr.io/org/runner:v1',
      terraform_version: '1.5.7',
      opentofu_version: '~> 1.6',
      terraform_workflow_tool: 'OPEN_TOFU',
      environment: { TF_LOG: 'info', RETRIES: '3', ENABLED: 'true' },
      project_root: 'infra/prod',
      strict_hooks: true,
      before_init: ['echo one', 'echo two'],
      after_init: [],
      before_plan: ['a'],
      after_plan: ['b'],
      before_apply: ['c'],
      after_apply: ['d'],
      before_perform: ['e'],
      after_perform: ['f'],
      before_destroy: ['g'],
      after_destroy: ['h'],
      after_run: ['i'],
    });
    expect(parsed.stacks).toEqual({ prod: { project_root: 'infra/prod' } });
  });

  it('understands anchors, aliases and merge keys', () => {
    const parsed = config(`version: 2
x-common: &common
  runner_image: ghcr.io/org/runner:v1
  environment: &env
    REGION: eu-west-1
stacks:
  prod:
    <<: *common
    project_root: prod
  staging:
    <<: *common
    runner_image: ghcr.io/org/runner:v2
    environment: *env
`);
    expect(parsed.stacks.prod).toEqual({
      runner_image: 'ghcr.io/org/runner:v1',
      environment: { REGION: 'eu-west-1' },
      project_root: 'prod',
    });
    expect(parsed.stacks.staging?.runner_image).toBe('ghcr.io/org/runner:v2');
    expect(parsed.stacks.staging?.environment).toEqual({ REGION: 'eu-west-1' });
  });

  it('accepts empty sections and version 1', () => {
    expect(config('version: 1\nstack_defaults:\nstacks:\n').version).toBe(1);
  });

  it('collects every problem at once, each with file:line:column and a hint', () => {
    const found = problems(`version: 3
stack_defaults:
  runner_imag: x
  runner_image: Bad/Image
  terraform_workflow_tool: PULUMI
  project_root: /abs
  strict_hooks: "yes"
  environment:
    1BAD: x
    NESTED: { a: b }
  before_init: "echo not a list"
  after_init: [ [nested] ]
stacks:
  prod:
    project_root: ../outside
    opentofu_version: [1]
    terraform_version: latest!
  broken: 5
colour: blue
`);
    const lines = found.map((p) => `${p.line}:${p.column} ${p.message}`);
    expect(lines).toEqual([
      expect.stringMatching(/^1:10 version must be 1 or 2, not 3$/),
      expect.stringMatching(/^3:3 unknown setting "runner_imag" in stack_defaults$/),
      expect.stringMatching(
        /^4:17 stack_defaults.runner_image: invalid image reference "Bad\/Image"/,
      ),
      expect.stringMatching(
        /^5:28 stack_defaults.terraform_workflow_tool must be one of TERRAFORM_FOSS, OPEN_TOFU, CUSTOM$/,
      ),
      expect.stringMatching(/^6:17 stack_defaults.project_root: project_root "\/abs" is absolute/),
      expect.stringMatching(/^7:17 stack_defaults.strict_hooks must be true or false$/),
      expect.stringMatching(
        /^9:5 stack_defaults.environment: "1BAD" is not an environment variable name$/,
      ),
      expect.stringMatching(
        /^10:13 stack_defaults.environment.NESTED must be a string, number or boolean$/,
      ),
      expect.stringMatching(/^11:16 stack_defaults.before_init must be a list of shell commands$/),
      expect.stringMatching(/^12:17 stack_defaults.after_init: every hook must be a string$/),
      expect.stringMatching(
        /^15:19 stacks.prod.project_root: project_root "..\/outside" leaves the repository$/,
      ),
      expect.stringMatching(
        /^16:23 stacks.prod.opentofu_version must be a version or a constraint$/,
      ),
      expect.stringMatching(
        /^17:24 stacks.prod.terraform_version: "latest!" is not a version constraint/,
      ),
      expect.stringMatching(/^18:11 stacks.broken must be a mapping of settings$/),
      expect.stringMatching(/^19:1 unknown key "colour"$/),
    ]);
    expect(found.find((p) => p.message.includes('runner_imag"'))?.hint).toBe(
      'did you mean runner_image?',
    );
    expect(found.every((p) => p.file === FILE && p.hint.length > 0)).toBe(true);
  });

  it.each([
    ['stacks: {}\n', 'version is missing'],
    ['- a list\n', 'must be a mapping'],
    ['', 'the runtime configuration is empty'],
    ['# nothing yet\n', 'the runtime configuration is empty'],
    ['version: 2\nstacks: [a]\n', 'stacks must be a mapping'],
    ['version: 2\nversion: 2\n', 'YAML'],
    ['version: 2\nstacks:\n  a: [unclosed\n', 'YAML'],
    ['version: 2\nstack_defaults: *missing\n', 'alias *missing, which no anchor defines'],
  ])('reports %j as %s', (text, words) => {
    expect(
      problems(text)
        .map((p) => p.message)
        .join('\n'),
    ).toContain(words);
  });
});

describe('resolveStackSettings: precedence', () => {
  const file = (version: 1 | 2): RuntimeConfig => ({
    file: FILE,
    version,
    stackDefaults: {
      runner_image: 'defaults/image',
      project_root: 'from-defaults',
      terraform_version: '1.0.0',
    },
    stacks: { prod: { runner_image: 'entry/image' } },
  });
  const stack: StackSettings = {
    runner_image: 'stack/image',
    project_root: 'from-stack',
    opentofu_version: '1.8.0',
  };

  it.each<[1 | 2, keyof StackSettings, string | undefined, string | undefined]>([
    // version 2: entry > stack_defaults > stack settings
    [2, 'runner_image', 'entry/image', `${FILE} stacks.prod`],
    [2, 'project_root', 'from-defaults', `${FILE} stack_defaults`],
    [2, 'terraform_version', '1.0.0', `${FILE} stack_defaults`],
    [2, 'opentofu_version', '1.8.0', 'stack settings'],
    [2, 'environment', undefined, undefined],
    // version 1: entry > stack settings > stack_defaults
    [1, 'runner_image', 'entry/image', `${FILE} stacks.prod`],
    [1, 'project_root', 'from-stack', 'stack settings'],
    [1, 'terraform_version', '1.0.0', `${FILE} stack_defaults`],
    [1, 'opentofu_version', '1.8.0', 'stack settings'],
  ])('version %d: %s is %s from %s', (version, name, value, source) => {
    const resolved = resolveStackSettings(file(version), 'prod', stack);
    expect(resolved.values[name]).toEqual(value);
    expect(resolved.sources[name]).toEqual(source);
  });

  it('replaces lists and maps, never merges them', () => {
    const resolved = resolveStackSettings(
      {
        file: FILE,
        version: 2,
        stackDefaults: { environment: { A: '1', B: '2' }, before_init: ['x', 'y'] },
        stacks: { s: { environment: { C: '3' } } },
      },
      's',
      { before_init: ['z'] },
    );
    expect(resolved.values.environment).toEqual({ C: '3' });
    expect(resolved.values.before_init).toEqual(['x', 'y']);
  });

  it('uses only the stack settings without a file', () => {
    expect(resolveStackSettings(null, 's', { project_root: 'p' })).toEqual({
      values: { project_root: 'p' },
      sources: { project_root: 'stack settings' },
    });
  });

  it.each<[StackSettings, RuntimeConfig | null, string | null, string, string]>([
    [
      {},
      { file: FILE, version: 2, stackDefaults: {}, stacks: { s: { runner_image: 'cfg/img' } } },
      'pool/img',
      'cfg/img',
      `${FILE} stacks.s`,
    ],
    [{ runner_image: 'stack/img' }, null, 'pool/img', 'stack/img', 'stack settings'],
    [{}, null, 'pool/img', 'pool/img', 'pool default'],
    [{}, null, null, 'berth/img', "berth's default"],
  ])('runner image chain %#', (stack, cfg, pool, image, source) => {
    expect(resolveRunnerImage(resolveStackSettings(cfg, 's', stack), pool, 'berth/img')).toEqual({
      image,
      source,
    });
  });
});

describe('project_root', () => {
  it.each([
    ['infra/prod', null],
    ['./a/../b', null],
    ['.', null],
    ['/etc', 'absolute'],
    ['..', 'leaves the repository'],
    ['a/../../b', 'leaves the repository'],
  ])('%s', (value, problem) => {
    const found = projectRootProblem(value);
    if (problem === null) expect(found).toBeNull();
    else expect(found).toContain(problem);
  });
  it.each([
    ['./a/../b/', 'b'],
    ['.', ''],
    ['a//b', 'a/b'],
  ])('normalises %s to %j', (value, expected) => {
    expect(normaliseProjectRoot(value)).toBe(expected);
  });
});

describe('parseWorkflowTool', () => {
  it.each([
    ['terraform', 'TERRAFORM_FOSS'],
    ['Terraform', 'TERRAFORM_FOSS'],
    ['opentofu', 'OPEN_TOFU'],
    ['tofu', 'OPEN_TOFU'],
    ['custom', 'CUSTOM'],
    ['OPEN_TOFU', 'OPEN_TOFU'],
    ['TERRAFORM_FOSS', 'TERRAFORM_FOSS'],
    ['pulumi', null],
    ['', null],
  ])('%s is %s', (text, tool) => {
    expect(parseWorkflowTool(text)).toBe(tool);
  });
});
