// Lint: type-aware rules (no floating promises) plus the architecture's import rules from
// docs/development/architecture.md: each folder may import only what its row allows.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

const restrict = (files, patterns, message) => ({
  files,
  // Tests beside the code may read fixtures and docs.
  ignores: ['src/**/*.test.ts'],
  rules: {
    'no-restricted-imports': [
      'error',
      { patterns: patterns.map((group) => ({ group: [group], message })) },
    ],
  },
});

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'runner/**', 'examples/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_' }],
      'no-control-regex': 'off',
      // A committed .only narrows the whole run to a few tests without failing it.
      'no-restricted-properties': [
        'error',
        ...['it', 'test', 'describe', 'suite'].map((object) => ({
          object,
          property: 'only',
          message: 'a committed .only runs only these tests; remove it.',
        })),
      ],
    },
  },
  {
    files: ['**/*.js'],
    ...tseslint.configs.disableTypeChecked,
    languageOptions: {
      globals: { process: 'readonly', console: 'readonly' },
      parserOptions: { projectService: false, project: null },
    },
  },
  restrict(
    ['src/domain/**'],
    [
      '../executor/*',
      '../launcher/*',
      '../cli/*',
      'node:*',
      '**/executor/**',
      '**/launcher/**',
      '**/cli/**',
    ],
    'src/domain is pure: it imports nothing of berth outside domain and no I/O module.',
  ),
  restrict(
    ['src/executor/**'],
    ['**/launcher/**', '**/cli/**'],
    'src/executor may import domain only (see docs/development/architecture.md).',
  ),
  restrict(
    ['src/registry/**'],
    ['**/executor/**', '**/launcher/**', '**/cli/**'],
    'src/registry may import domain only (see docs/development/architecture.md).',
  ),
  restrict(
    ['src/workflow/**'],
    ['**/executor/**', '**/registry/**', '**/launcher/**', '**/cli/**'],
    'src/workflow may import domain only (see docs/development/architecture.md).',
  ),
  restrict(
    ['src/net/**'],
    ['**/executor/**', '**/registry/**', '**/workflow/**', '**/launcher/**', '**/cli/**'],
    'src/net may import domain only (see docs/development/architecture.md).',
  ),
  restrict(
    ['src/git/**'],
    [
      '**/executor/**',
      '**/registry/**',
      '**/workflow/**',
      '**/launcher/**',
      '**/cli/**',
      '**/store/**',
      '**/server/**',
      '**/worker/**',
    ],
    'src/git may import domain only (see docs/development/architecture.md).',
  ),
  restrict(
    ['src/launcher/**'],
    ['**/cli/**', '**/store/**'],
    'src/launcher may not import the command line or the store.',
  ),
  restrict(
    ['src/api/**'],
    [
      '**/executor/**',
      '**/registry/**',
      '**/workflow/**',
      '**/launcher/**',
      '**/cli/**',
      '**/net/**',
      '**/store/**',
      '**/server/**',
      'node:*',
    ],
    'src/api is the shared schemas: domain only, no I/O (see docs/development/architecture.md).',
  ),
  restrict(
    ['src/server/**'],
    ['**/executor/**', '**/registry/**', '**/workflow/**', '**/launcher/**', '**/cli/**'],
    'src/server may import domain, api and store (see docs/development/architecture.md).',
  ),
  restrict(
    ['src/worker/**'],
    ['**/cli/**', '**/server/**', '**/store/**'],
    'src/worker talks to the server only through its protocol (see docs/development/architecture.md).',
  ),
  restrict(
    ['src/store/**'],
    [
      '**/executor/**',
      '**/registry/**',
      '**/workflow/**',
      '**/launcher/**',
      '**/cli/**',
      '**/net/**',
    ],
    'src/store may import domain only (see docs/development/architecture.md).',
  ),
);
