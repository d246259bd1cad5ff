"""A fake Cloud Run Admin API v2 (jobs, executions, operations) over HTTP on 127.0.0.1.

The official ``google-cloud-run`` client talks to it with the REST transport
(``client_options={"api_endpoint": url}``). Paths and JSON follow the real API: a create or run
answers a long-running operation, errors are ``{"error": {"code", "message", "status"}}``. It also
checks every call's bearer token: a service account's self-signed JWT (what google-auth sends for a key,
verified against the keys the test trusts) or a token from its OAuth token endpoint. ``inject``
queues HTTP errors per call (a run can fail *after* starting its execution, as a lost answer would);
:class:`CloudRunSimulator` runs what an execution's container would run.
"""

from __future__ import annotations

import base64
import itertools
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

from tests.fakes.containers import run_as_container
from tests.fakes.json_api import ApiError, JsonApi, Reply

TOKEN = "ya29.fake-cloud-run-token"
JOB_TYPE = "type.googleapis.com/google.cloud.run.v2.Job"
EXECUTION_TYPE = "type.googleapis.com/google.cloud.run.v2.Execution"
STATUS_NAMES = {400: "INVALID_ARGUMENT", 403: "PERMISSION_DENIED", 404: "NOT_FOUND", 409: "ALREADY_EXISTS",
                429: "RESOURCE_EXHAUSTED", 503: "UNAVAILABLE"}
SUCCEEDED, FAILED = 4, 3  # Condition.State


def _b64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


@dataclass
class CloudRunBehaviour:
    """How the fake takes its time and fails, as Cloud Run does: a job's creation and deletion are long-running
    operations that are done only after ``*_polls`` reads of the operation (the real ones take seconds), a job is
    not runnable while its creation goes on (FAILED_PRECONDITION), and a deletion can fail (the job stays)."""

    create_polls: int = 1
    delete_polls: int = 1
    failing_deletes: int = 0


@dataclass
class CloudRunState:
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    executions: dict[str, dict[str, Any]] = field(default_factory=dict)
    operations: dict[str, dict[str, Any]] = field(default_factory=dict)
    deleted_jobs: list[str] = field(default_factory=list)
    log_entries: list[dict[str, Any]] = field(default_factory=list)
    tokens_issued: int = 0
    #: Who made each call: a service account's email (self-signed JWT) or "token".
    callers: list[str] = field(default_factory=list)


