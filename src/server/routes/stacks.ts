/** Stacks and their environment variables (secret values write-only, sealed at rest). */
import {
  SECRET_GIT_VARIABLES,
  displayRepository,
  repositoryUrlProblem,
} from '../../domain/git-source.js';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { FastifyInstance } from 'fastify';
import { Type } from 'typebox';
import { parseConstraint } from '../../domain/versions.js';
import { checkImageReference } from '../../domain/image-reference.js';
import {
  IdParams,
  StackInput,
  StackListQuery,
  StackOutput,
  StackPatchInput,
  VariableInput,
  VariableParams,
} from '../../api/schemas.js';
import { checkStackImageAllowed } from '../image-policy.js';
import { repositoryHostProblem } from '../repository-host.js';
import type { Run, Stack, StackPatch } from '../../store/store.js';
import { ApiError, errorResponses, requirePerson, type ServerContext } from '../app.js';
import type { Caller } from '../auth.js';

/** A stack as the API shows it; `last`: its newest run when the caller has it (a list). */
export async function stackView(ctx: ServerContext, stack: Stack, last?: Run | null) {
  const variables = await ctx.store.listStackVariables(stack.id);
  const lastRun =
    last !== undefined
      ? last
      : ((await ctx.store.listRuns({ stackId: stack.id, limit: 1 }))[0] ?? null);
  const { poolId, ...rest } = stack;
  return {
    ...rest,
    // A stack stored before such URLs were refused shows its URL without them (its workers
    // still get it whole, with the run).
    repository:
      stack.repository && repositoryUrlProblem(stack.repository)
        ? displayRepository(stack.repository)
        : stack.repository,
    pool: poolId,
    // A secret's value never leaves the server through the API, sealed or not.
    variables: variables.map((v) =>
      v.secret ? { name: v.name, secret: true } : { name: v.name, secret: false, value: v.value },
    ),
    lastRun: lastRun && {
      id: lastRun.id,
      type: lastRun.kind,
      state: lastRun.state,
      updatedAt: lastRun.updatedAt,
    },
  };
}

/** The stack's source is on the workers' own disks: a local directory or a file:// repository. */
function sourceOnWorkers(stack: { localDir: string | null; repository: string | null }): boolean {
  return stack.localDir !== null || (stack.repository ?? '').startsWith('file://');
}

/**
 * A stack whose source is on the workers' disks is the admin's to change, whatever the change:
 * its runner image, pool or project root decide what runs over the files the admin pointed the
 * workers at, so a user who could change them could read those files. (A user token still
 * triggers its runs and sets its variables, as for any stack; docs/server.md, "Who may do what".)
 */
function checkChangeOfLocalStack(
  caller: Caller,
  stack: { id: string; localDir: string | null; repository: string | null },
  change: 'update' | 'delete' = 'update',
): void {
  if (caller.kind === 'admin' || !sourceOnWorkers(stack)) return;
  throw new ApiError(
    403,
    'FORBIDDEN',
    `stack ${stack.id}'s source is on the workers' own disks (${stack.localDir ?? stack.repository}): only an admin token may ${change === 'update' ? 'change' : 'delete'} the stack`,
    `Ask the admin to make the change (\`berth stack ${change}\` with an admin token).`,
  );
}

/**
 * A source on a worker's own disk (a local directory, a file:// repository) is read by the worker
 * with the worker's rights: only the admin may name one, and only for a private pool (one team's
 * machines). Otherwise any user could copy a worker's files (keys, credentials) into a job.
 */
async function checkSource(
  ctx: ServerContext,
  caller: Caller,
  stack: { localDir: string | null; repository: string | null; poolId: string },
): Promise<void> {
  if (!sourceOnWorkers(stack)) return;
  if (caller.kind !== 'admin') {
    throw new ApiError(
      403,
      'FORBIDDEN',
      "only an admin token may give a stack a source on the workers' own disks (localDir, berth's --dir; or a file:// repository)",
      'Use a repository URL (https:// or ssh://), or ask the admin.',
    );
  }
  const pool = await ctx.store.getPool(stack.poolId);
  if (pool?.kind !== 'private') {
    throw new ApiError(
      400,
      'BAD_REQUEST',
      `a stack of public pool ${stack.poolId} cannot have a source on the workers' disks (localDir, berth's --dir; or a file:// repository)`,
      'Use a repository URL, or a private pool.',
    );
  }
}

/**
 * A repository on the server's or the workers' own machine (loopback), or at a link-local
 * address: only the admin may name one (a git server beside berth), else any user could have
 * the server and the workers knock on their own ports and read the answers in the run's log.
 */
function checkRepositoryHost(caller: Caller, repository: string | null | undefined): void {
  const problem = caller.kind !== 'admin' && repository ? repositoryHostProblem(repository) : null;
  if (problem)
    throw new ApiError(
      403,
      'FORBIDDEN',
      `only an admin token may name such a repository: ${problem}`,
      "Use the git host's own name or address, or ask the admin (whose token may name a git server on the server's or workers' machines).",
    );
}

