/**
 * The HTTP API's request and response schemas (`/api/v1`): the single source of validation for
 * the server, of the OpenAPI document (docs/api/openapi.json), and of the types the CLI and the
 * web page use. Every object refuses properties it does not know.
 */
import { Type, type Static, type TSchema } from 'typebox';
import { RUN_KINDS, RUN_STATES, type RunKind, type RunStateName } from '../domain/run-state.js';

const closed = <T extends Record<string, TSchema>>(properties: T, description?: string) =>
  Type.Object(properties, { additionalProperties: false, ...(description ? { description } : {}) });

/** Stack and pool ids: lowercase slugs, safe in URLs, paths and labels. */
export const Slug = Type.String({
  pattern: '^[a-z0-9][a-z0-9-]{0,62}$',
  description:
    'an id of lowercase letters, digits and -, starting with a letter or digit, at most 63 characters',
});

/*
 * Every field with a pattern has a description: a noun phrase that says what the field accepts,
 * which the message for a refused value quotes instead of the pattern (server/validation-message.ts).
 */
const ULID = '^[0-9A-HJKMNP-TV-Z]{26}$';

/** A run's id: a ULID. */
export const RunId = Type.String({
  pattern: ULID,
  description: 'a run id: 26 characters, digits and capital letters, as `berth runs list` shows',
});

/** A worker's id: a ULID. */
export const WorkerId = Type.String({
  pattern: ULID,
  description:
    'a worker id: 26 characters, digits and capital letters, as `berth worker list` shows',
});

/** A git commit: a full SHA-1 or SHA-256 hash. */
const CommitHash = Type.String({
  pattern: '^[0-9a-f]{40}([0-9a-f]{24})?$',
  description: 'a full commit hash: 40 (SHA-1) or 64 (SHA-256) lowercase hexadecimal digits',
});

/** Display text: no control characters, bounded. */
const Text = (maxLength: number) =>
  Type.String({
    minLength: 1,
    maxLength,
    pattern: '^[^\\u0000-\\u001f\\u007f]*$',
    description: 'text without control characters (no tabs, no line breaks)',
  });

export const ErrorBody = closed(
  {
    code: Type.String({ description: 'stable error code, e.g. RUN_TRANSITION_INVALID' }),
    message: Type.String(),
    hint: Type.Optional(Type.String({ description: 'how to fix it' })),
  },
  'every error answer',
);
export type ErrorBody = Static<typeof ErrorBody>;

export const PoolKind = Type.Union([Type.Literal('public'), Type.Literal('private')]);

/** A pool's pull policy for its runs' images; null: berth's default. */
const PoolPullPolicy = Type.Union([
  Type.Literal('always'),
  Type.Literal('if-not-present'),
  Type.Literal('never'),
  Type.Null(),
]);

export const PoolInput = closed({
  id: Slug,
  name: Type.Optional(Text(200)),
  kind: PoolKind,
  allowList: Type.Optional(Type.Array(Text(253), { maxItems: 100 })),
  defaultImage: Type.Optional(Type.Union([Text(512), Type.Null()])),
  pullPolicy: Type.Optional(PoolPullPolicy),
});
export type PoolInput = Static<typeof PoolInput>;

/** A pool's settings to change; its kind stays (make a new pool for the other kind). */
export const PoolPatchInput = closed({
  name: Type.Optional(Text(200)),
  allowList: Type.Optional(Type.Array(Text(253), { maxItems: 100 })),
  defaultImage: Type.Optional(Type.Union([Text(512), Type.Null()])),
  pullPolicy: Type.Optional(PoolPullPolicy),
});
export type PoolPatchInput = Static<typeof PoolPatchInput>;

export const PoolOutput = closed({
  id: Type.String(),
  name: Type.String(),
  kind: PoolKind,
  allowList: Type.Array(Type.String()),
  defaultImage: Type.Union([Type.String(), Type.Null()]),
  pullPolicy: Type.Union([Type.String(), Type.Null()]),
  createdAt: Type.String(),
});

