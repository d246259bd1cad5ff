"""A fake Coiled API: the REST endpoints the real ``coiled`` client calls for a batch job, on 127.0.0.1.

The real client talks to it unchanged (``coiled.Cloud(server=URL)``; pushpool reads the URL from
``PUSHPOOL_COILED_SERVER``). It serves what ``coiled.batch.run`` with a container or a software
environment needs (user and memberships, the workspace's backend options, software environments from a
container, jobs from a gzipped spec, clusters by name and id, their jobs, deletion) and the calls the
``coiled:push`` pusher and provisioner make for status, logs and set-up. It is as strict as Coiled where
the client shows Coiled's rules: every request carries a known token (``ApiToken <token>``, as the client
sends it) and may only touch the workspaces its user is a member of; cluster and software environment
names follow Coiled's pattern; a cluster name is unique among a workspace's clusters that are not
stopped; a workspace with no cloud connected answers ``NO_CLOUD_SETUP``; a compressed job spec is at most
2.4 MiB; secret and plain environment variable names must be valid. Any other call fails loudly with its
method and path. :class:`CoiledSimulator` runs what a job's VM would run.
"""

from __future__ import annotations

import gzip
import io
import itertools
import json
import re
import shlex
import time
import zipfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.fakes.coiled_software_api import NAME, SoftwareEnvironments
from tests.fakes.containers import run_as_container
from tests.fakes.json_api import ApiError, JsonApi, Reply

#: What a tag may hold: Coiled puts a cluster's tags on its VMs, and AWS allows these characters.
TAG = re.compile(r"[\w .:/=+\-@]+", re.ASCII)
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
MAX_COMPRESSED_SPEC = 2_400_000
#: ``coiled.batch.run`` sends ``user_command`` and these; anything else in a spec is refused (typo'd fields
#: would be silently dropped by the real service; here they fail the test that sent them).
JOB_SPEC_FIELDS = {
    "user_command", "user_files", "task_array_ntasks", "task_array", "scheduler_task_array", "env_vars",
    "secret_env_vars", "wait_for_ready_cluster", "workdir", "pipe_to_files", "host_setup", "job_timeout_seconds",
    "run_in_container", "max_retries", "workspace", "task_map_env_var", "task_map_env_vals",
    "task_map_env_vars_and_vals",
}
#: A few of each cloud's VM types Coiled lists (name, cores, memory MiB, GPUs, architecture).
VM_TYPES = {
    "aws": [("t3.medium", 2, 4096, 0, "x86_64"), ("m6i.large", 2, 8192, 0, "x86_64"),
            ("m6i.xlarge", 4, 16384, 0, "x86_64"), ("m6i.2xlarge", 8, 32768, 0, "x86_64"),
            ("r6i.large", 2, 16384, 0, "x86_64"), ("c6i.xlarge", 4, 8192, 0, "x86_64"),
            ("m7g.large", 2, 8192, 0, "arm64"), ("m7g.xlarge", 4, 16384, 0, "arm64"),
            ("g4dn.xlarge", 4, 16384, 1, "x86_64")],
    "gcp": [("e2-standard-2", 2, 8192, 0, "x86_64"), ("e2-standard-4", 4, 16384, 0, "x86_64"),
            ("t2a-standard-4", 4, 16384, 0, "arm64"), ("n1-standard-4", 4, 15360, 1, "x86_64")],
    "azure": [("Standard_D2s_v5", 2, 8192, 0, "x86_64"), ("Standard_D4s_v5", 4, 16384, 0, "x86_64")],
}
#: Cluster states in which a name is still taken.
LIVE = {"pending", "starting", "scaling", "ready", "pausing", "paused", "stopping"}


def now() -> str:
    return datetime.now(UTC).isoformat()


@dataclass
class FakeJob:
    job_id: int
    workspace: str
    token: str
    spec: dict[str, Any]
    cluster_id: int | None = None
    state: str = "pending"  # pending → assigned → done (the task's exit code says how)
    exit_code: int | None = None
    start: str | None = None
    stop: str | None = None

    @property
    def command(self) -> list[str]:
        return shlex.split(self.spec["user_command"])

    @property
    def env(self) -> dict[str, str]:
        return {**self.spec.get("env_vars", {}), **self.spec.get("secret_env_vars", {})}