/** Checks what the schema cannot: the image reference, the version constraint, the pool. */
async function checkStackFields(ctx: ServerContext, fields: StackPatch): Promise<void> {
  // Every reader of the stack sees its URL: a secret belongs in a secret variable.
  const problem = fields.repository ? repositoryUrlProblem(fields.repository) : null;
  if (fields.repository && problem) {
    throw new ApiError(
      400,
      'BAD_REQUEST',
      `repository: ${problem}`,
      "Give the URL without user info, query string or fragment, and the token as the stack's secret variable: `BERTH_GIT_TOKEN=… berth stack env set ID BERTH_GIT_TOKEN --secret` (BERTH_GIT_USERNAME for a user name the host wants).",
    );
  }
  if (fields.runnerImage) {
    const problem = checkImageReference(fields.runnerImage);
    if (problem) throw new ApiError(400, 'BAD_REQUEST', `runnerImage: ${problem.message}`);
  }
  if (fields.toolVersion) {
    const constraint = parseConstraint(fields.toolVersion);
    if ('error' in constraint)
      throw new ApiError(400, 'BAD_REQUEST', `toolVersion: ${constraint.error}`);
  }
  if (fields.poolId && !(await ctx.store.getPool(fields.poolId))) {
    throw new ApiError(
      400,
      'POOL_NOT_FOUND',
      `worker pool ${fields.poolId} does not exist`,
      'Create it first (berth pool create), or name an existing one.',
    );
  }
}

/**
 * A runner image or tool version of null arrives as '' (the validator's type coercion tries the
 * string branch of `string | null` first): both mean "none", stored as null, so the pool's or
 * berth's default applies again rather than an empty image reference.
 */
function noneIfEmpty(fields: {
  runnerImage?: string | null;
  toolVersion?: string | null;
}): Pick<StackPatch, 'runnerImage' | 'toolVersion'> {
  return {
    ...(fields.runnerImage === '' ? { runnerImage: null } : {}),
    ...(fields.toolVersion === '' ? { toolVersion: null } : {}),
  };
}