export const PoolWithToken = closed({
  pool: PoolOutput,
  token: Type.String({ description: 'the pool token, shown this once: workers register with it' }),
});

/** API tokens for people and scripts: admin may do everything, user everything but administer. */
export const TokenRole = Type.Union([Type.Literal('admin'), Type.Literal('user')]);

export const TokenInput = closed({ name: Text(200), role: TokenRole });
export type TokenInput = Static<typeof TokenInput>;

export const TokenOutput = closed({
  id: Type.String(),
  name: Type.String(),
  role: TokenRole,
  createdAt: Type.String(),
});

export const TokenWithToken = closed({
  apiToken: TokenOutput,
  token: Type.String({ description: 'the token, shown this once: only its SHA-256 is stored' }),
});

export const TokenList = closed({ tokens: Type.Array(TokenOutput) });

export const WorkflowTool = Type.Union([
  Type.Literal('TERRAFORM_FOSS'),
  Type.Literal('OPEN_TOFU'),
  Type.Literal('CUSTOM'),
]);

const stackFields = {
  name: Type.Optional(Text(200)),
  repository: Type.Optional(
    Type.Union([
      Type.String({
        maxLength: 2048,
        pattern: '^(https://|ssh://|git@|file://)[^\\s]+$',
        description: 'an https://, ssh://, git@ or file:// URL, without spaces',
      }),
      Type.Null(),
    ]),
  ),
  branch: Type.Optional(
    Type.Union([
      Type.String({
        maxLength: 255,
        pattern: '^[A-Za-z0-9._/-]+$',
        description: 'a branch name: letters, digits and . _ / -',
      }),
      Type.Null(),
    ]),
  ),
  localDir: Type.Optional(
    Type.Union([
      Type.String({
        maxLength: 4096,
        pattern: '^/',
        description: "an absolute path (starting with /) on the workers' machines",
      }),
      Type.Null(),
    ]),
  ),
  projectRoot: Type.Optional(
    Type.String({
      maxLength: 1024,
      pattern: '^(?!/)(?!.*(^|/)\\.\\.(/|$))[^\\u0000]*$',
      description: 'a relative path inside the source, without `..`',
    }),
  ),
  tool: Type.Optional(Type.Union([WorkflowTool, Type.Null()])),
  toolVersion: Type.Optional(Type.Union([Type.String({ maxLength: 64 }), Type.Null()])),
  runnerImage: Type.Optional(Type.Union([Type.String({ maxLength: 512 }), Type.Null()])),
  labels: Type.Optional(Type.Array(Text(100), { maxItems: 50 })),
  autoDeploy: Type.Optional(Type.Boolean()),
  pool: Type.Optional(Slug),
};

export const StackInput = closed({ id: Slug, ...stackFields, pool: Slug });
export type StackInput = Static<typeof StackInput>;

export const StackPatchInput = closed(stackFields);
export type StackPatchInput = Static<typeof StackPatchInput>;

export const VariableOutput = closed({
  name: Type.String(),
  secret: Type.Boolean(),
  /** Plain variables only: a secret's value is never sent back. */
  value: Type.Optional(Type.String()),
});

const RunKindSchema = Type.Unsafe<RunKind>({ type: 'string', enum: [...RUN_KINDS] });
const RunStateSchema = Type.Unsafe<RunStateName>({ type: 'string', enum: [...RUN_STATES] });

export const StackOutput = closed({
  id: Type.String(),
  name: Type.String(),
  repository: Type.Union([Type.String(), Type.Null()]),
  branch: Type.Union([Type.String(), Type.Null()]),
  localDir: Type.Union([Type.String(), Type.Null()]),
  projectRoot: Type.String(),
  tool: Type.Union([Type.String(), Type.Null()]),
  toolVersion: Type.Union([Type.String(), Type.Null()]),
  runnerImage: Type.Union([Type.String(), Type.Null()]),
  labels: Type.Array(Type.String()),
  autoDeploy: Type.Boolean(),
  pool: Type.String(),
  variables: Type.Array(VariableOutput),
  /** The stack's newest run, null before its first. */
  lastRun: Type.Union([
    closed({
      id: Type.String(),
      type: RunKindSchema,
      state: RunStateSchema,
      updatedAt: Type.String(),
    }),
    Type.Null(),
  ]),
  createdAt: Type.String(),
  updatedAt: Type.String(),
});

