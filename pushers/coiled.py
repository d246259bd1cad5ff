"""``coiled:push``: each flow run is one Coiled batch job, on a VM of its own in the user's cloud account.

* The ``coiled`` client is imported lazily; each pool's token gets its own ``coiled.Cloud`` (kept), made
  with the token, the server and the workspace passed in, so nothing process-wide (``coiled login``'s
  file, ``DASK_COILED__TOKEN``) is used. The token is checked with two plain requests first: a token the
  client finds invalid would make it start its interactive login (a browser and a ten-minute poll).
* A run's cluster is named ``pushpool-<run id>`` and tagged with it; a submission looks the name up
  first and adopts a cluster it finds, so a run never gets two (``coiled.batch.run`` makes the job
  before the cluster; a crash between the two leaves a job no cluster runs — nothing starts, nothing is
  billed — and the next submission makes one that is).
* The run's environment, its run token included, goes to Coiled as secret environment (sent to the VM,
  not stored by Coiled); the image is ``container`` (the deployment's image) or a ``software`` environment.
* The server is Coiled's (``https://cloud.coiled.io``) unless the operator sets ``PUSHPOOL_COILED_SERVER``;
  a tenant cannot point the control plane elsewhere.
* Coiled's client API beyond ``coiled.batch.run`` is internal: the tested range is pinned (``COILED_TESTED``)
  and every error names the installed client version.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from typing import Any

from pushpool.pushers.base import (
    ClientCache,
    InfraState,
    InfraStatus,
    Job,
    LogPage,
    PermanentPusherError,
    PusherContext,
    PusherError,
    Submission,
    TransientPusherError,
    classify_exit_code,
    job_image,
)
from pushpool.pushers.coiled_template import VARIABLES
from pushpool.pushers.templates import job_template

RUNNER_COMMAND = ["pushpool-runner"]
#: The ``coiled`` releases this pusher is tested with (pyproject pins the same range).
COILED_TESTED = ">=1.130,<1.136"
DEFAULT_SERVER = "https://cloud.coiled.io"
RUN_TAG = "pushpool.flow-run-id"
#: The package a software environment made by ``flow.deploy`` carries the project as (pushpool.coiled_software).
PROJECT_PACKAGE = "pushpool_project"
#: Coiled's own Prefect integration tags a job with this; with it Coiled runs the command in the image's
#: working directory (without it, in /scratch/batch, where the flow's code is not).
COILED_RUN_TAG = "flow-run-id"
#: Cluster states in which the run's VM may still be up (Coiled's ClusterStateEnum).
LIVE_STATES = {"pending", "starting", "scaling", "ready", "pausing", "paused", "stopping"}
NO_TOKEN = ("no Coiled token: set the pool's 'coiled_credentials' job variable to a coiled-credentials block, "
            "e.g. \"{{ pushpool.blocks.NAME }}\" (`pushpool work-pool provision-infra POOL` creates one)")
#: Where the client would print its panel and progress; the control plane wants none of it.
_QUIET = logging.getLogger("pushpool.pushers.coiled.client")
_QUIET.addHandler(logging.NullHandler())
_QUIET.propagate = False


def coiled_server() -> str:
    return (os.environ.get("PUSHPOOL_COILED_SERVER") or DEFAULT_SERVER).rstrip("/")


def cluster_name(key: str) -> str:
    """The run's cluster name (Coiled names are lowercase)."""
    return f"pushpool-{key}".lower()


def details_url(cluster_id: int | str) -> str:
    """The cluster's page in Coiled's web app: its state, the job, and its logs."""
    return f"{coiled_server()}/clusters/{cluster_id}"


def _coiled() -> Any:
    try:
        import coiled
        import coiled.batch  # noqa: F401 - a submodule the package does not import itself
    except ModuleNotFoundError as exc:  # pragma: no cover - the extra is missing
        raise PermanentPusherError("coiled:push needs the 'coiled' extra: pip install 'pushpool[coiled]'") from exc
    return coiled


def _version() -> str:
    try:
        return str(_coiled().__version__)
    except PusherError:  # pragma: no cover
        return "not installed"


