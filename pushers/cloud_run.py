"""``cloud-run:push``: each flow run is one Cloud Run job, run once, deleted after the run ends.

* ``google-cloud-run`` (v2 ``JobsClient``/``ExecutionsClient``, REST transport) is imported lazily.
  Credentials: the pool's gcp-credentials block (a service account key), else application
  default credentials (the control plane running on Google Cloud). One pair of clients per
  credentials, kept.
* The job id is ``pushpool-<run id>``: a repeated create answers AlreadyExists and counts as done.
  Before running the job the pusher lists its executions, so a run whose answer was lost (a 503
  after Cloud Run started it, a crash before recording it) is adopted, never started twice.
* ``submit`` never waits long: a job whose creation is still going on after ``CREATE_WAIT_SECONDS`` is run
  by the next attempt (its create then answers AlreadyExists).
* ``status`` reads the execution: it has ended when it has a ``completionTime`` or a ``Completed``
  condition that succeeded or failed, whatever its task counts say; ``cancel`` cancels it; ``cleanup``
  deletes the job (Cloud Run allows 1,000 jobs per region) unless ``keep_job``, and checks the deletion
  finished: a delete that failed or is still going is tried again by the next reconcile pass.
* ``logs`` reads the execution's lines through the Cloud Logging API (``google-cloud-logging``, JSON API).
* ``PUSHPOOL_GCP_ENDPOINT`` points every Google API client at another endpoint (an emulator, the tests' fake).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

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
    ThrottledPusherError,
    TransientPusherError,
    classify_exit_code,
    job_image,
)
from pushpool.pushers.cloud_run_template import VARIABLES
from pushpool.pushers.templates import job_template

RUNNER_COMMAND = ["pushpool-runner"]
SCOPES = ["https://www.googleapis.com/auth/cloud-platform"]
#: How long a submission waits for a new job to be created (the rest is the next attempt's), and a cleanup
#: for the job's deletion: a tick has other runs to serve.
CREATE_WAIT_SECONDS = 10
DELETE_WAIT_SECONDS = 10
CONDITION_FAILED, CONDITION_SUCCEEDED = 3, 4  # run_v2.Condition.State
TRANSIENT_CODES = {408, 429, 500, 502, 503, 504}
ENDPOINT_ENV = "PUSHPOOL_GCP_ENDPOINT"
LOG_PAGE_LINES = 1000


def _log_text(payload: Any) -> str:
    if isinstance(payload, dict):
        return str(payload.get("message") or json.dumps(payload, sort_keys=True))
    return str(payload if payload is not None else "")


def job_id(run_id: str) -> str:
    return f"pushpool-{run_id.lower()}"


def label(text: str, limit: int = 63) -> str:
    """A Cloud Run label key or value: lowercase letters, digits, ``_`` and ``-``."""
    return re.sub(r"[^a-z0-9_-]", "-", text.lower())[:limit]


def parse_execution_name(name: str) -> tuple[str, str, str, str]:
    """(project, region, job, execution) of ``projects/P/locations/R/jobs/J/executions/E``."""
    parts = name.split("/")
    if len(parts) != 8 or parts[0] != "projects" or parts[2] != "locations" or parts[4] != "jobs":
        raise PermanentPusherError(f"not a Cloud Run execution name: {name!r}")
    return parts[1], parts[3], parts[5], parts[7]


def console_url(execution_name: str) -> str:
    project, region, _, execution = parse_execution_name(execution_name)
    return (f"https://console.cloud.google.com/run/jobs/executions/details/{region}/{execution}/tasks"
            f"?project={project}")


def logs_url(execution_name: str) -> str:
    project, _, _, execution = parse_execution_name(execution_name)
    query = f'resource.type="cloud_run_job"\nlabels."run.googleapis.com/execution_name"="{execution}"'
    return f"https://console.cloud.google.com/logs/query;query={quote(query, safe='')}?project={project}"


def translate(exc: BaseException, action: str) -> PusherError:
    """A pusher error for a failed Google API call, by its HTTP status code."""
    if isinstance(exc, PusherError):
        return exc
    code = getattr(exc, "code", None)
    message = " ".join(str(getattr(exc, "message", None) or exc).split())
    text = f"run.googleapis.com {action} failed ({code or type(exc).__name__}: {message})"
    if code == 429:
        return ThrottledPusherError(text)
    if isinstance(code, int) and code in TRANSIENT_CODES or type(exc).__name__ in ("TimeoutError", "RetryError"):
        return TransientPusherError(text)
    if "amd64" in message:
        return PermanentPusherError(f"{text}: Cloud Run runs linux/amd64 images only; build the image with "
                                    "platform='linux/amd64' (DockerImage does by default)")
    if code in (401, 403):
        return PermanentPusherError(f"{text}: the pool's service account needs roles/run.developer and "
                                    "roles/iam.serviceAccountUser on the project (provision-infra grants them)")
    if code == 404:
        return PermanentPusherError(f"{text}: check the pool's project and region, and that the Cloud Run API "
                                    "is enabled")
    return PermanentPusherError(text)


@dataclass(frozen=True)
class GcpClients:
    jobs: Any
    executions: Any
    tasks: Any
    #: The credentials' own project (the pool's 'project' variable wins).
    project: str | None
    credentials: Any = None
    endpoint: str | None = None


class CloudRunPusher:
    def __init__(self, context: PusherContext) -> None:
        self.context = context
        self._clients = ClientCache()

    @classmethod
    def default_job_template(cls) -> dict[str, Any]:
        return job_template(VARIABLES)

    # ------------------------------------------------------------------ clients
    def clients(self, config: dict[str, Any]) -> GcpClients:
        """The Cloud Run clients for the credentials in ``config``."""
        block = config.get("credentials")
        if block is not None and not isinstance(block, dict):
            raise PermanentPusherError("credentials must reference a gcp-credentials block, "
                                       "e.g. \"{{ pushpool.blocks.my-gcp }}\"")
        endpoint = os.environ.get(ENDPOINT_ENV)
        return self._clients.get(["run", block, endpoint], lambda: self.make_clients(block or {}, endpoint))

    @staticmethod
    def make_clients(block: dict[str, Any], endpoint: str | None) -> GcpClients:
        """Cloud Run clients for a gcp-credentials block's data (a service account key), else application default
        credentials; ``endpoint`` replaces Google's (an emulator, the tests' fake)."""
        try:
            import google.auth
            from google.api_core.client_options import ClientOptions
            from google.cloud import run_v2
            from google.oauth2 import service_account
        except ModuleNotFoundError as exc:  # pragma: no cover - the extra is missing
            raise PermanentPusherError("cloud-run:push needs the 'gcp' extra: pip install 'pushpool[gcp]'") from exc
        info = block.get("service_account_info")
        try:
            if info:
                info = json.loads(info) if isinstance(info, str) else dict(info)
                credentials = service_account.Credentials.from_service_account_info(info, scopes=SCOPES)
                project = block.get("project") or info.get("project_id")
            else:
                credentials, project = google.auth.default(scopes=SCOPES)
                project = block.get("project") or project
        except (ValueError, KeyError) as exc:
            raise PermanentPusherError(f"the pool's gcp-credentials block holds no usable service account key "
                                       f"({exc}); paste the key's JSON into service_account_info") from None
        except Exception as exc:  # noqa: BLE001 - google.auth.exceptions.DefaultCredentialsError
            raise PermanentPusherError(f"no Google Cloud credentials: set the pool's 'credentials' variable to a "
                                       f"gcp-credentials block ({exc})") from None
        options = ClientOptions(api_endpoint=endpoint) if endpoint else None
        def make(kind: Any) -> Any:
            return kind(credentials=credentials, transport="rest", client_options=options)

        return GcpClients(make(run_v2.JobsClient), make(run_v2.ExecutionsClient), make(run_v2.TasksClient), project,
                          credentials, endpoint)

    # ------------------------------------------------------------------ submit
    def submit(self, job: Job) -> Submission:
        config = job.configuration
        image = job_image(job)
        clients = self.clients(config)
        project = config.get("project") or clients.project
        if not project:
            raise PermanentPusherError("no Google Cloud project: set the pool's 'project' variable")
        parent = f"projects/{project}/locations/{config.get('region') or 'us-central1'}"
        name = f"{parent}/jobs/{job_id(job.idempotency_key)}"
        from google.api_core import exceptions

        try:
            operation = clients.jobs.create_job(parent=parent, job=self._job(job, image),
                                                job_id=job_id(job.idempotency_key))
            operation.result(timeout=CREATE_WAIT_SECONDS)
        except exceptions.Conflict:  # 409 ALREADY_EXISTS (AlreadyExists is its subclass over gRPC)
            pass  # created by an earlier attempt: the same job, by its id
        except TimeoutError as exc:  # concurrent.futures' (the operation is still going)
            raise TransientPusherError(f"the Cloud Run job {job_id(job.idempotency_key)} is still being created; "
                                       "it is run on the next attempt") from exc
        except Exception as exc:  # noqa: BLE001
            raise translate(exc, f"CreateJob (image {image!r})") from exc
        try:
            existing = self._latest_execution(clients.executions, name)
            if existing:  # the job already ran (an answer lost or never recorded): never a second execution
                return self._submission(existing)
            execution_name = clients.jobs.run_job(name=name).metadata.name
        except Exception as exc:  # noqa: BLE001
            raise translate(exc, "RunJob") from exc
        return self._submission(execution_name)

    @staticmethod
    def _latest_execution(executions: Any, job_name: str) -> str | None:
        for execution in executions.list_executions(parent=job_name):
            return execution.name
        return None

    @staticmethod
    def _job(job: Job, image: str) -> Any:
        from google.cloud import run_v2

        config = job.configuration
        env = [run_v2.EnvVar(name=k, value=v) for k, v in sorted(job.env.items())]
        for name, ref in sorted((config.get("env_from_secrets") or {}).items()):
            selector = run_v2.SecretKeySelector(secret=ref["secret"], version=str(ref.get("version") or "latest"))
            env.append(run_v2.EnvVar(name=name, value_source=run_v2.EnvVarSource(secret_key_ref=selector)))
        container = run_v2.Container(
            image=image, command=job.command or RUNNER_COMMAND, env=env,
            resources=run_v2.ResourceRequirements(limits={"cpu": str(config.get("cpu") or "1"),
                                                          "memory": str(config.get("memory") or "512Mi")}))
        task = run_v2.TaskTemplate(containers=[container], max_retries=int(config.get("max_retries") or 0),
                                   timeout={"seconds": int(config.get("timeout") or 3600)})
        if config.get("service_account_name"):
            task.service_account = config["service_account_name"]
        if config.get("vpc_connector"):
            task.vpc_access = run_v2.VpcAccess(connector=config["vpc_connector"])
        labels = {label(k): label(v) for k, v in sorted(job.labels.items())}
        return run_v2.Job(template=run_v2.ExecutionTemplate(task_count=1, template=task), labels=labels)

    @staticmethod
    def _submission(execution_name: str) -> Submission:
        return Submission(infra_id=execution_name, console_url=console_url(execution_name),
                          logs_url=logs_url(execution_name))

    # ------------------------------------------------------------------ watch, stop, clean up
    def status(self, infra_ids: list[str]) -> dict[str, InfraStatus]:
        from google.api_core import exceptions

        clients = self.clients(self.context.pool_config)
        out: dict[str, InfraStatus] = {}
        for name in infra_ids:
            parse_execution_name(name)
            try:
                execution = clients.executions.get_execution(name=name)
                task = next(iter(clients.tasks.list_tasks(parent=name)), None) if ended_badly(execution) else None
                out[name] = classify(execution, task)
            except exceptions.NotFound:
                out[name] = InfraStatus(InfraState.MISSING, reason="the Cloud Run execution no longer exists")
            except Exception as exc:  # noqa: BLE001
                raise translate(exc, "GetExecution") from exc
        return out

    def cancel(self, infra_id: str) -> None:
        from google.api_core import exceptions

        parse_execution_name(infra_id)
        clients = self.clients(self.context.pool_config)
        try:
            clients.executions.cancel_execution(name=infra_id)
        except (exceptions.NotFound, exceptions.FailedPrecondition):
            return  # gone, or already finished
        except Exception as exc:  # noqa: BLE001
            raise translate(exc, "CancelExecution") from exc

    def logs(self, infra_id: str, tail: int | None = None, cursor: str | None = None) -> LogPage:
        """The execution's log lines (Cloud Logging); ``cursor`` is the last line's timestamp."""
        project, _, job, execution = parse_execution_name(infra_id)
        query = (f'resource.type="cloud_run_job" AND resource.labels.job_name="{job}" AND '
                 f'labels."run.googleapis.com/execution_name"="{execution}"')
        if cursor:
            query += f' AND timestamp>"{cursor}"'
        newest_first = bool(tail) and not cursor
        try:
            entries = list(self._logging(project).list_entries(
                resource_names=[f"projects/{project}"], filter_=query, max_results=tail or LOG_PAGE_LINES,
                order_by="timestamp desc" if newest_first else "timestamp asc"))
        except Exception as exc:  # noqa: BLE001
            raise translate(exc, "logging entries.list") from exc
        if newest_first:
            entries.reverse()
        lines = [_log_text(e.payload) for e in entries]
        last = entries[-1].timestamp if entries else None
        return LogPage(lines=lines, cursor=last.isoformat().replace("+00:00", "Z") if last else cursor)

    def _logging(self, project: str) -> Any:
        clients = self.clients(self.context.pool_config)

        def make() -> Any:
            from google.cloud import logging as cloud_logging

            options = {"api_endpoint": clients.endpoint} if clients.endpoint else None
            return cloud_logging.Client(project=project, credentials=clients.credentials, _use_grpc=False,
                                        client_options=options)

        return self._clients.get(["logging", project, id(clients)], make)

    def cleanup(self, infra_id: str) -> None:
        from google.api_core import exceptions

        if self.context.pool_config.get("keep_job"):
            return
        job_name = infra_id.rsplit("/executions/", 1)[0]
        try:
            self.clients(self.context.pool_config).jobs.delete_job(name=job_name).result(timeout=DELETE_WAIT_SECONDS)
        except exceptions.NotFound:
            return
        except TimeoutError as exc:
            raise TransientPusherError(f"DeleteJob of {job_name} is still going; checked again next pass") from exc
        except Exception as exc:  # noqa: BLE001 - a failed deletion: the job stays, so the next pass tries again
            raise translate(exc, "DeleteJob") from exc


def _completed(execution: Any) -> tuple[int, str]:
    """The state and message of the execution's ``Completed`` condition (0 and "" without one)."""
    completed = next((c for c in execution.conditions if c.type_ == "Completed"), None)
    return (int(completed.state), completed.message or "") if completed is not None else (0, "")


