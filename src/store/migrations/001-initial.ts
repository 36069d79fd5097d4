/** 001: pools, workers, stacks and their environment, runs, their states and logs, API tokens. */
import type { Kysely } from 'kysely';

export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('pools')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('name', 'text', (c) => c.notNull())
    .addColumn('kind', 'text', (c) => c.notNull())
    .addColumn('allow_list', 'text', (c) => c.notNull())
    .addColumn('default_image', 'text')
    .addColumn('pull_policy', 'text')
    .addColumn('token_hash', 'text', (c) => c.notNull().unique())
    .addColumn('created_at', 'text', (c) => c.notNull())
    .execute();
  await db.schema
    .createTable('workers')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('pool_id', 'text', (c) => c.notNull().references('pools.id'))
    .addColumn('host', 'text', (c) => c.notNull())
    .addColumn('berth_version', 'text', (c) => c.notNull())
    .addColumn('engine_version', 'text', (c) => c.notNull())
    .addColumn('concurrency', 'integer', (c) => c.notNull())
    .addColumn('drained', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('registered_at', 'text', (c) => c.notNull())
    .addColumn('last_heartbeat_at', 'text', (c) => c.notNull())
    .execute();
  await db.schema
    .createTable('stacks')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('name', 'text', (c) => c.notNull())
    .addColumn('repository', 'text')
    .addColumn('branch', 'text')
    .addColumn('local_dir', 'text')
    .addColumn('project_root', 'text', (c) => c.notNull())
    .addColumn('tool', 'text')
    .addColumn('tool_version', 'text')
    .addColumn('runner_image', 'text')
    .addColumn('labels', 'text', (c) => c.notNull())
    .addColumn('auto_deploy', 'integer', (c) => c.notNull())
    .addColumn('pool_id', 'text', (c) => c.notNull().references('pools.id'))
    .addColumn('created_at', 'text', (c) => c.notNull())
    .addColumn('updated_at', 'text', (c) => c.notNull())
    .execute();
  await db.schema
    .createTable('stack_env')
    .addColumn('stack_id', 'text', (c) => c.notNull().references('stacks.id').onDelete('cascade'))
    .addColumn('name', 'text', (c) => c.notNull())
    .addColumn('value', 'text', (c) => c.notNull())
    .addColumn('secret', 'integer', (c) => c.notNull())
    .addPrimaryKeyConstraint('stack_env_pk', ['stack_id', 'name'])
    .execute();
  await db.schema
    .createTable('runs')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('stack_id', 'text', (c) => c.notNull().references('stacks.id'))
    .addColumn('pool_id', 'text', (c) => c.notNull().references('pools.id'))
    .addColumn('kind', 'text', (c) => c.notNull())
    .addColumn('state', 'text', (c) => c.notNull())
    .addColumn('state_reason', 'text')
    .addColumn('commit_sha', 'text')
    .addColumn('triggered_by', 'text', (c) => c.notNull())
    .addColumn('auto_deploy', 'integer', (c) => c.notNull())
    .addColumn('worker_id', 'text')
    .addColumn('lease_expires_at', 'text')
    .addColumn('started', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('image_reference', 'text')
    .addColumn('image_digest', 'text')
    .addColumn('image_source', 'text')
    .addColumn('plan', 'text')
    .addColumn('created_at', 'text', (c) => c.notNull())
    .addColumn('updated_at', 'text', (c) => c.notNull())
    .execute();
  // The queue: dispatchable runs of a pool, oldest first.
  await db.schema
    .createIndex('runs_queue')
    .on('runs')
    .columns(['pool_id', 'state', 'id'])
    .execute();
  await db.schema.createIndex('runs_stack').on('runs').columns(['stack_id', 'id']).execute();
  await db.schema.createIndex('runs_worker').on('runs').columns(['worker_id']).execute();
  await db.schema
    .createTable('run_states')
    .addColumn('run_id', 'text', (c) => c.notNull().references('runs.id').onDelete('cascade'))
    .addColumn('seq', 'integer', (c) => c.notNull())
    .addColumn('state', 'text', (c) => c.notNull())
    .addColumn('at', 'text', (c) => c.notNull())
    .addPrimaryKeyConstraint('run_states_pk', ['run_id', 'seq'])
    .execute();
  await db.schema
    .createTable('log_chunks')
    .addColumn('run_id', 'text', (c) => c.notNull().references('runs.id').onDelete('cascade'))
    .addColumn('seq', 'integer', (c) => c.notNull())
    .addColumn('text', 'text', (c) => c.notNull())
    .addColumn('at', 'text', (c) => c.notNull())
    .addPrimaryKeyConstraint('log_chunks_pk', ['run_id', 'seq'])
    .execute();
  await db.schema
    .createTable('api_tokens')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('name', 'text', (c) => c.notNull())
    .addColumn('role', 'text', (c) => c.notNull())
    .addColumn('token_hash', 'text', (c) => c.notNull().unique())
    .addColumn('created_at', 'text', (c) => c.notNull())
    .execute();
}