def translate(exc: BaseException, action: str) -> PusherError:
    """A pusher error for a failed Coiled call, by the client's exception type, naming the client version."""
    if isinstance(exc, PusherError):
        return exc
    kind = type(exc).__name__
    message = " ".join(str(exc).split())
    detail = (f"Coiled {action} failed ({kind}: {message}; coiled client {_version()}, pushpool is tested "
              f"with {COILED_TESTED})")
    lowered = message.lower()
    if kind in ("AuthenticationError", "PermissionsError", "PermissionError") or "invalid token" in lowered:
        return PermanentPusherError(f"{detail}: check the pool's Coiled token and workspace "
                                    "(`pushpool work-pool provision-infra POOL` stores the current ones)")
    if kind in ("ClusterCreationError", "UnsupportedBackendError") or "coiled setup" in lowered:
        return PermanentPusherError(f"{detail}: is the workspace connected to your cloud account? `coiled setup` "
                                    "does it")
    if kind in ("ApiResponseStatusError", "ClientConnectorError", "ServerDisconnectedError", "TimeoutError",
                "ClientOSError", "ConnectionError") or "503" in message or "502" in message:
        return TransientPusherError(detail)
    return PermanentPusherError(detail)


@dataclass(frozen=True)
class CoiledAccount:
    token: str
    workspace: str
    username: str
    workspaces: tuple[str, ...]


def auth_header(token: str) -> dict[str, str]:
    """The Authorization header the ``coiled`` client sends for ``token``."""
    return {"Authorization": f"ApiToken {token}" if "-" in token else f"Token {token}"}


def verify_token(token: str, workspace: str | None = None, server: str | None = None) -> CoiledAccount:
    """The user and workspace of ``token`` (Coiled's ``/user/me`` and memberships), without the client.

    A refused token or a workspace the user is no member of is a PermanentPusherError that says so; Coiled
    unreachable or failing is a TransientPusherError.
    """
    import httpx

    server = server or coiled_server()
    try:
        with httpx.Client(base_url=server, headers=auth_header(token), timeout=30) as client:
            me = client.get("/api/v2/user/me")
            if me.status_code in (401, 403):
                raise PermanentPusherError("Coiled refused the pool's API token (invalid, expired or revoked): "
                                           "store a current one with `pushpool work-pool provision-infra POOL` "
                                           "(it reads the token `coiled login` saved)")
            me.raise_for_status()
            memberships = client.get("/api/v2/user/me/memberships")
            memberships.raise_for_status()
    except httpx.HTTPStatusError as exc:
        raise TransientPusherError(f"Coiled answered {exc.response.status_code} checking the token "
                                   f"({exc.request.url.path})") from None
    except httpx.HTTPError as exc:
        raise TransientPusherError(f"cannot reach Coiled at {server} ({type(exc).__name__}: {exc})") from None
    user = me.json()
    slugs = tuple(m["account"]["slug"] for m in memberships.json() or [] if m.get("account", {}).get("slug"))
    default = next((m["account"]["slug"] for m in memberships.json() or [] if m.get("is_default_account")),
                   (user.get("default_account") or {}).get("slug") or (slugs[0] if slugs else ""))
    chosen = workspace or default
    if not chosen or chosen not in slugs:
        known = ", ".join(slugs) or "none"
        raise PermanentPusherError(f"the Coiled token's user {user.get('username')!r} is not a member of the "
                                   f"workspace {chosen!r} (its workspaces: {known}): set the pool's 'workspace' "
                                   "job variable or the credentials block's workspace")
    return CoiledAccount(token, chosen, str(user.get("username") or ""), slugs)


