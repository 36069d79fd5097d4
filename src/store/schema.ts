/**
 * The tables, as Kysely sees them. One schema for SQLite and PostgreSQL: times are ISO-8601 text
 * in UTC with milliseconds (they sort as text), flags are integers 0/1, structured values are JSON
 * text. Migrations (./migrations) create them; a released migration never changes.
 */
import type { Generated } from 'kysely';

export interface PoolsTable {
  id: string;
  name: string;
  kind: 'public' | 'private';
  /** JSON array of allow-list patterns (public pools). */
  allow_list: string;
  default_image: string | null;
  pull_policy: string | null;
  /** SHA-256 of the pool token, hex. */
  token_hash: string;
  created_at: string;
}

export interface WorkersTable {
  id: string;
  pool_id: string;
  host: string;
  berth_version: string;
  engine_version: string;
  concurrency: number;
  drained: number;
  registered_at: string;
  last_heartbeat_at: string;
  /** When the worker said it leaves (008); null once it registers or heartbeats again. */
  left_at: string | null;
}

export interface StacksTable {
  id: string;
  name: string;
  repository: string | null;
  branch: string | null;
  local_dir: string | null;
  project_root: string;
  tool: string | null;
  tool_version: string | null;
  runner_image: string | null;
  /** JSON array of strings. */
  labels: string;
  auto_deploy: number;
  pool_id: string;
  created_at: string;
  updated_at: string;
}

export interface StackEnvTable {
  stack_id: string;
  name: string;
  /** The plain value; for secrets, the value sealed with the server's key (base64). */
  value: string;
  secret: number;
}

export interface RunsTable {
  id: string;
  stack_id: string;
  pool_id: string;
  kind: string;
  state: string;
  /** Why the run is in its state (end states: what happened), for people. */
  state_reason: string | null;
  commit_sha: string | null;
  triggered_by: string;
  auto_deploy: number;
  worker_id: string | null;
  lease_expires_at: string | null;
  /** Whether a container of the run ever started (a lost lease then fails the run). */
  started: number;
  image_reference: string | null;
  image_digest: string | null;
  image_source: string | null;
  /** Where the image was chosen: runtime configuration, stack, pool default, berth's default. */
  image_choice: string | null;
  /** JSON: { add, change, destroy, replace } or null. */
  plan: string | null;
  /**
   * The seal (key, nonce, tag) of the run's saved workspace, sealed with the server's secrets
   * key; null when no workspace waits (migration 002).
   */
  workspace_seal: string | null;
  /** The id (content digest) of the image the run's plan ran in (migration 002). */
  image_id: string | null;
  created_at: string;
  updated_at: string;
  /** The seq of the run's last state record (run_states), advanced with every state change. */
  state_seq: number;
  /** Why a stop was asked of the run while a worker held it (migration 010), or null. */
  stop_reason: string | null;
  /** When that stop was asked. */
  stop_requested_at: string | null;
}

export interface RunStatesTable {
  run_id: string;
  seq: number;
  state: string;
  at: string;
}

export interface LogChunksTable {
  run_id: string;
  seq: number;
  text: string;
  at: string;
}

export interface LogSizesTable {
  run_id: string;
  /** UTF-8 bytes of the run's stored chunks (the server's own markers not counted). */
  bytes: number;
  /** 1 once the log reached the server's limit: nothing more is stored. */
  full: number;
}

export interface ApiTokensTable {
  id: string;
  name: string;
  role: 'admin' | 'user';
  token_hash: string;
  created_at: string;
}

/** A signed-in browser: the SHA-256 of its cookie's value and whom it speaks for. */
export interface SessionsTable {
  token_hash: string;
  caller_kind: 'admin' | 'user';
  caller_id: string;
  created_at: string;
  expires_at: string;
}

export interface MigrationsBookkeeping {
  id: Generated<number>;
}

/** Settings shared by every server on the database (migration 007). */
export interface ServerSettingsTable {
  name: string;
  value: string;
}

export interface Database {
  pools: PoolsTable;
  workers: WorkersTable;
  stacks: StacksTable;
  stack_env: StackEnvTable;
  runs: RunsTable;
  run_states: RunStatesTable;
  log_chunks: LogChunksTable;
  log_sizes: LogSizesTable;
  api_tokens: ApiTokensTable;
  sessions: SessionsTable;
  server_settings: ServerSettingsTable;
}