@dataclass
class FakeCluster:
    cluster_id: int
    workspace: str
    name: str
    token: str
    request: dict[str, Any]
    state: str = "pending"
    reason: str = ""
    job_ids: list[int] = field(default_factory=list)
    #: (timestamp in ms, line) as Coiled collects them from the VM
    logs: list[tuple[int, str]] = field(default_factory=list)

    @property
    def tags(self) -> dict[str, str]:
        return self.request.get("tags") or {}


@dataclass
class CoiledState:
    #: token → username
    tokens: dict[str, str] = field(default_factory=dict)
    #: username → workspaces the user is a member of (the first is the default)
    members: dict[str, list[str]] = field(default_factory=dict)
    #: workspace → its cloud ("aws", "gcp", "azure"), or "" when `coiled setup` was never run
    clouds: dict[str, str] = field(default_factory=dict)
    jobs: dict[int, FakeJob] = field(default_factory=dict)
    clusters: dict[int, FakeCluster] = field(default_factory=dict)
    #: (workspace, name) → the software environment as created
    software: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    interactions: list[dict[str, Any]] = field(default_factory=list)
    #: uploaded package id → {"workspace", "name", "md5" (base64, what the upload must match), "data"}
    packages: dict[int, dict[str, Any]] = field(default_factory=dict)
    #: build id → {"workspace", "software", "state", "polls", "reason", "log"}
    builds: dict[int, dict[str, Any]] = field(default_factory=dict)
    #: requirement names no index has: a build that needs one fails, as pip would
    unknown_requirements: set[str] = field(default_factory=set)