class CoiledPusher:
    def __init__(self, context: PusherContext) -> None:
        self.context = context
        self._clouds = ClientCache()

    @classmethod
    def default_job_template(cls) -> dict[str, Any]:
        return job_template(VARIABLES)

    # ------------------------------------------------------------------ clients
    def cloud(self, config: dict[str, Any]) -> tuple[Any, str]:
        """The ``coiled.Cloud`` of the token in ``config`` (one per token and workspace, kept) and its workspace."""
        credentials = config.get("coiled_credentials")
        if not isinstance(credentials, dict) or not credentials.get("token"):
            raise PermanentPusherError(NO_TOKEN)
        token = str(credentials["token"]).strip()
        wanted = config.get("workspace") or credentials.get("workspace") or None
        server = coiled_server()

        def make() -> tuple[Any, str]:
            account = verify_token(token, wanted, server)
            try:
                return _coiled().Cloud(token=token, server=server, workspace=account.workspace), account.workspace
            except Exception as exc:  # noqa: BLE001
                raise translate(exc, "client set-up") from exc

        return self._clouds.get([server, token, wanted], make)

    # ------------------------------------------------------------------ submit
    def submit(self, job: Job) -> Submission:
        config = job.configuration
        cloud, workspace = self.cloud(config)
        name = cluster_name(job.idempotency_key)
        try:
            existing = _cluster_named(cloud, workspace, name)
        except Exception as exc:  # noqa: BLE001
            raise translate(exc, f"cluster lookup ({name})") from exc
        if existing is not None:
            return _submission(workspace, existing)  # a submission that crashed after creating it: adopt
        options = batch_options(job)
        try:
            result = _coiled().batch.run(job.command or RUNNER_COMMAND, name=name, cloud=cloud, logger=_QUIET,
                                         **options)
        except Exception as exc:  # noqa: BLE001
            what = f"container {options['container']!r}" if options.get("container") else \
                f"software environment {options.get('software')!r}"
            raise translate(exc, f"batch.run ({what})") from exc
        return _submission(workspace, result["cluster_id"])

    # ------------------------------------------------------------------ watch, stop, read
    def status(self, infra_ids: list[str]) -> dict[str, InfraStatus]:
        cloud, _ = self.cloud(self.context.pool_config)
        out: dict[str, InfraStatus] = {}
        for infra_id in infra_ids:
            workspace, cluster_id = _parse(infra_id)
            code, jobs = _request(cloud, "GET", f"/api/v2/jobs/cluster/{cluster_id}")
            if code == 404 or (code < 400 and not jobs):
                out[infra_id] = InfraStatus(InfraState.MISSING, reason="the Coiled cluster and its job are gone")
                continue
            _raise_for(code, jobs, "job status")
            reason = ""
            if jobs[0].get("cluster_state") in ("error", "stopped"):
                code, details = _request(cloud, "GET", f"/api/v2/clusters/account/{workspace}/id/{cluster_id}")
                if code < 400:
                    reason = str((details.get("current_state") or {}).get("reason") or "")
            out[infra_id] = classify(jobs[0], reason)
        return out

    def cancel(self, infra_id: str) -> None:
        cloud, _ = self.cloud(self.context.pool_config)
        workspace, cluster_id = _parse(infra_id)
        code, answer = _request(cloud, "DELETE", f"/api/v2/clusters/account/{workspace}/id/{cluster_id}",
                                params={"reason": "cancelled in pushpool"})
        if code != 404:
            _raise_for(code, answer, "cluster stop")

    def cleanup(self, infra_id: str) -> None:
        """Coiled stops a batch job's cluster when its job ends; stop one that is still up (nothing left billed)."""
        cloud, _ = self.cloud(self.context.pool_config)
        workspace, cluster_id = _parse(infra_id)
        code, details = _request(cloud, "GET", f"/api/v2/clusters/account/{workspace}/id/{cluster_id}")
        if code < 400 and (details.get("current_state") or {}).get("state") in LIVE_STATES:
            self.cancel(infra_id)

    def logs(self, infra_id: str, tail: int | None = None, cursor: str | None = None) -> LogPage:
        """The job's output as Coiled keeps it (from the cluster's VM), from ``cursor`` (a timestamp, ms) on."""
        cloud, _ = self.cloud(self.context.pool_config)
        workspace, cluster_id = _parse(infra_id)
        try:
            events = cloud.better_cluster_logs(cluster_id=int(cluster_id), workspace=workspace,
                                               since_ms=int(cursor) + 1 if cursor else None)
        except Exception as exc:  # noqa: BLE001
            if "not found" in str(exc).lower():
                return LogPage(lines=[], cursor=cursor)
            raise translate(exc, "cluster logs") from exc
        lines = [str(event.get("message", "")) for event in events]
        last = str(events[-1]["timestamp"]) if events else cursor
        return LogPage(lines=lines[-tail:] if tail else lines, cursor=last)


def batch_options(job: Job) -> dict[str, Any]:
    """``coiled.batch.run``'s keyword arguments for the job's variables."""
    config = job.configuration
    software = config.get("software") or None
    options: dict[str, Any] = {
        "container": None if software else job_image(job),
        "software": software,
        # All of the run's environment is secret: sent to the VM, not kept by Coiled. In a software environment
        # pushpool made, the runner finds the project in the package it was installed as.
        "secret_env": {**job.env, **({"PUSHPOOL_PROJECT_PACKAGE": PROJECT_PACKAGE} if software else {})},
        "tag": {**{_tag(k, 128): _tag(v, 256) for k, v in sorted(job.labels.items())}, RUN_TAG: job.flow_run_id,
                COILED_RUN_TAG: job.flow_run_id},
        "job_timeout": f"{int(config.get('max_runtime_seconds') or 86400)}s",
        # Keep the client from drawing its widget and from stopping the cluster when the Cloud goes away.
        "cluster_kwargs": {"show_widget": False, "shutdown_on_close": False},
    }
    for name in ("cpu", "memory", "region", "spot_policy"):
        if config.get(name) not in (None, ""):
            options[name] = config[name]
    for name in ("gpu", "arm"):
        if config.get(name):
            options[name] = True
    if config.get("vm_type"):
        vm_type = config["vm_type"]
        options["vm_type"] = [vm_type] if isinstance(vm_type, str) else list(vm_type)
    return options