export const VariableInput = closed({
  value: Type.String({ maxLength: 65536 }),
  secret: Type.Optional(Type.Boolean()),
});

export const VariableName = Type.String({
  pattern: '^[A-Za-z_][A-Za-z0-9_]{0,127}$',
  description:
    'a variable name: letters, digits and _, not starting with a digit, at most 128 characters',
});

export const TriggerInput = closed({
  type: Type.Union([
    Type.Literal('task'),
    Type.Literal('proposed'),
    Type.Literal('tracked'),
    Type.Literal('destroy'),
  ]),
  commit: Type.Optional(CommitHash),
});
export type TriggerInput = Static<typeof TriggerInput>;

const Counts = closed({
  add: Type.Integer(),
  change: Type.Integer(),
  destroy: Type.Integer(),
  replace: Type.Integer(),
});

export const RunOutput = closed({
  id: Type.String(),
  stack: Type.String(),
  pool: Type.String(),
  type: RunKindSchema,
  state: RunStateSchema,
  stateReason: Type.Union([Type.String(), Type.Null()]),
  commit: Type.Union([Type.String(), Type.Null()]),
  triggeredBy: Type.String(),
  autoDeploy: Type.Boolean(),
  worker: Type.Union([Type.String(), Type.Null()]),
  image: closed({
    reference: Type.Union([Type.String(), Type.Null()]),
    digest: Type.Union([Type.String(), Type.Null()]),
    source: Type.Union([Type.String(), Type.Null()], {
      description: 'how the worker got it: present, pulled or built',
    }),
    chosenBy: Type.Optional(
      Type.Union([Type.String(), Type.Null()], {
        description:
          "where the image was chosen: the runtime configuration's file, stack settings, pool default or berth's default",
      }),
    ),
  }),
  plan: Type.Union([Counts, Type.Null()]),
  stopRequested: Type.Union([closed({ reason: Type.String(), at: Type.String() }), Type.Null()], {
    description:
      'a cancel of a run its worker holds: the worker stops the job (SIGINT, then SIGKILL after the grace) and reports the end; until then the run keeps its state, and its stack stays locked',
  }),
  states: Type.Optional(Type.Array(closed({ state: RunStateSchema, at: Type.String() }))),
  createdAt: Type.String(),
  updatedAt: Type.String(),
});
export type RunOutput = Static<typeof RunOutput>;

export const RunList = closed({ runs: Type.Array(RunOutput) });

export const LogOutput = closed({
  chunks: Type.Array(closed({ seq: Type.Integer(), text: Type.String(), at: Type.String() })),
  /** Ask again with `after` set to this for what follows. */
  next: Type.Integer(),
});

export const LogQuery = closed({
  after: Type.Optional(Type.Integer({ minimum: 0 })),
  limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000 })),
});

export const ListQuery = closed({
  stack: Type.Optional(Slug),
  limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 500 })),
  /** Only runs older than this one (run ids sort by creation): the next page of a list. */
  before: Type.Optional(RunId),
});

/** `GET /stacks?pool=ID`: only the stacks of one pool. */
export const StackListQuery = closed({ pool: Type.Optional(Slug) });

export const IdParams = closed({ id: Slug });
export const RunParams = closed({ id: RunId });
export const VariableParams = closed({ id: Slug, name: VariableName });

export const Health = closed({ status: Type.Literal('ok'), version: Type.String() });