class FakeCoiledApi(SoftwareEnvironments, JsonApi):
    ROUTES = [
        ("GET", r"/api/v2/user/me()", "user_me"),
        ("GET", r"/api/v2/user/me/memberships()", "memberships"),
        ("GET", r"/api/v1/([^/]+)/backend_options/", "backend_options"),
        ("GET", r"/api/v1/vm-types/()", "vm_types"),
        ("POST", r"/api/v2/software-environment/account/([^/]+)", "create_software"),
        ("POST", r"/api/v2/software-environment/account/([^/]+)/package-upload", "package_upload"),
        ("PUT", r"/fake-bucket/(\d+)", "put_package"),
        ("GET", r"/api/v2/software-environment/account/([^/]+/build/\d+)", "software_build"),
        ("GET", r"/api/v2/software-environment/account/([^/]+/build/logs/\d+)", "software_build_logs"),
        ("GET", r"/api/v2/software-environment/account/([^/]+/alias/name/[^/]+)", "software_by_name"),
        ("POST", r"/api/v2/jobs/compressed()", "create_job"),
        ("GET", r"/api/v2/jobs/cluster/(\d+)", "jobs_of_cluster"),
        ("GET", r"/api/v2/jobs/(\d+)", "get_job"),
        ("POST", r"/api/v2/clusters/account/([^/]+)/", "create_cluster"),
        ("GET", r"/api/v2/clusters/account/([^/]+/name/[^/]+)", "cluster_by_name"),
        ("GET", r"/api/v2/clusters/account/([^/]+/id/\d+)", "cluster_details"),
        ("DELETE", r"/api/v2/clusters/account/([^/]+/id/\d+)", "delete_cluster"),
        ("GET", r"/api/v2/clusters/account/([^/]+/id/\d+)/better-logs", "cluster_logs"),
        ("POST", r"/api/v2/interactions/interaction()", "interaction"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.state = CoiledState()
        self._ids = itertools.count(1001)
        self._token = ""

    # ------------------------------------------------------------------ set-up by tests
    def add_user(self, token: str, username: str, workspaces: list[str], cloud: str = "aws") -> None:
        self.state.tokens[token] = username
        self.state.members[username] = list(workspaces)
        for workspace in workspaces:
            self.state.clouds.setdefault(workspace, cloud)

    # ------------------------------------------------------------------ hooks
    def authenticate(self, path: str, headers: Any) -> Reply | None:
        if path.startswith("/fake-bucket/"):
            return None  # a presigned URL: the signature in it is the credential (the client sends no token)
        scheme, _, token = (headers.get("Authorization") or "").partition(" ")
        if scheme not in ("ApiToken", "Token") or token not in self.state.tokens:
            raise ApiError(401, "Invalid token.")
        self._token = token
        return None

    def decode_body(self, raw: bytes, headers: Any) -> Any:
        if headers.get("Content-Type") == "binary/octet-stream":  # a package going to the presigned URL
            return {"data": raw, "content_md5": headers.get("content-md5") or ""}
        if raw[:2] == b"\x1f\x8b":  # the client gzips a job spec and posts the bytes as they are
            if len(raw) > MAX_COMPRESSED_SPEC:
                raise ApiError(413, f"job spec is {len(raw)} bytes compressed, over the 2.4 MiB limit")
            raw = gzip.decompress(raw)
        try:
            return json.loads(raw) if raw else {}
        except ValueError:
            raise ApiError(400, "request body is not JSON") from None

    def error_body(self, error: ApiError) -> dict[str, Any]:
        body: dict[str, Any] = {"detail": error.message}
        if error.code:
            body = {"code": error.code, "message": error.message}
        return body

    def _route(self, method: str, path: str, query: dict[str, list[str]], body: Any) -> Any:
        try:
            return super()._route(method, path, query, body)
        except ApiError as exc:
            if exc.status == 404 and exc.message.startswith("no route"):
                raise ApiError(404, f"fake Coiled API: unknown call {method} {path}") from None
            raise

    # ------------------------------------------------------------------ helpers
    @property
    def user(self) -> str:
        return self.state.tokens[self._token]

    def _member(self, workspace: str) -> str:
        if workspace not in self.state.members[self.user]:
            raise ApiError(403, f"You aren't a member of the {workspace!r} workspace.", code="PERMISSION_DENIED")
        return workspace

    def _cluster(self, key: str) -> FakeCluster:
        workspace, _, cluster_id = key.split("/")[:3]
        cluster = self.state.clusters.get(int(cluster_id))
        if cluster is None or cluster.workspace != self._member(workspace):
            raise ApiError(404, "Not found.")
        return cluster

    # ------------------------------------------------------------------ user
    def user_me(self, _: str, query: dict, body: Any) -> dict[str, Any]:
        workspaces = self.state.members[self.user]
        return {"id": 1, "username": self.user, "email": f"{self.user}@example.com",
                "default_account": {"slug": workspaces[0], "name": workspaces[0]} if workspaces else None}

    def memberships(self, _: str, query: dict, body: Any) -> list[dict[str, Any]]:
        return [{"account": {"id": index + 1, "slug": slug, "name": slug}, "is_admin": True,
                 "is_default_account": index == 0}
                for index, slug in enumerate(self.state.members[self.user])]

    def backend_options(self, workspace: str, query: dict, body: Any) -> dict[str, Any]:
        cloud = self.state.clouds.get(self._member(workspace), "")
        if not cloud:
            return {"backend": "", "options": {}}
        return {"backend": f"vm_{cloud}", "options": {"provider_name": cloud, "region_name": "us-east-1"}}

    def vm_types(self, _: str, query: dict, body: Any) -> dict[str, Any]:
        def number(name: str) -> float | None:
            return float(query[name][0]) if name in query else None

        cloud = (query.get("backend_type") or ["vm_aws"])[0].removeprefix("vm_")
        bounds = {"cores": (number("cores__gte"), number("cores__lte"), number("cores")),
                  "memory": (number("memory__gte"), number("memory__lte"), None),
                  "gpus": (number("gpus__gte"), number("gpus__lte"), number("gpus"))}
        results = []
        for name, cores, memory, gpus, arch in VM_TYPES.get(cloud, []):
            values = {"cores": cores, "memory": memory, "gpus": gpus}
            if any((low is not None and values[key] < low) or (high is not None and values[key] > high)
                   or (exact is not None and values[key] != exact) for key, (low, high, exact) in bounds.items()):
                continue
            if "arch" in query and query["arch"][0] != arch:
                continue
            results.append({"name": name, "cores": cores, "memory": memory, "gpus": gpus, "arch": arch,
                            "backend_type": f"vm_{cloud}", "coiled_credits": cores * 0.05})
        return {"results": results, "next": None}

    def interaction(self, _: str, query: dict, body: Any) -> dict[str, Any]:
        self.state.interactions.append(body)
        return {}

    # ------------------------------------------------------------------ jobs
    def create_job(self, _: str, query: dict, body: Any) -> dict[str, Any]:
        unknown = set(body) - JOB_SPEC_FIELDS
        if unknown:
            raise ApiError(400, f"unknown job spec fields: {sorted(unknown)}")
        if not isinstance(body.get("user_command"), str) or not body["user_command"].strip():
            raise ApiError(400, "user_command: required")
        for kind in ("env_vars", "secret_env_vars"):
            for name in body.get(kind) or {}:
                if not ENV_NAME.match(name):
                    raise ApiError(400, f"{kind}: invalid environment variable name {name!r}")
        workspace = self._member(body.get("workspace") or self.state.members[self.user][0])
        job = FakeJob(next(self._ids), workspace, self._token, body)
        self.state.jobs[job.job_id] = job
        return {"id": job.job_id}

    def _job_answer(self, job: FakeJob) -> dict[str, Any]:
        cluster = self.state.clusters.get(job.cluster_id or 0)
        return {"id": job.job_id, "cluster_id": job.cluster_id, "cluster_state": cluster.state if cluster else None,
                "user_command": job.spec["user_command"], "state": job.state,
                "tasks": [{"array_task_id": 0, "state": job.state, "exit_code": job.exit_code, "start": job.start,
                           "stop": job.stop, "assigned_to": None, "assigned_to_id": None}]}

    def get_job(self, job_id: str, query: dict, body: Any) -> dict[str, Any]:
        job = self.state.jobs.get(int(job_id))
        if job is None or job.workspace not in self.state.members[self.user]:
            raise ApiError(404, "Not found.")
        return self._job_answer(job)

    def jobs_of_cluster(self, cluster_id: str, query: dict, body: Any) -> list[dict[str, Any]]:
        cluster = self.state.clusters.get(int(cluster_id))
        if cluster is None or cluster.workspace not in self.state.members[self.user]:
            raise ApiError(404, "Not found.")
        return [self._job_answer(self.state.jobs[job_id]) for job_id in cluster.job_ids]

    # ------------------------------------------------------------------ clusters
    def create_cluster(self, workspace: str, query: dict, body: Any) -> Reply:
        self._member(workspace)
        if not self.state.clouds.get(workspace):
            raise ApiError(400, f"Workspace {workspace!r} has no cloud provider configured. You can configure one "
                                "at https://cloud.coiled.io/settings/setup", code="NO_CLOUD_SETUP")
        name = body.get("name") or ""
        if not NAME.match(name):
            raise ApiError(400, f"Invalid cluster name {name!r}")
        for existing in self.state.clusters.values():
            if existing.workspace == workspace and existing.name == name and existing.state in LIVE:
                return Reply({"id": existing.cluster_id, "existing": True})
        if body.get("env_name"):
            senv = self.state.software.get((workspace, body["env_name"]))
            if senv is None:
                raise ApiError(404, f"Software environment {body['env_name']!r} not found in {workspace!r}")
            build = self.state.builds.get(senv.get("build_id", -1))
            if build is not None and build["state"] != "built":
                raise ApiError(400, f"Software environment {body['env_name']!r} is not built ({build['state']})")
        for key, value in (body.get("tags") or {}).items():
            if not TAG.fullmatch(key) or len(key) > 128 or not TAG.fullmatch(str(value) or "_") or len(value) > 256:
                raise ApiError(400, f"Invalid tag {key!r}={value!r}: the cloud takes letters, digits, spaces and "
                                    "_ . : / = + - @ (128 characters in a key, 256 in a value)")
        cluster = FakeCluster(next(self._ids), workspace, name, self._token, body)
        for job_id in body.get("batch_job_ids") or []:
            job = self.state.jobs.get(job_id)
            if job is None or job.workspace != workspace:
                raise ApiError(400, f"batch job {job_id} not found in {workspace!r}")
            if job.cluster_id is not None:
                raise ApiError(400, f"batch job {job_id} is already assigned to cluster {job.cluster_id}")
            job.cluster_id = cluster.cluster_id
            cluster.job_ids.append(job_id)
        self.state.clusters[cluster.cluster_id] = cluster
        return Reply({"id": cluster.cluster_id, "existing": False})

    def cluster_by_name(self, key: str, query: dict, body: Any) -> dict[str, Any]:
        workspace, _, name = key.split("/")
        self._member(workspace)
        for cluster in self.state.clusters.values():
            if cluster.workspace == workspace and cluster.name == name and cluster.state in LIVE:
                return {"id": cluster.cluster_id, "name": name}
        raise ApiError(404, "Not found.")

    def cluster_details(self, key: str, query: dict, body: Any) -> dict[str, Any]:
        cluster = self._cluster(key)
        return {"id": cluster.cluster_id, "name": cluster.name, "account": {"slug": cluster.workspace},
                "current_state": {"state": cluster.state, "reason": cluster.reason, "updated": now()},
                "tags": cluster.tags, "coiled_hosted": False}

    def delete_cluster(self, key: str, query: dict, body: Any) -> dict[str, Any]:
        cluster = self._cluster(key)
        if cluster.state in LIVE:
            reason = (query.get("reason") or ["stopped by request"])[0]
            self.stop_cluster(cluster.cluster_id, reason)
        return {}

    def cluster_logs(self, key: str, query: dict, body: Any) -> list[dict[str, Any]]:
        cluster = self._cluster(key)
        since = int((query.get("since_ms") or ["0"])[0])
        return [{"timestamp": stamp, "message": line, "instance_id": cluster.cluster_id}
                for stamp, line in cluster.logs if stamp >= since]

    # ------------------------------------------------------------------ what Coiled does on its own
    def cluster(self, cluster_id: int) -> FakeCluster:
        return self.state.clusters[cluster_id]

    def job_of(self, cluster_id: int) -> FakeJob:
        return self.state.jobs[self.cluster(cluster_id).job_ids[0]]

    def clusters_named(self, name: str) -> list[FakeCluster]:
        return [c for c in self.state.clusters.values() if c.name == name]

    def begin(self, cluster_id: int) -> None:
        """The VM is up and the job's task started."""
        with self._lock:
            cluster = self.cluster(cluster_id)
            cluster.state = "ready"
            for job_id in cluster.job_ids:
                self.state.jobs[job_id].state, self.state.jobs[job_id].start = "assigned", now()

    def finish(self, cluster_id: int, exit_code: int, *, cluster_state: str = "stopped", reason: str = "",
               output: str = "") -> None:
        """The task ended with ``exit_code``; Coiled stops (or errors) the cluster and keeps its logs."""
        with self._lock:
            cluster = self.cluster(cluster_id)
            cluster.state, cluster.reason = cluster_state, reason
            stamp = int(time.time() * 1000)
            cluster.logs.extend((stamp + index, line) for index, line in enumerate(output.splitlines()))
            for job_id in cluster.job_ids:
                job = self.state.jobs[job_id]
                if job.state != "done":
                    job.state, job.exit_code, job.stop = "done", exit_code, now()
                    job.start = job.start or job.stop

    def stop_cluster(self, cluster_id: int, reason: str) -> None:
        """Coiled stops the cluster (a request, or its own doing): a running task ends killed."""
        cluster = self.state.clusters[cluster_id]
        cluster.state, cluster.reason = "stopped", reason
        for job_id in cluster.job_ids:
            job = self.state.jobs[job_id]
            if job.state != "done":
                job.state, job.exit_code, job.stop = "done", 137 if job.start else None, now()


class CoiledSimulator:
    """Runs what a batch job's VM would run: the job's command and environment as the fake recorded them."""

    def __init__(self, api: FakeCoiledApi, workdir: Path) -> None:
        self.api, self.workdir = api, workdir
        self.output = ""

    def run(self, cluster_id: int, timeout: float = 60) -> int:
        """Run the job: in ``workdir`` (the image's working directory); in a software environment with an
        uploaded package, with that package installed and nothing of the project around (an empty directory)."""
        job, cluster = self.api.job_of(cluster_id), self.api.cluster(cluster_id)
        self.api.begin(cluster_id)
        workdir, pythonpath = self.workdir, None
        wheel = self.api.software_wheel(cluster.workspace, cluster.request["env_name"]) \
            if cluster.request.get("env_name") else None
        if wheel is not None:
            site = self.workdir / f"coiled-senv-{cluster_id}" / "site-packages"
            zipfile.ZipFile(io.BytesIO(wheel)).extractall(site)
            workdir = site.parent / "scratch"
            workdir.mkdir()
            pythonpath = str(site)
        code, self.output = run_as_container(job.command, job.env, workdir, timeout, pythonpath=pythonpath)
        self.api.finish(cluster_id, code, output=self.output)
        return code
