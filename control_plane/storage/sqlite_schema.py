"""SQLite schema for :mod:`control_plane.storage.sqlite`.

Each table keeps the whole record as JSON in ``doc`` plus the columns that queries
filter or sort on. Timestamps are fixed-width UTC strings so they compare correctly
as text.
"""

from __future__ import annotations

SCHEMA_VERSION = 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS workspaces (
    id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS actors (
    id TEXT PRIMARY KEY, kind TEXT NOT NULL, workspace_id TEXT, doc TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS actors_by_workspace ON actors (workspace_id, kind);
CREATE TABLE IF NOT EXISTS memberships (
    workspace_id TEXT NOT NULL, actor_id TEXT NOT NULL, doc TEXT NOT NULL,
    PRIMARY KEY (workspace_id, actor_id));
CREATE INDEX IF NOT EXISTS memberships_by_actor ON memberships (actor_id);
CREATE TABLE IF NOT EXISTS api_keys (
    id TEXT PRIMARY KEY, key_hash TEXT NOT NULL UNIQUE, actor_id TEXT NOT NULL, doc TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS api_keys_by_actor ON api_keys (actor_id);
CREATE TABLE IF NOT EXISTS work_pools (
    id TEXT PRIMARY KEY, workspace_id TEXT NOT NULL, name TEXT NOT NULL, doc TEXT NOT NULL,
    UNIQUE (workspace_id, name));
CREATE TABLE IF NOT EXISTS work_queues (
    id TEXT PRIMARY KEY, workspace_id TEXT NOT NULL, pool_id TEXT NOT NULL, name TEXT NOT NULL,
    priority INTEGER NOT NULL, paused INTEGER NOT NULL, concurrency_limit INTEGER,
    doc TEXT NOT NULL, UNIQUE (pool_id, name));
CREATE TABLE IF NOT EXISTS blocks (
    id TEXT PRIMARY KEY, workspace_id TEXT NOT NULL, name TEXT NOT NULL, doc TEXT NOT NULL,
    UNIQUE (workspace_id, name));
CREATE TABLE IF NOT EXISTS deployments (
    id TEXT PRIMARY KEY, workspace_id TEXT NOT NULL, flow_name TEXT NOT NULL, name TEXT NOT NULL,
    pool_id TEXT NOT NULL, scheduled INTEGER NOT NULL, concurrency_limit INTEGER,
    collision_strategy TEXT NOT NULL, doc TEXT NOT NULL, UNIQUE (workspace_id, flow_name, name));
CREATE INDEX IF NOT EXISTS deployments_scheduled ON deployments (scheduled);
CREATE TABLE IF NOT EXISTS flow_runs (
    id TEXT PRIMARY KEY, workspace_id TEXT NOT NULL, deployment_id TEXT NOT NULL,
    pool_id TEXT NOT NULL, queue_id TEXT NOT NULL, state_type TEXT NOT NULL,
    scheduled_time TEXT NOT NULL, auto_scheduled INTEGER NOT NULL, idempotency_key TEXT,
    infra_id TEXT, lease_until TEXT, next_attempt_at TEXT, cleaned_up INTEGER NOT NULL,
    created TEXT NOT NULL, doc TEXT NOT NULL,
    run_token_hash TEXT, run_token_expires TEXT, flow_name TEXT,
    UNIQUE (deployment_id, idempotency_key));
CREATE INDEX IF NOT EXISTS runs_due ON flow_runs (pool_id, state_type, scheduled_time);
CREATE INDEX IF NOT EXISTS runs_by_state ON flow_runs (state_type, scheduled_time);
DROP INDEX IF EXISTS runs_by_deployment;
CREATE INDEX IF NOT EXISTS runs_by_deployment_time ON flow_runs (deployment_id, state_type, scheduled_time);
DROP INDEX IF EXISTS runs_by_workspace;
CREATE INDEX IF NOT EXISTS runs_by_workspace_window ON flow_runs (workspace_id, scheduled_time, id);
CREATE INDEX IF NOT EXISTS runs_by_workspace_state ON flow_runs (workspace_id, state_type, scheduled_time, id);
CREATE INDEX IF NOT EXISTS runs_by_deployment_position ON flow_runs (deployment_id, scheduled_time, id);
-- A run's tags, one row each in scheduled-time order, kept by triggers (tags are set when a run is made and never
-- change): filtering runs by a tag reads that tag's runs in order, not every run's JSON.
CREATE TABLE IF NOT EXISTS run_tags (
    workspace_id TEXT NOT NULL, tag TEXT NOT NULL, scheduled_time TEXT NOT NULL, run_id TEXT NOT NULL,
    PRIMARY KEY (workspace_id, tag, scheduled_time, run_id)) WITHOUT ROWID;
-- (a new run's tags are written by the store with the run: a trigger parsed the run's JSON on every insert)
DROP TRIGGER IF EXISTS run_tags_on_insert;
CREATE TRIGGER IF NOT EXISTS run_tags_on_reschedule AFTER UPDATE OF scheduled_time ON flow_runs
    WHEN OLD.scheduled_time IS NOT NEW.scheduled_time BEGIN
    UPDATE run_tags SET scheduled_time = NEW.scheduled_time WHERE workspace_id = OLD.workspace_id
        AND tag IN (SELECT value FROM json_each(OLD.doc, '$.tags')) AND scheduled_time = OLD.scheduled_time
        AND run_id = OLD.id;
END;
CREATE TRIGGER IF NOT EXISTS run_tags_on_delete AFTER DELETE ON flow_runs BEGIN
    DELETE FROM run_tags WHERE workspace_id = OLD.workspace_id AND tag IN (SELECT value FROM json_each(OLD.doc,
        '$.tags')) AND scheduled_time = OLD.scheduled_time AND run_id = OLD.id;
END;
CREATE TABLE IF NOT EXISTS flow_run_states (
    run_id TEXT NOT NULL, seq INTEGER NOT NULL, doc TEXT NOT NULL, PRIMARY KEY (run_id, seq));
CREATE TABLE IF NOT EXISTS task_runs (
    flow_run_id TEXT NOT NULL, id TEXT NOT NULL, doc TEXT NOT NULL, PRIMARY KEY (flow_run_id, id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS log_chunks (
    flow_run_id TEXT NOT NULL, seq INTEGER NOT NULL, keep_until TEXT NOT NULL, doc TEXT NOT NULL,
    PRIMARY KEY (flow_run_id, seq)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS log_chunks_by_expiry ON log_chunks (keep_until);
CREATE TABLE IF NOT EXISTS run_counters (
    flow_run_id TEXT NOT NULL, name TEXT NOT NULL, value INTEGER NOT NULL,
    PRIMARY KEY (flow_run_id, name)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS child_runs (
    parent_id TEXT NOT NULL, child_id TEXT NOT NULL, PRIMARY KEY (parent_id, child_id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS concurrency_limits (
    workspace_id TEXT NOT NULL, tag TEXT NOT NULL, version INTEGER NOT NULL, doc TEXT NOT NULL,
    PRIMARY KEY (workspace_id, tag)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS variables (
    workspace_id TEXT NOT NULL, name TEXT NOT NULL, doc TEXT NOT NULL, PRIMARY KEY (workspace_id, name)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS backfills (
    id TEXT PRIMARY KEY, workspace_id TEXT NOT NULL, deployment_id TEXT NOT NULL, state TEXT NOT NULL,
    version INTEGER NOT NULL, doc TEXT NOT NULL) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS backfills_by_workspace ON backfills (workspace_id, id);
CREATE INDEX IF NOT EXISTS backfills_by_state ON backfills (state, id);
"""

#: Fills ``run_tags`` from runs written before it existed (run once per database).
RUN_TAGS_BACKFILL = """
INSERT OR IGNORE INTO run_tags (workspace_id, tag, scheduled_time, run_id)
    SELECT r.workspace_id, t.value, r.scheduled_time, r.id FROM flow_runs r, json_each(r.doc, '$.tags') t
"""


#: A run's flow name as a column of its own (it never changes), indexed for the dashboard's flow filter; was an
#: index on ``json_extract(doc, '$.flow_name')``, which parsed the run's JSON on every insert and state change.
#: Applied after :data:`SCHEMA` (a database made before has the table without the column).
FLOW_NAME_COLUMN = """
DROP INDEX IF EXISTS runs_by_flow;
CREATE INDEX IF NOT EXISTS runs_by_flow_name ON flow_runs (workspace_id, flow_name, scheduled_time, id);
"""
FLOW_NAME_BACKFILL = "UPDATE flow_runs SET flow_name = json_extract(doc, '$.flow_name') WHERE flow_name IS NULL"