def ended_badly(execution: Any) -> bool:
    return bool(execution.failed_count) or _completed(execution)[0] == CONDITION_FAILED


def classify(execution: Any, task: Any = None) -> InfraStatus:
    """An InfraStatus, with a reason a person can act on, for a Cloud Run execution (and its failed task). It has
    ended when a count, its ``Completed`` condition or its ``completionTime`` says so."""
    state, message = _completed(execution)
    if execution.succeeded_count or (state == CONDITION_SUCCEEDED and not execution.failed_count):
        return InfraStatus(InfraState.EXITED, 0)
    if execution.cancelled_count:
        return InfraStatus(InfraState.EXITED, 143, "the Cloud Run execution was cancelled"
                                                   + (f": {message}" if message else ""))
    if ended_badly(execution):
        attempt = task.last_attempt_result if task is not None else None
        code = attempt.exit_code if attempt is not None and attempt.exit_code else 1
        detail = (attempt.status.message if attempt is not None and attempt.status.message else "") or message
        reason = classify_exit_code(code)
        return InfraStatus(InfraState.EXITED, code, f"{reason}: {detail}" if detail else reason)
    if execution.completion_time:  # ended, though neither a count nor the condition says how
        return InfraStatus(InfraState.EXITED, 1, f"the Cloud Run execution ended: {message or 'no reason given'}")
    return InfraStatus(InfraState.RUNNING if execution.running_count else InfraState.PENDING)