/**
 * The worker protocol (`/api/v1/worker/…`, pool tokens only). A worker registers, asks for work
 * (a long poll), reports states and log batches of the runs it holds, and heartbeats; the
 * heartbeat's answer names the runs it must stop (canceled, or no longer its own).
 */
export const WorkerRegistration = closed({
  id: Type.Optional(WorkerId),
  host: Text(253),
  berthVersion: Text(64),
  engineVersion: Text(64),
  concurrency: Type.Integer({ minimum: 1, maximum: 256 }),
  fresh: Type.Optional(
    Type.Boolean({
      description:
        "true on a worker process's first registration: the runs its id still holds were an earlier process's, which is gone (they end now, not at their lease's end)",
    }),
  ),
});

export const WorkerRegistered = closed({
  workerId: Type.String(),
  pool: Type.String(),
  leaseMs: Type.Integer(),
  heartbeatMs: Type.Integer(),
  /** The server records the commit a worker reports (StateReport.commit); older ones refuse it. */
  reportsCommit: Type.Optional(Type.Boolean()),
  /** Drained (berth worker drain): the worker takes no runs until undrained (older servers: absent). */
  drained: Type.Optional(Type.Boolean()),
});

export const WorkerRef = closed({ workerId: WorkerId });

export const LeaseRequest = closed({
  workerId: WorkerId,
  waitMs: Type.Optional(Type.Integer({ minimum: 0, maximum: 60_000 })),
});

/** What opens a sealed workspace (AES-256-GCM): key, nonce and tag, base64. */
export const WorkspaceSeal = closed({
  key: Type.String({ pattern: '^[A-Za-z0-9+/]{43}=$', description: 'base64 of 32 bytes' }),
  iv: Type.String({ pattern: '^[A-Za-z0-9+/]{16}$', description: 'base64 of 12 bytes' }),
  tag: Type.String({ pattern: '^[A-Za-z0-9+/]{22}==$', description: 'base64 of 16 bytes' }),
});

export const Assignment = closed({
  run: RunOutput,
  stack: closed({
    id: Type.String(),
    repository: Type.Union([Type.String(), Type.Null()]),
    branch: Type.Union([Type.String(), Type.Null()]),
    localDir: Type.Union([Type.String(), Type.Null()]),
    projectRoot: Type.String(),
    tool: Type.Union([Type.String(), Type.Null()]),
    toolVersion: Type.Union([Type.String(), Type.Null()]),
    runnerImage: Type.Union([Type.String(), Type.Null()]),
    labels: Type.Array(Type.String()),
  }),
  /** Plain and secret values: secrets reach only a worker of the stack's own pool, to mask. */
  environment: Type.Array(
    closed({ name: Type.String(), value: Type.String(), secret: Type.Boolean() }),
  ),
  pool: PoolOutput,
  /** Who triggered the run, for its job (TF_VAR_berth_run_trigger): the token's name. */
  trigger: Type.Optional(Type.String()),
  /** The sequence number the run's next log chunk gets (a run handed on continues its log). */
  logNext: Type.Integer({ minimum: 1 }),
  /** The most bytes of the run's log the server still stores: the worker bounds its log within it. */
  logLimitBytes: Type.Optional(Type.Integer({ minimum: 1024 })),
  /**
   * The apply of a confirmed tracked run (PREPARING_APPLY): what opens its saved workspace
   * (download it from `/worker/runs/{id}/workspace`) and the image the plan ran in.
   */
  resume: Type.Optional(
    closed({
      seal: WorkspaceSeal,
      imageId: Type.Union([Type.String(), Type.Null()]),
    }),
  ),
});

export const HeartbeatRequest = closed({
  workerId: WorkerId,
  /** The runs the worker is executing now. */
  runs: Type.Array(RunId, { maxItems: 256 }),
});

export const HeartbeatAnswer = closed({
  /** Runs to stop now: canceled, ended, or no longer held by this worker. */
  stop: Type.Array(Type.String()),
  drained: Type.Boolean(),
});

