"""The PostgreSQL schema of :mod:`control_plane.storage.postgres`, as numbered migrations.

The tables are the SQLite store's (each record whole as JSON in ``doc``, plus the columns queries filter and sort
on), so both stores share their SQL. Text compares byte by byte (``COLLATE "C"``), as in SQLite, whatever the
database's own collation: names and fixed-width UTC timestamps sort the same in both stores.

A migration is applied once, in order, in its own transaction, recorded in ``schema_migrations``; replicas that
start together take turns on an advisory lock, so each migration runs exactly once. Add a migration at the end;
never edit one that shipped.
"""

from __future__ import annotations

T = 'TEXT COLLATE "C"'

INITIAL = f"""
CREATE TABLE meta (key {T} PRIMARY KEY, value {T} NOT NULL);
CREATE TABLE workspaces (id {T} PRIMARY KEY, name {T} NOT NULL UNIQUE, doc TEXT NOT NULL);
CREATE TABLE actors (id {T} PRIMARY KEY, kind {T} NOT NULL, workspace_id {T}, doc TEXT NOT NULL);
CREATE INDEX actors_by_workspace ON actors (workspace_id, kind);
CREATE TABLE memberships (workspace_id {T} NOT NULL, actor_id {T} NOT NULL, doc TEXT NOT NULL,
    PRIMARY KEY (workspace_id, actor_id));
CREATE INDEX memberships_by_actor ON memberships (actor_id);
CREATE TABLE api_keys (id {T} PRIMARY KEY, key_hash {T} NOT NULL UNIQUE, actor_id {T} NOT NULL, doc TEXT NOT NULL);
CREATE INDEX api_keys_by_actor ON api_keys (actor_id);
CREATE TABLE work_pools (id {T} PRIMARY KEY, workspace_id {T} NOT NULL, name {T} NOT NULL, doc TEXT NOT NULL,
    UNIQUE (workspace_id, name));
CREATE TABLE work_queues (id {T} PRIMARY KEY, workspace_id {T} NOT NULL, pool_id {T} NOT NULL, name {T} NOT NULL,
    priority INTEGER NOT NULL, paused INTEGER NOT NULL, concurrency_limit INTEGER, doc TEXT NOT NULL,
    UNIQUE (pool_id, name));
CREATE TABLE blocks (id {T} PRIMARY KEY, workspace_id {T} NOT NULL, name {T} NOT NULL, doc TEXT NOT NULL,
    UNIQUE (workspace_id, name));
CREATE TABLE deployments (id {T} PRIMARY KEY, workspace_id {T} NOT NULL, flow_name {T} NOT NULL, name {T} NOT NULL,
    pool_id {T} NOT NULL, scheduled INTEGER NOT NULL, concurrency_limit INTEGER, collision_strategy {T} NOT NULL,
    doc TEXT NOT NULL, UNIQUE (workspace_id, flow_name, name));
CREATE INDEX deployments_scheduled ON deployments (scheduled);
CREATE TABLE flow_runs (id {T} PRIMARY KEY, workspace_id {T} NOT NULL, deployment_id {T} NOT NULL,
    pool_id {T} NOT NULL, queue_id {T} NOT NULL, state_type {T} NOT NULL, scheduled_time {T} NOT NULL,
    auto_scheduled INTEGER NOT NULL, idempotency_key {T}, infra_id {T}, lease_until {T}, next_attempt_at {T},
    cleaned_up INTEGER NOT NULL, created {T} NOT NULL, doc TEXT NOT NULL, run_token_hash {T},
    run_token_expires {T}, flow_name {T}, UNIQUE (deployment_id, idempotency_key));
CREATE INDEX runs_due ON flow_runs (pool_id, state_type, scheduled_time);
CREATE INDEX runs_by_state ON flow_runs (state_type, scheduled_time);
CREATE INDEX runs_by_deployment_time ON flow_runs (deployment_id, state_type, scheduled_time);
CREATE INDEX runs_by_workspace_window ON flow_runs (workspace_id, scheduled_time, id);
CREATE INDEX runs_by_workspace_state ON flow_runs (workspace_id, state_type, scheduled_time, id);
CREATE INDEX runs_by_deployment_position ON flow_runs (deployment_id, scheduled_time, id);
CREATE INDEX runs_by_flow_name ON flow_runs (workspace_id, flow_name, scheduled_time, id);
CREATE TABLE run_tags (workspace_id {T} NOT NULL, tag {T} NOT NULL, scheduled_time {T} NOT NULL,
    run_id {T} NOT NULL, PRIMARY KEY (workspace_id, tag, scheduled_time, run_id));
-- a run's tag rows follow it when it is rescheduled or deleted (the store writes them when it makes the run)
CREATE FUNCTION run_tags_follow() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        DELETE FROM run_tags WHERE workspace_id = OLD.workspace_id AND scheduled_time = OLD.scheduled_time
            AND run_id = OLD.id AND tag IN (SELECT jsonb_array_elements_text(OLD.doc::jsonb -> 'tags'));
        RETURN OLD;
    END IF;
    UPDATE run_tags SET scheduled_time = NEW.scheduled_time WHERE workspace_id = OLD.workspace_id
        AND scheduled_time = OLD.scheduled_time AND run_id = OLD.id
        AND tag IN (SELECT jsonb_array_elements_text(OLD.doc::jsonb -> 'tags'));
    RETURN NEW;
END $$;
CREATE TRIGGER run_tags_on_reschedule AFTER UPDATE OF scheduled_time ON flow_runs
    FOR EACH ROW WHEN (OLD.scheduled_time IS DISTINCT FROM NEW.scheduled_time) EXECUTE FUNCTION run_tags_follow();
CREATE TRIGGER run_tags_on_delete AFTER DELETE ON flow_runs FOR EACH ROW EXECUTE FUNCTION run_tags_follow();
CREATE TABLE flow_run_states (run_id {T} NOT NULL, seq INTEGER NOT NULL, doc TEXT NOT NULL,
    PRIMARY KEY (run_id, seq));
CREATE TABLE task_runs (flow_run_id {T} NOT NULL, id {T} NOT NULL, doc TEXT NOT NULL, PRIMARY KEY (flow_run_id, id));
CREATE TABLE log_chunks (flow_run_id {T} NOT NULL, seq INTEGER NOT NULL, keep_until {T} NOT NULL, doc TEXT NOT NULL,
    PRIMARY KEY (flow_run_id, seq));
CREATE INDEX log_chunks_by_expiry ON log_chunks (keep_until);
CREATE TABLE run_counters (flow_run_id {T} NOT NULL, name {T} NOT NULL, value BIGINT NOT NULL,
    PRIMARY KEY (flow_run_id, name));
CREATE TABLE child_runs (parent_id {T} NOT NULL, child_id {T} NOT NULL, PRIMARY KEY (parent_id, child_id));
CREATE TABLE concurrency_limits (workspace_id {T} NOT NULL, tag {T} NOT NULL, version INTEGER NOT NULL,
    doc TEXT NOT NULL, PRIMARY KEY (workspace_id, tag));
CREATE TABLE variables (workspace_id {T} NOT NULL, name {T} NOT NULL, doc TEXT NOT NULL,
    PRIMARY KEY (workspace_id, name));
CREATE TABLE backfills (id {T} PRIMARY KEY, workspace_id {T} NOT NULL, deployment_id {T} NOT NULL,
    state {T} NOT NULL, version INTEGER NOT NULL, doc TEXT NOT NULL);
CREATE INDEX backfills_by_workspace ON backfills (workspace_id, id);
CREATE INDEX backfills_by_state ON backfills (state, id);
CREATE TABLE events (workspace_id {T} NOT NULL, occurred {T} NOT NULL, id {T} NOT NULL, event {T} NOT NULL,
    resource_id {T} NOT NULL, doc TEXT NOT NULL, PRIMARY KEY (workspace_id, occurred, id));
CREATE UNIQUE INDEX events_by_id ON events (workspace_id, id);
CREATE INDEX events_by_time ON events (occurred);
CREATE INDEX events_by_resource ON events (workspace_id, resource_id, occurred, id);
CREATE TABLE event_related (workspace_id {T} NOT NULL, resource_id {T} NOT NULL, occurred {T} NOT NULL,
    event_id {T} NOT NULL, PRIMARY KEY (workspace_id, resource_id, occurred, event_id));
CREATE INDEX event_related_by_time ON event_related (occurred);
CREATE TABLE webhooks (id {T} PRIMARY KEY, workspace_id {T} NOT NULL, name {T} NOT NULL, slug {T} NOT NULL UNIQUE,
    doc TEXT NOT NULL, UNIQUE (workspace_id, name));
CREATE TABLE automations (id {T} PRIMARY KEY, workspace_id {T} NOT NULL, name {T} NOT NULL,
    owner_deployment_id {T}, doc TEXT NOT NULL, UNIQUE (workspace_id, name));
CREATE TABLE trigger_buckets (automation_id {T} NOT NULL, key {T} NOT NULL, deadline {T}, version INTEGER NOT NULL,
    doc TEXT NOT NULL, PRIMARY KEY (automation_id, key));
CREATE INDEX buckets_by_deadline ON trigger_buckets (deadline) WHERE deadline IS NOT NULL;
"""

#: (version, what it does, SQL), applied in order.
MIGRATIONS: list[tuple[int, str, str]] = [
    (1, "the tables of pushpool 0.x", INITIAL),
]
LATEST = MIGRATIONS[-1][0]
