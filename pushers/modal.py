"""``modal:push``: each flow run is one Modal Sandbox in an app of the pool.

* The ``modal`` client is imported lazily and gets the token of the pool's modal-credentials block
  through ``Client.from_credentials``, one client per token: the control plane serves many
  workspaces at once, so nothing process-wide (``MODAL_TOKEN_ID``, ``~/.modal.toml``) is used.
* The sandbox is named ``pushpool-<run id>`` (unique among an app's running sandboxes) and tagged
  ``pushpool.flow-run-id``; a resubmission looks for the run's sandbox by tag first, and a create that
  finds the name taken adopts that sandbox, so a run never gets a second one.
* Image: ``Image.from_registry(<image>)``, with ``registry_secret`` (a Modal secret) for private
  registries. The run's environment, with its run token, goes in as a secret of the sandbox.
* Modal's client API is internal and changes: the tested range is pinned (``MODAL_TESTED``) and every
  error names the installed client version.
"""

from __future__ import annotations

from typing import Any

from pushpool.pushers.base import (
    ClientCache,
    InfraState,
    InfraStatus,
    Job,
    PermanentPusherError,
    PusherContext,
    PusherError,
    Submission,
    TransientPusherError,
    classify_exit_code,
    job_image,
)
from pushpool.pushers.modal_template import VARIABLES
from pushpool.pushers.templates import job_template

RUNNER_COMMAND = ["pushpool-runner"]
#: The ``modal`` releases this pusher is tested with (pyproject pins the same range).
MODAL_TESTED = ">=1.6,<1.7"
RUN_TAG = "pushpool.flow-run-id"
#: Names a crash retry's sandbox apart from the crashed one's (see ``Job.idempotency_key``).
SUBMISSION_TAG = "pushpool.submission"
TRANSIENT = ("ResourceExhaustedError", "ConnectionError", "InternalError", "ServiceError", "TimeoutError",
             "ClientClosed")


def sandbox_name(run_id: str) -> str:
    return f"pushpool-{run_id}"


def dashboard_url(object_id: str) -> str:
    """Modal's dashboard resolves any object id (app, sandbox) to its page, logs included."""
    return f"https://modal.com/id/{object_id}"


def _modal() -> Any:
    try:
        import modal
    except ModuleNotFoundError as exc:  # pragma: no cover - the extra is missing
        raise PermanentPusherError("modal:push needs the 'modal' extra: pip install 'pushpool[modal]'") from exc
    return modal


def translate(exc: BaseException, action: str) -> PusherError:
    """A pusher error for a failed Modal call, by the client's exception type, naming the client version."""
    if isinstance(exc, PusherError):
        return exc
    version = getattr(_modal(), "__version__", "?")
    kind = type(exc).__name__
    message = " ".join(str(exc).split())  # one line, for the run's state message and the CLI
    detail = (f"Modal {action} failed ({kind}: {message}; modal client {version}, "
              f"pushpool is tested with {MODAL_TESTED})")
    if kind in ("AuthError", "PermissionDeniedError"):
        return PermanentPusherError(f"{detail}: the pool's Modal token was refused; store a valid one with "
                                    "`pushpool work-pool provision-infra POOL` (it reads `modal token new`'s token)")
    if kind in TRANSIENT or kind == "GRPCError":
        return TransientPusherError(detail)
    if kind == "NotFoundError":
        return PermanentPusherError(f"{detail}: check the pool's app, environment and secret names")
    return PermanentPusherError(detail)


