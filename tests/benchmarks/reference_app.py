"""The limit of the stack, as ``make bench`` measures it beside pushpool (issue 28): the least an API on the same
parts can do per request — FastAPI on the same uvicorn with the same options, SQLite in WAL mode with
``synchronous=NORMAL`` as pushpool opens it, an API key looked up by its hash, a JSON body parsed into a model,
and one run-sized row written (a state change: one row updated and one history row added).

``python -m tests.benchmarks.reference_app --port P --home DIR`` serves it on 127.0.0.1 and writes its key
to ``DIR/bench.key``; :class:`tests.benchmarks.systems.ReferenceApi` drives it with the workloads' steps.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import secrets
import sqlite3
import threading
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

SCHEMA = """
CREATE TABLE IF NOT EXISTS api_keys (key_hash TEXT PRIMARY KEY, workspace TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (id TEXT PRIMARY KEY, deployment_id TEXT NOT NULL, state TEXT NOT NULL,
    scheduled_time TEXT NOT NULL, doc TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS runs_by_deployment ON runs (deployment_id, scheduled_time);
CREATE TABLE IF NOT EXISTS states (run_id TEXT NOT NULL, seq INTEGER NOT NULL, doc TEXT NOT NULL,
    PRIMARY KEY (run_id, seq));
"""


class RunIn(BaseModel):
    parameters: dict[str, Any] = Field(default_factory=dict)
    tags: list[str] = Field(default_factory=list)
    scheduled_time: datetime | None = None


class StateIn(BaseModel):
    type: str = Field(pattern="^[A-Z]+$")


def create_app(database: Path) -> FastAPI:
    local = threading.local()

    def conn() -> sqlite3.Connection:
        if not hasattr(local, "conn"):
            local.conn = sqlite3.connect(database, isolation_level=None, check_same_thread=False)
            local.conn.execute("PRAGMA journal_mode=WAL")
            local.conn.execute("PRAGMA synchronous=NORMAL")
        return local.conn

    def authenticate(request: Request, workspace: str) -> None:
        token = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        row = conn().execute("SELECT workspace FROM api_keys WHERE key_hash = ?",
                             (hashlib.sha256(token.encode()).hexdigest(),)).fetchone()
        if row is None or row[0] != workspace:
            raise HTTPException(401, "bad key")

    app = FastAPI()

    @app.post("/api/workspaces/{workspace}/deployments/{deployment_id}/runs", status_code=201)
    async def create_run(workspace: str, deployment_id: str, body: RunIn, request: Request) -> Response:
        authenticate(request, workspace)
        now = datetime.now(UTC).isoformat()
        run_id = str(uuid.uuid4())
        doc = {"id": run_id, "workspace_id": workspace, "deployment_id": deployment_id, "flow_name": "bench",
               "deployment_name": "bench", "name": f"run-{run_id[:8]}", "parameters": body.parameters,
               "tags": body.tags, "state": {"type": "SCHEDULED", "name": "Scheduled", "timestamp": now},
               "scheduled_time": (body.scheduled_time or datetime.now(UTC)).isoformat(), "created": now,
               "updated": now}
        text = json.dumps(doc)
        db = conn()
        db.execute("BEGIN IMMEDIATE")
        db.execute("INSERT INTO runs (id, deployment_id, state, scheduled_time, doc) VALUES (?, ?, ?, ?, ?)",
                   (run_id, deployment_id, "SCHEDULED", doc["scheduled_time"], text))
        db.execute("INSERT INTO states (run_id, seq, doc) VALUES (?, 1, ?)", (run_id, json.dumps(doc["state"])))
        db.execute("COMMIT")
        return Response(text, status_code=201, media_type="application/json")

    @app.post("/api/workspaces/{workspace}/flow_runs/{run_id}/set_state")
    async def set_state(workspace: str, run_id: str, body: StateIn, request: Request) -> Response:
        authenticate(request, workspace)
        db = conn()
        db.execute("BEGIN IMMEDIATE")
        row = db.execute("SELECT doc FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            db.execute("ROLLBACK")
            raise HTTPException(404, "no such run")
        doc = json.loads(row[0])
        doc["state"] = {"type": body.type, "name": body.type.title(), "timestamp": datetime.now(UTC).isoformat()}
        text = json.dumps(doc)
        db.execute("UPDATE runs SET state = ?, doc = ? WHERE id = ?", (body.type, text, run_id))
        db.execute("INSERT INTO states (run_id, seq, doc) VALUES (?, (SELECT COUNT(*) + 1 FROM states "
                   "WHERE run_id = ?), ?)", (run_id, run_id, json.dumps(doc["state"])))
        db.execute("COMMIT")
        return Response(text, media_type="application/json")

    @app.get("/api/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--home", type=Path, required=True)
    args = parser.parse_args()
    database = args.home / "reference.db"
    with sqlite3.connect(database) as db:
        db.executescript(SCHEMA)
        key = f"ref_{secrets.token_urlsafe(24)}"
        db.execute("INSERT INTO api_keys VALUES (?, 'default')", (hashlib.sha256(key.encode()).hexdigest(),))
    (args.home / "bench.key").write_text(key)
    uvicorn.run(create_app(database), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