export const StateReport = closed({
  workerId: WorkerId,
  state: RunStateSchema,
  reason: Type.Optional(
    Type.String({
      maxLength: 4096,
      pattern: '^[^\\u0000-\\u0008\\u000b-\\u001f\\u007f]*$',
      description: 'text without control characters other than tabs and line breaks',
    }),
  ),
  started: Type.Optional(Type.Boolean()),
  image: Type.Optional(
    closed({
      reference: Type.String({ maxLength: 512 }),
      digest: Type.Union([Type.String({ maxLength: 600 }), Type.Null()]),
      source: Type.String({ maxLength: 64 }),
      chosenBy: Type.Optional(Type.String({ maxLength: 200 })),
      id: Type.Optional(Type.String({ maxLength: 600 })),
    }),
  ),
  plan: Type.Optional(Counts),
  /**
   * The commit the worker checked out, for a run bound to none when it was triggered (the server
   * could not read the branch head then): recorded once, never replacing a bound commit.
   */
  commit: Type.Optional(CommitHash),
  /** UNCONFIRMED: what opens the workspace uploaded before (kept sealed by the server). */
  workspace: Type.Optional(WorkspaceSeal),
});

/** The worker that uploads or downloads a run's saved workspace. */
export const WorkspaceQuery = closed({
  workerId: WorkerId,
});

export const WorkspaceStored = closed({ bytes: Type.Integer() });

/** The sealed workspace itself, as stored (the seal comes with the apply's assignment). */
export const WorkspaceBlob = Type.Unsafe<unknown>({
  type: 'string',
  format: 'binary',
  description: 'the sealed workspace (AES-256-GCM), as the planning worker uploaded it',
});

export const LogBatch = closed({
  workerId: WorkerId,
  firstSeq: Type.Integer({ minimum: 1 }),
  texts: Type.Array(Type.String({ maxLength: 262_144 }), { minItems: 1, maxItems: 1000 }),
});

export const LogAccepted = closed({ next: Type.Integer() });

/** Values a job masked mid-run (`::add-mask`), to mask in the run's already stored log. */
export const MaskReport = closed({
  workerId: WorkerId,
  values: Type.Array(Type.String({ minLength: 1, maxLength: 4096 }), {
    minItems: 1,
    maxItems: 100,
  }),
});

export const MaskAccepted = closed({ chunks: Type.Integer({ minimum: 0 }) });

export const WorkerOutput = closed({
  id: Type.String(),
  pool: Type.String(),
  host: Type.String(),
  berthVersion: Type.String(),
  engineVersion: Type.String(),
  concurrency: Type.Integer(),
  /**
   * OFFLINE: the worker said it leaves (a clean exit), or its last heartbeat is older than the
   * lease time (it died, or cannot reach the server).
   */
  status: Type.Unsafe<'IDLE' | 'BUSY' | 'DRAINED' | 'OFFLINE'>({
    type: 'string',
    enum: ['IDLE', 'BUSY', 'DRAINED', 'OFFLINE'],
  }),
  /** Drained (berth worker drain), whatever its status: an OFFLINE worker may be drained too. */
  drained: Type.Boolean(),
  lastHeartbeatAt: Type.String(),
  runs: Type.Array(Type.String()),
});

export const WorkerList = closed({ workers: Type.Array(WorkerOutput) });

export const WorkerParams = closed({ id: WorkerId });

/** The web page's sign-in: a token (admin or API) for a session cookie. */
export const SignInInput = closed({
  token: Type.String({ minLength: 1, maxLength: 512 }),
});

export const SessionOutput = closed({
  caller: closed({
    kind: Type.Union([Type.Literal('admin'), Type.Literal('user')]),
    id: Type.String(),
  }),
  /**
   * With a session cookie: send it as the X-Berth-CSRF header on every request that changes
   * something. Null for bearer-token callers, which need none.
   */
  csrfToken: Type.Union([Type.String(), Type.Null()]),
  expiresAt: Type.Union([Type.String(), Type.Null()]),
});