class ModalPusher:
    def __init__(self, context: PusherContext) -> None:
        self.context = context
        self._clients = ClientCache()

    @classmethod
    def default_job_template(cls) -> dict[str, Any]:
        return job_template(VARIABLES)

    # ------------------------------------------------------------------ clients
    def client(self, config: dict[str, Any]) -> Any:
        """The Modal client of the token in ``config`` (one per token, kept)."""
        credentials = config.get("modal_credentials")
        if not isinstance(credentials, dict) or not credentials.get("token_id") or not credentials.get("token_secret"):
            raise PermanentPusherError("no Modal token: set the pool's 'modal_credentials' job variable to a "
                                       "modal-credentials block, e.g. \"{{ pushpool.blocks.NAME }}\" "
                                       "(`pushpool work-pool provision-infra POOL` creates one)")
        token_id, token_secret = str(credentials["token_id"]), str(credentials["token_secret"])

        def make() -> Any:
            try:
                return _modal().Client.from_credentials(token_id, token_secret)
            except Exception as exc:  # noqa: BLE001
                raise translate(exc, "client set-up") from exc

        return self._clients.get([token_id, token_secret], make)

    def _app(self, modal: Any, config: dict[str, Any], client: Any) -> Any:
        return modal.App.lookup(config.get("app_name") or "pushpool", create_if_missing=True, client=client,
                                environment_name=config.get("environment") or None)

    # ------------------------------------------------------------------ submit
    def submit(self, job: Job) -> Submission:
        config = job.configuration
        image = job_image(job)
        modal, client = _modal(), self.client(config)
        try:
            app = self._app(modal, config, client)
            if job.attempt > 1:
                existing = self._sandbox_of_run(modal, app, client, job)
                if existing is not None:
                    return self._submission(existing)
            sandbox = self._create(modal, app, client, job, image)
        except Exception as exc:  # noqa: BLE001
            raise translate(exc, f"Sandbox.create (image {image!r})") from exc
        return self._submission(sandbox.object_id)

    def _create(self, modal: Any, app: Any, client: Any, job: Job, image: str) -> Any:
        config = job.configuration
        registry_secret = config.get("registry_secret")
        secret = (modal.Secret.from_name(registry_secret, environment_name=config.get("environment") or None)
                  if registry_secret else None)
        options: dict[str, Any] = {
            "app": app, "name": sandbox_name(job.idempotency_key), "client": client,
            "image": modal.Image.from_registry(image, secret=secret),
            "secrets": [modal.Secret.from_dict(dict(job.env))],
            "tags": {k[:63]: v[:255] for k, v in sorted({**job.labels, SUBMISSION_TAG: job.idempotency_key}.items())},
            "timeout": int(config.get("timeout") or 3600),
        }
        for name in ("cpu", "memory", "gpu", "region", "cloud"):
            if config.get(name) not in (None, "", []):
                options[name] = config[name]
        try:
            return modal.Sandbox.create(*(job.command or RUNNER_COMMAND), **options)
        except modal.exception.AlreadyExistsError:
            # A sandbox of this run is already running (a submission that crashed after creating it): adopt it.
            return modal.Sandbox.from_name(config.get("app_name") or "pushpool", sandbox_name(job.idempotency_key),
                                           environment_name=config.get("environment") or None,
                                           include_terminated=True, client=client)

    @staticmethod
    def _sandbox_of_run(modal: Any, app: Any, client: Any, job: Job) -> str | None:
        # The first submission is found by its run (also sandboxes made before the submission tag existed).
        tags = {RUN_TAG: job.flow_run_id} if job.crash_attempt == 0 else {SUBMISSION_TAG: job.idempotency_key}
        for sandbox in modal.Sandbox.list(app_id=app.app_id, tags=tags, client=client):
            return sandbox.object_id
        return None

    @staticmethod
    def _submission(sandbox_id: str) -> Submission:
        return Submission(infra_id=sandbox_id, console_url=dashboard_url(sandbox_id))

    # ------------------------------------------------------------------ watch, stop
    def status(self, infra_ids: list[str]) -> dict[str, InfraStatus]:
        modal, client = _modal(), self.client(self.context.pool_config)
        out: dict[str, InfraStatus] = {}
        for sandbox_id in infra_ids:
            try:
                sandbox = modal.Sandbox.from_id(sandbox_id, client=client)
            except modal.exception.NotFoundError:
                out[sandbox_id] = InfraStatus(InfraState.MISSING, reason="the Modal sandbox no longer exists")
                continue
            except Exception as exc:  # noqa: BLE001
                raise translate(exc, "Sandbox.from_id") from exc
            out[sandbox_id] = classify(_result_of(sandbox), sandbox.returncode)
        return out

    def cancel(self, infra_id: str) -> None:
        modal, client = _modal(), self.client(self.context.pool_config)
        try:
            modal.Sandbox.from_id(infra_id, client=client).terminate()
        except modal.exception.NotFoundError:
            return  # already gone
        except Exception as exc:  # noqa: BLE001
            raise translate(exc, "Sandbox.terminate") from exc

    def cleanup(self, infra_id: str) -> None:
        """Nothing per run: Modal removes finished sandboxes itself."""


def _result_of(sandbox: Any) -> Any:
    """The sandbox's result message (status, exit code, Modal's exception text), or None.

    The public handle only offers ``returncode``; the termination reason sits on the object behind
    the client's synchronous wrapper. Should a client release move it, the return code alone is
    classified (the tests of the pinned range catch that).
    """
    try:
        from modal._utils.async_utils import synchronizer

        return synchronizer._translate_in(sandbox)._impl.result
    except Exception:  # noqa: BLE001
        return None


def classify(result: Any, returncode: int | None) -> InfraStatus:
    """An InfraStatus, with a reason a person can act on, for a sandbox's result (None: still running)."""
    from modal_proto import api_pb2

    Result = api_pb2.GenericResult
    status = getattr(result, "status", Result.GENERIC_STATUS_UNSPECIFIED)
    if status == Result.GENERIC_STATUS_UNSPECIFIED and returncode is None:
        return InfraStatus(InfraState.RUNNING)
    message = (getattr(result, "exception", "") or "").strip()
    code = returncode if returncode is not None else getattr(result, "exitcode", 1)
    if code == 0 and status in (Result.GENERIC_STATUS_SUCCESS, Result.GENERIC_STATUS_UNSPECIFIED):
        return InfraStatus(InfraState.EXITED, 0)
    reasons = {
        Result.GENERIC_STATUS_TERMINATED: "the sandbox was terminated (cancelled, or stopped in Modal)",
        Result.GENERIC_STATUS_TIMEOUT: "Modal ended the sandbox at its timeout (the pool's 'timeout' variable)",
        Result.GENERIC_STATUS_IDLE_TIMEOUT: "Modal ended the sandbox as idle",
        Result.GENERIC_STATUS_INIT_FAILURE: "the sandbox failed to start (image pull or set-up)",
        Result.GENERIC_STATUS_INTERNAL_FAILURE: "Modal reported an internal failure",
        Result.GENERIC_STATUS_KERNEL_OOM_KILL: "killed, out of memory (raise the pool's 'memory' variable)",
        Result.GENERIC_STATUS_MEMORY_MANAGER_EVICTION: "evicted, out of memory (raise the pool's 'memory' variable)",
        Result.GENERIC_STATUS_MEMORY_THRASHING_EVICTION: "evicted, out of memory (raise the pool's 'memory' variable)",
    }
    if status == Result.GENERIC_STATUS_UNSPECIFIED:  # no result message: the return code's own meaning
        status = {124: Result.GENERIC_STATUS_TIMEOUT, 137: Result.GENERIC_STATUS_TERMINATED}.get(code, status)
    reason = reasons.get(status) or classify_exit_code(code or 1)
    if message:
        reason = f"{reason}: {message}"
    return InfraStatus(InfraState.EXITED, code if code else 1, reason)