export function registerStackRoutes(server: FastifyInstance, ctx: ServerContext): void {
  const api = server.withTypeProvider<TypeBoxTypeProvider>();

  api.post(
    '/stacks',
    { schema: { body: StackInput, response: { 201: StackOutput, ...errorResponses } } },
    async (request, reply) => {
      const caller = requirePerson(request);
      const input = request.body;
      if (!input.repository && !input.localDir) {
        throw new ApiError(
          400,
          'BAD_REQUEST',
          'a stack needs a source: repository (with branch) or localDir',
          "Give one: `berth stack create ID --repo URL [--branch B]` or `--dir DIR` (a directory on the machines of the pool's workers).",
        );
      }
      if (input.repository && input.localDir) {
        throw new ApiError(
          400,
          'BAD_REQUEST',
          "a stack has one source: repository or localDir (berth's --repo or --dir), not both",
        );
      }
      const stack = {
        id: input.id,
        name: input.name ?? input.id,
        repository: input.repository ?? null,
        branch: input.repository ? (input.branch ?? 'main') : null,
        localDir: input.localDir ?? null,
        projectRoot: input.projectRoot ?? '',
        tool: input.tool ?? null,
        toolVersion: input.toolVersion || null,
        runnerImage: input.runnerImage || null,
        labels: input.labels ?? [],
        autoDeploy: input.autoDeploy ?? false,
        poolId: input.pool,
      };
      await checkStackFields(ctx, stack);
      checkStackImageAllowed(stack, await ctx.store.getPool(stack.poolId));
      checkRepositoryHost(caller, stack.repository);
      await checkSource(ctx, caller, stack);
      const created = await ctx.store.createStack(stack, ctx.now());
      return reply.status(201).send(await stackView(ctx, created));
    },
  );

  api.get(
    '/stacks',
    {
      schema: {
        querystring: StackListQuery,
        response: {
          200: Type.Object({ stacks: Type.Array(StackOutput) }, { additionalProperties: false }),
          ...errorResponses,
        },
      },
    },
    async (request) => {
      requirePerson(request);
      const { pool } = request.query;
      // A pool that does not exist (a typo) is not a pool without stacks.
      if (pool !== undefined && !(await ctx.store.getPool(pool)))
        throw new ApiError(404, 'NOT_FOUND', `worker pool ${pool} does not exist`);
      const filter = pool !== undefined ? { poolId: pool } : {};
      const stacks = await ctx.store.listStacks(filter);
      // The newest run of every stack in one query (not the latest N runs of all).
      const last = await ctx.store.lastRunOfStacks(filter);
      return {
        stacks: await Promise.all(stacks.map((s) => stackView(ctx, s, last.get(s.id) ?? null))),
      };
    },
  );

  api.get(
    '/stacks/:id',
    { schema: { params: IdParams, response: { 200: StackOutput, ...errorResponses } } },
    async (request) => {
      requirePerson(request);
      const stack = await ctx.store.getStack(request.params.id);
      if (!stack) throw new ApiError(404, 'NOT_FOUND', `stack ${request.params.id} does not exist`);
      return stackView(ctx, stack);
    },
  );

  api.patch(
    '/stacks/:id',
    {
      schema: {
        params: IdParams,
        body: StackPatchInput,
        response: { 200: StackOutput, ...errorResponses },
      },
    },
    async (request) => {
      const caller = requirePerson(request);
      const { pool, ...rest } = request.body;
      const patch: StackPatch = {
        ...rest,
        ...noneIfEmpty(rest),
        ...(pool !== undefined ? { poolId: pool } : {}),
      };
      await checkStackFields(ctx, patch);
      const current = await ctx.store.getStack(request.params.id);
      if (!current)
        throw new ApiError(404, 'NOT_FOUND', `stack ${request.params.id} does not exist`);
      checkChangeOfLocalStack(caller, current);
      const next = { ...current, ...patch };
      if (next.repository && next.localDir) {
        throw new ApiError(
          400,
          'BAD_REQUEST',
          "a stack has one source: repository or localDir (berth's --repo or --dir), not both",
        );
      }
      // Only a change of the image or the pool is refused for the image: a stack whose pool's
      // allow-list narrowed since keeps every other change (its trigger says why it cannot run).
      if (patch.runnerImage !== undefined || patch.poolId !== undefined)
        checkStackImageAllowed(next, await ctx.store.getPool(next.poolId));
      checkRepositoryHost(caller, patch.repository);
      await checkSource(ctx, caller, next);
      const updated = await ctx.store.updateStack(request.params.id, patch, ctx.now());
      if (!updated)
        throw new ApiError(404, 'NOT_FOUND', `stack ${request.params.id} does not exist`);
      return stackView(ctx, updated);
    },
  );

  api.delete(
    '/stacks/:id',
    { schema: { params: IdParams, response: { 204: Type.Null(), ...errorResponses } } },
    async (request, reply) => {
      const caller = requirePerson(request);
      // Deleting it (its runs and logs with it) is a change as any other; the id would then be
      // free for a stack of the user's own.
      const stack = await ctx.store.getStack(request.params.id);
      if (stack) checkChangeOfLocalStack(caller, stack, 'delete');
      if (!(await ctx.store.deleteStack(request.params.id))) {
        throw new ApiError(404, 'NOT_FOUND', `stack ${request.params.id} does not exist`);
      }
      return reply.status(204).send(null);
    },
  );

  api.put(
    '/stacks/:id/env/:name',
    {
      schema: {
        params: VariableParams,
        body: VariableInput,
        response: { 200: StackOutput, ...errorResponses },
      },
    },
    async (request) => {
      requirePerson(request);
      const stack = await ctx.store.getStack(request.params.id);
      if (!stack) throw new ApiError(404, 'NOT_FOUND', `stack ${request.params.id} does not exist`);
      const secret = request.body.secret ?? false;
      if (secret && request.body.value === '') {
        throw new ApiError(
          400,
          'BAD_REQUEST',
          `a secret variable (${request.params.name}) cannot be empty: there would be nothing to mask`,
        );
      }
      if (!secret && SECRET_GIT_VARIABLES.includes(request.params.name)) {
        // A plain variable's value is shown by the API: a token or a key never is.
        throw new ApiError(
          400,
          'BAD_REQUEST',
          `${request.params.name} holds a git credential and must be a secret variable`,
          `Set it as a secret: \`berth stack env set ${stack.id} ${request.params.name} --secret\` (through the API, secret: true).`,
        );
      }
      // A secret's value must not become readable by a plain set (a missed --secret): the store
      // keeps a secret one in the same statement.
      const set = await ctx.store.setStackVariable(stack.id, {
        name: request.params.name,
        value: secret ? ctx.secrets.seal(request.body.value) : request.body.value,
        secret,
      });
      if (!set) {
        throw new ApiError(
          409,
          'VARIABLE_IS_SECRET',
          `${request.params.name} is a secret variable of stack ${stack.id}: a plain value would show it to everyone who may read the stack`,
          `Give --secret to change its value (\`berth stack env set ${stack.id} ${request.params.name} --secret\`; through the API, secret: true), or unset it first (\`berth stack env unset ${stack.id} ${request.params.name}\`) to make it plain.`,
        );
      }
      return stackView(ctx, stack);
    },
  );

  api.delete(
    '/stacks/:id/env/:name',
    { schema: { params: VariableParams, response: { 200: StackOutput, ...errorResponses } } },
    async (request) => {
      requirePerson(request);
      const stack = await ctx.store.getStack(request.params.id);
      if (!stack) throw new ApiError(404, 'NOT_FOUND', `stack ${request.params.id} does not exist`);
      if (!(await ctx.store.unsetStackVariable(stack.id, request.params.name))) {
        throw new ApiError(
          404,
          'NOT_FOUND',
          `stack ${stack.id} has no variable ${request.params.name}`,
        );
      }
      return stackView(ctx, stack);
    },
  );
}