def _tag(text: str, limit: int) -> str:
    """A tag key or value the clouds take (Coiled puts the cluster's tags on the VM: AWS allows letters, digits,
    spaces and ``_ . : / = + - @``, 128 characters in a key and 256 in a value)."""
    return re.sub(r"[^\w .:/=+\-@]", "_", str(text), flags=re.ASCII)[:limit] or "_"


def _cluster_named(cloud: Any, workspace: str, name: str) -> int | None:
    from coiled.errors import DoesNotExist

    try:
        return int(cloud.get_cluster_by_name(name=name, workspace=workspace))
    except DoesNotExist:
        return None


def _submission(workspace: str, cluster_id: int | str) -> Submission:
    return Submission(infra_id=f"{workspace}/{cluster_id}", console_url=details_url(cluster_id))


def _parse(infra_id: str) -> tuple[str, str]:
    workspace, _, cluster_id = infra_id.rpartition("/")
    if not workspace or not cluster_id.isdigit():
        raise PermanentPusherError(f"not a coiled:push infrastructure id: {infra_id!r} (WORKSPACE/CLUSTER_ID)")
    return workspace, cluster_id


def _request(cloud: Any, method: str, path: str, params: dict[str, str] | None = None) -> tuple[int, Any]:
    """(status, JSON answer) of one call through the client's authenticated session."""

    async def call() -> tuple[int, Any]:
        response = await cloud._do_request(method, cloud.server + path, params=params)
        try:
            return response.status, await response.json(content_type=None)
        except ValueError:
            return response.status, {"detail": await response.text()}

    try:
        return cloud._sync(call)
    except Exception as exc:  # noqa: BLE001
        raise translate(exc, f"{method} {path}") from exc


def _raise_for(code: int, answer: Any, action: str) -> None:
    if code < 400:
        return
    detail = answer.get("message") or answer.get("detail") if isinstance(answer, dict) else answer
    message = f"Coiled {action} failed (HTTP {code}: {detail}; coiled client {_version()})"
    if code in (401, 403):
        raise PermanentPusherError(f"{message}: check the pool's Coiled token and workspace")
    if code == 429 or code >= 500:
        raise TransientPusherError(message)
    raise PermanentPusherError(message)


#: Words in a cluster's end reason → what happened, for a person to act on.
REASONS = (
    (("spot", "preempt", "reclaim", "interrupt"), "the spot VM was reclaimed by the cloud (spot_policy "
                                                  "'spot_with_fallback' or 'on-demand' avoids it)"),
    (("out of memory", "oom", "memory"), "killed, out of memory (raise the pool's 'memory' variable)"),
    (("pull", "image", "container"), "the image could not be pulled or started"),
    (("build", "software environment", "senv"), "the software environment failed to build"),
    (("capacity", "insufficient", "quota", "limit"), "the cloud had no capacity or quota for the VM type"),
)


def classify(job: dict[str, Any], reason: str = "") -> InfraStatus:
    """An InfraStatus, with a reason a person can act on, for a batch job as Coiled reports it."""
    task = (job.get("tasks") or [{}])[0]
    state, code, cluster_state = task.get("state") or job.get("state"), task.get("exit_code"), job.get("cluster_state")
    explained = next((text for words, text in REASONS if any(w in reason.lower() for w in words)), "")
    if state == "done" and code == 0:
        return InfraStatus(InfraState.EXITED, 0)
    if state == "done" and code is not None:
        why = explained or classify_exit_code(int(code))
        return InfraStatus(InfraState.EXITED, int(code), f"{why}: {reason}" if reason else why)
    if cluster_state in ("error", "stopped") or state in ("done", "error"):
        why = explained or ("the Coiled cluster failed" if cluster_state == "error" else
                            "the Coiled cluster stopped before the job ran")
        return InfraStatus(InfraState.EXITED, 1, f"{why}: {reason}" if reason else why)
    if state in ("assigned", "running"):
        return InfraStatus(InfraState.RUNNING)
    return InfraStatus(InfraState.PENDING)