class FakeCloudRunApi(JsonApi):
    def __init__(self) -> None:
        super().__init__()
        self.state = CloudRunState()
        self.behaviour = CloudRunBehaviour()
        self.trusted_keys: dict[str, Any] = {}
        self._ids = itertools.count(1)
        #: operation name → (reads left before it is done, what happens then)
        self._pending: dict[str, tuple[int, Any]] = {}

    # ------------------------------------------------------------------ HTTP
    def authenticate(self, path: str, headers: Any) -> Reply | None:
        if path == "/token":
            self.state.tokens_issued += 1
            return Reply({"access_token": TOKEN, "expires_in": 3600, "token_type": "Bearer"})
        caller = self._caller(headers.get("Authorization") or "")
        if caller is None:
            raise ApiError(401, "Request is missing required authentication credential.")
        self.state.callers.append(caller)
        return None

    def error_body(self, error: ApiError) -> dict[str, Any]:
        return {"error": {"code": error.status, "message": error.message,
                          "status": error.code or STATUS_NAMES.get(error.status, "UNKNOWN")}}

    def _caller(self, authorization: str) -> str | None:
        """Who is calling: an exchanged token, or a service account's self-signed JWT (RS256, checked)."""
        token = authorization.removeprefix("Bearer ")
        if token == TOKEN:
            return "token"
        try:
            header, payload, signature = token.split(".")
            claims = json.loads(_b64(payload))
            key = self.trusted_keys[claims["iss"]]
            key.verify(_b64(signature), f"{header}.{payload}".encode(), padding.PKCS1v15(), hashes.SHA256())
        except (ValueError, KeyError, InvalidSignature):
            return None
        return str(claims["iss"])

    def trust(self, service_account_info: dict[str, str]) -> None:
        """Accept JWTs signed by this service account key, as Google does for its own keys."""
        private = serialization.load_pem_private_key(service_account_info["private_key"].encode(), None)
        self.trusted_keys[service_account_info["client_email"]] = private.public_key()

    ROUTES = [
        ("POST", r"/v2/(entries):list", "list_log_entries"),
        ("POST", r"/v2/(projects/[^/]+/locations/[^/]+)/jobs", "create_job"),
        ("GET", r"/v2/(projects/[^/]+/locations/[^/]+)/jobs", "list_jobs"),
        ("GET", r"/v2/(projects/[^/]+/locations/[^/]+/operations/[^/]+)", "get_operation"),
        ("POST", r"/v2/(projects/[^/]+/locations/[^/]+/jobs/[^/:]+):run", "run_job"),
        ("GET", r"/v2/(projects/[^/]+/locations/[^/]+/jobs/[^/]+)/executions", "list_executions"),
        ("GET", r"/v2/(projects/[^/]+/locations/[^/]+/jobs/[^/]+/executions/[^/]+)/tasks", "list_tasks"),
        ("GET", r"/v2/(projects/[^/]+/locations/[^/]+/jobs/[^/]+/executions/[^/]+)", "get_execution"),
        ("POST", r"/v2/(projects/[^/]+/locations/[^/]+/jobs/[^/]+/executions/[^/:]+):cancel", "cancel_execution"),
        ("GET", r"/v2/(projects/[^/]+/locations/[^/]+/jobs/[^/]+)", "get_job"),
        ("DELETE", r"/v2/(projects/[^/]+/locations/[^/]+/jobs/[^/]+)", "delete_job"),
    ]

    def _operation(self, parent: str, *, done: bool, response: dict | None = None,
                   metadata: dict | None = None) -> dict[str, Any]:
        name = f"{parent}/operations/op-{next(self._ids)}" if parent else f"operations/op-{next(self._ids)}"
        op: dict[str, Any] = {"name": name, "done": done}
        if response is not None:
            op["response"] = response
        if metadata is not None:
            op["metadata"] = metadata
        self.state.operations[name] = op
        return op

    @staticmethod
    def _location(name: str) -> str:
        return "/".join(name.split("/")[:4])

    # ------------------------------------------------------------------ the API
    def create_job(self, parent: str, query: dict[str, list[str]], body: dict[str, Any]) -> dict[str, Any]:
        job_id = (query.get("jobId") or [""])[0]
        if not re.fullmatch(r"[a-z]([a-z0-9-]{0,61}[a-z0-9])?", job_id):
            raise ApiError(400, f"Invalid job id {job_id!r}")
        name = f"{parent}/jobs/{job_id}"
        if name in self.state.jobs:
            raise ApiError(409, f"Resource '{job_id}' already exists.")
        image = body.get("template", {}).get("template", {}).get("containers", [{}])[0].get("image", "")
        if image.endswith(":arm64-only"):
            raise ApiError(400, f"Container manifest type for '{image}' must support amd64/linux.")
        job = {**body, "name": name, "uid": f"uid-{next(self._ids)}", "createTime": now(), "executionCount": 0,
               "reconciling": True}
        self.state.jobs[name] = job

        def created(op: dict[str, Any]) -> None:
            job.pop("reconciling", None)
            op["response"] = {"@type": JOB_TYPE, **job}

        return self._later(parent, self.behaviour.create_polls, created)

    def _later(self, parent: str, polls: int, then: Any) -> dict[str, Any]:
        """A long-running operation that is done after ``polls`` reads (at once for 0), doing ``then`` then."""
        op = self._operation(parent, done=False)
        if polls <= 0:
            then(op)
            op["done"] = True
        else:
            self._pending[op["name"]] = (polls, then)
        return op

    def list_jobs(self, parent: str, *_: Any) -> dict[str, Any]:
        return {"jobs": [j for n, j in sorted(self.state.jobs.items()) if n.startswith(parent + "/jobs/")]}

    def get_operation(self, name: str, *_: Any) -> dict[str, Any]:
        if name not in self.state.operations:
            raise ApiError(404, f"Operation {name} not found")
        op = self.state.operations[name]
        if name in self._pending:
            left, then = self._pending.pop(name)
            if left <= 1:
                then(op)
                op["done"] = True
            else:
                self._pending[name] = (left - 1, then)
        return op

    def get_job(self, name: str, *_: Any) -> dict[str, Any]:
        if name not in self.state.jobs:
            raise ApiError(404, f"Resource '{name}' was not found")
        return self.state.jobs[name]

    def run_job(self, name: str, _: Any, body: dict[str, Any]) -> dict[str, Any]:
        job = self.get_job(name)
        if job.get("reconciling"):
            raise ApiError(400, f"Resource '{name.rsplit('/', 1)[1]}' is not ready: its creation is in progress.",
                           code="FAILED_PRECONDITION")
        job["executionCount"] += 1
        execution_name = f"{name}/executions/{name.rsplit('/', 1)[1]}-{next(self._ids):05d}"
        execution = {"name": execution_name, "job": name.rsplit("/", 1)[1], "createTime": now(), "taskCount": 1,
                     "runningCount": 0, "succeededCount": 0, "failedCount": 0, "cancelledCount": 0,
                     "template": json.loads(json.dumps(job.get("template", {}).get("template", {}))),
                     "overrides": body.get("overrides") or {}, "conditions": []}
        self.state.executions[execution_name] = execution
        return self._operation(self._location(name), done=False, metadata={"@type": EXECUTION_TYPE, **execution})

    def list_executions(self, parent: str, *_: Any) -> dict[str, Any]:
        self.get_job(parent)
        found = [e for n, e in self.state.executions.items() if n.startswith(parent + "/executions/")]
        return {"executions": sorted(found, key=lambda e: e["createTime"], reverse=True)}

    def get_execution(self, name: str, *_: Any) -> dict[str, Any]:
        if name not in self.state.executions:
            raise ApiError(404, f"Resource '{name}' was not found")
        return self.state.executions[name]

    def list_tasks(self, parent: str, *_: Any) -> dict[str, Any]:
        execution = self.get_execution(parent)
        task: dict[str, Any] = {"name": f"{parent}/tasks/{parent.rsplit('/', 1)[1]}-task0", "index": 0}
        if "exitCode" in execution:
            task["lastAttemptResult"] = {"exitCode": execution["exitCode"],
                                         "status": {"code": 2, "message": execution.get("taskMessage", "")}}
        return {"tasks": [task]}

    def cancel_execution(self, name: str, *_: Any) -> dict[str, Any]:
        execution = self.get_execution(name)
        if not execution.get("completionTime"):
            self._complete(execution, cancelled=True, message="Execution was cancelled.")
        return self._operation(self._location(name), done=True, response={"@type": EXECUTION_TYPE, **execution})

    def delete_job(self, name: str, *_: Any) -> dict[str, Any]:
        job = self.get_job(name)
        fails = self.behaviour.failing_deletes > 0
        self.behaviour.failing_deletes -= int(fails)

        def deleted(op: dict[str, Any]) -> None:
            if fails:  # the job stays
                op["error"] = {"code": 13, "message": "Internal error encountered while deleting the job."}
                return
            self.state.jobs.pop(job["name"], None)
            self.state.deleted_jobs.append(name)
            op["response"] = {"@type": JOB_TYPE, **job}

        return self._later(self._location(name), self.behaviour.delete_polls, deleted)

    def list_log_entries(self, _: str, __: Any, body: dict[str, Any]) -> dict[str, Any]:
        """Cloud Logging's entries.list, for the filters the pusher writes (execution name, timestamp >)."""
        query = body.get("filter", "")
        execution = re.search(r'execution_name"="([^"]+)"', query)
        after = re.search(r'timestamp>"([^"]+)"', query)
        found = [e for e in self.state.log_entries
                 if execution and e["labels"]["run.googleapis.com/execution_name"] == execution.group(1)
                 and (not after or e["timestamp"] > after.group(1))]
        found.sort(key=lambda e: e["timestamp"], reverse="desc" in body.get("orderBy", ""))
        return {"entries": found[:int(body.get("pageSize") or 1000)]}

    def add_log(self, execution_name: str, text: str, timestamp: str) -> None:
        job, execution = execution_name.split("/")[5], execution_name.split("/")[7]
        self.state.log_entries.append({
            "logName": f"projects/{execution_name.split('/')[1]}/logs/run.googleapis.com%2Fstdout",
            "resource": {"type": "cloud_run_job", "labels": {"job_name": job}}, "textPayload": text,
            "timestamp": timestamp, "labels": {"run.googleapis.com/execution_name": execution},
            "insertId": f"{len(self.state.log_entries)}"})

    # ------------------------------------------------------------------ test controls
    @staticmethod
    def _complete(execution: dict[str, Any], *, succeeded: bool = False, cancelled: bool = False,
                  message: str = "") -> None:
        execution["completionTime"] = now()
        execution["runningCount"] = 0
        key = "succeededCount" if succeeded else "cancelledCount" if cancelled else "failedCount"
        execution[key] = 1
        execution["conditions"] = [{"type": "Completed", "state": SUCCEEDED if succeeded else FAILED,
                                    "message": message, "lastTransitionTime": now()}]

    def complete_operations(self) -> None:
        """Cloud Run finishes every operation still going (creations, deletions) now."""
        for name in list(self._pending):
            _, then = self._pending.pop(name)
            then(self.state.operations[name])
            self.state.operations[name]["done"] = True

    def running(self, execution_name: str) -> None:
        execution = self.state.executions[execution_name]
        execution.update(startTime=now(), runningCount=1)

    def finish(self, execution_name: str, exit_code: int = 0, message: str = "", *, counts: bool = True) -> None:
        """End the execution as Cloud Run does: the task's exit code on the task, a summary on the execution;
        ``counts=False``: its task counts not yet updated (they lag the Completed condition)."""
        execution = self.state.executions[execution_name]
        if exit_code:
            execution["exitCode"] = exit_code
            execution["taskMessage"] = message or "The container exited with an error."
        summary = f"Task {execution_name.rsplit('/', 1)[1]}-task0 failed: {execution.get('taskMessage')}"
        self._complete(execution, succeeded=exit_code == 0, message=summary if exit_code else "")
        if not counts:
            execution.update(succeededCount=0, failedCount=0, runningCount=1)

    def executions_of_job(self, job_name: str) -> list[dict[str, Any]]:
        return [e for n, e in self.state.executions.items() if n.startswith(job_name + "/executions/")]


class CloudRunSimulator:
    """Runs what an execution's container would run: the job's command, args and env, as the fake recorded them."""

    def __init__(self, api: FakeCloudRunApi, workdir: Path) -> None:
        self.api, self.workdir = api, workdir
        self.output = ""

    def recorded(self, execution_name: str) -> tuple[list[str], dict[str, str]]:
        container = self.api.state.executions[execution_name]["template"]["containers"][0]
        env = {e["name"]: e.get("value", "") for e in container.get("env", []) if "value" in e}
        return list(container.get("command") or []) + list(container.get("args") or []), env

    def run(self, execution_name: str, timeout: float = 60) -> int:
        command, env = self.recorded(execution_name)
        self.api.running(execution_name)
        code, self.output = run_as_container(command, env, self.workdir, timeout)
        self.api.finish(execution_name, code)
        return code
