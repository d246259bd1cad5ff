"""The in-container runner: the command every pushed container runs.

It needs only ``PUSHPOOL_API_URL``, ``PUSHPOOL_FLOW_RUN_ID`` and
``PUSHPOOL_RUN_TOKEN``. It waits until the run's scheduled start (prefetch lets the
container start early so the flow itself starts on time), imports the deployment's
entrypoint (``path/to/file.py:func`` or ``package.module:func``), calls it with the
run's parameters, and reports RUNNING, then COMPLETED or FAILED. Exit code 0 on
success (or when the run was cancelled before it started), 1 when the flow failed,
2 when the runner itself could not work (bad environment, entrypoint not found).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import importlib.util
import inspect
import os
import socket
import sys
import time
import traceback
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pushpool.client import PushpoolClient
from pushpool.context import FlowRunContext
from pushpool.control_plane.errors import Conflict, PushpoolError
from pushpool.flows import Flow, typed_parameters
from pushpool.log_relay import LogRelay, RelayTarget, RelayUnavailable, log_shipper_for
from pushpool.reporting import LogShipper, TaskRunReporter
from pushpool.result_stores import persisted_result
from pushpool.run_control import FlowCancelled, FlowTimeout, call_hooks, interruptions
from pushpool.run_logging import RelayedLogs, shipping_logs

REQUIRED_ENV = ("PUSHPOOL_API_URL", "PUSHPOOL_FLOW_RUN_ID", "PUSHPOOL_RUN_TOKEN")
#: The control plane may be restarting when a flow finishes: keep trying to report for
#: about five minutes (backoff up to 8 s) rather than losing a finished run's result.
REPORT_RETRIES = 40
FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


class EntrypointError(PushpoolError):
    """The deployment's entrypoint cannot be loaded."""


def load_entrypoint(entrypoint: str, root: Path | None = None) -> Callable[..., Any]:
    root = (root or Path.cwd()).resolve()
    target, sep, attr = entrypoint.rpartition(":")
    if not sep or not target or not attr:
        raise EntrypointError(f"entrypoint {entrypoint!r} must look like 'path/to/file.py:func' or 'pkg.module:func'")
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    if target.endswith(".py") or "/" in target or os.sep in target:
        path = (root / target).resolve()
        if not path.is_file():
            raise EntrypointError(f"entrypoint file {target!r} not found under {root}")
        spec = importlib.util.spec_from_file_location(f"__pushpool_flow__{path.stem}", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
    else:
        try:
            module = importlib.import_module(target)
        except ModuleNotFoundError as exc:
            raise EntrypointError(f"entrypoint module {target!r} cannot be imported: {exc}") from exc
    try:
        return getattr(module, attr)
    except AttributeError:
        raise EntrypointError(f"entrypoint {entrypoint!r}: {target} has no attribute {attr!r}") from None


def project_root() -> Path | None:
    """Where the entrypoint's path is relative to: the installed package ``PUSHPOOL_PROJECT_PACKAGE`` names when
    there is one (a Coiled software environment pushpool made carries the project as ``pushpool_project``),
    else the working directory."""
    package = os.environ.get("PUSHPOOL_PROJECT_PACKAGE")
    if not package:
        return None
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        spec = None
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    return Path(locations[0]) if locations else None


def call_flow(fn: Callable[..., Any], parameters: dict[str, Any], context: FlowRunContext | None = None,
              on_retry: Callable[[str, str], None] | None = None) -> Any:
    """Call the flow with its parameters, retrying it (``@flow(retries=...)``); ``on_retry(name, message)`` is
    told of each failed attempt (``AwaitingRetry``) and each new one (``Retrying``), for the run's history."""
    flow = fn if isinstance(fn, Flow) else Flow(fn)
    attempts = 1 + flow.retries
    arguments = typed_parameters(flow.fn, parameters)  # a bad value fails the run at once, not per attempt
    for attempt in range(1, attempts + 1):
        try:
            with flow.run_context(context or FlowRunContext()):
                result = flow.fn(**arguments)
                if inspect.iscoroutine(result):
                    result = asyncio.run(result)
            return result
        except Exception as exc:
            if attempt == attempts:
                raise
            failed = f"Attempt {attempt} of {attempts} failed: {type(exc).__name__}: {exc}"[:2000]
            print(f"pushpool: {failed}; retrying in {flow.retry_delay_seconds}s", file=sys.stderr)
            traceback.print_exc()
            if on_retry is not None:
                on_retry("AwaitingRetry", f"{failed}; retrying in {flow.retry_delay_seconds}s")
            time.sleep(flow.retry_delay_seconds)
            if on_retry is not None:
                on_retry("Retrying", f"Attempt {attempt + 1} of {attempts}")
    raise AssertionError("unreachable")


def wait_until(when: datetime) -> None:
    while (delay := (when - datetime.now(UTC)).total_seconds()) > 0:
        time.sleep(min(delay, 5.0))


def run(client: PushpoolClient, run_id: str) -> int:
    relay = start_log_relay()  # its imports overlap the requests below
    try:
        return run_with(client, run_id, relay)
    finally:
        if relay is not None:
            relay.stop()


def start_log_relay() -> LogRelay | None:
    """The process that will ship the run's output, unless ``PUSHPOOL_RUN_LOGS=off`` in the run's environment;
    ``None`` too when it cannot start (the runner then captures in its own process)."""
    if not logs_wanted():
        return None
    try:
        return LogRelay.start()
    except RelayUnavailable as exc:
        print(f"pushpool: {exc}", file=sys.stderr)
        return None


def logs_wanted() -> bool:
    return os.environ.get("PUSHPOOL_RUN_LOGS", "on").lower() not in ("off", "false", "0")


def run_with(client: PushpoolClient, run_id: str, relay: LogRelay | None) -> int:
    me = client.me()
    client.workspace = me["workspace_id"]
    flow_run = client.read_flow_run(run_id)
    if flow_run["state"]["type"] in FINAL | {"CANCELLING"}:
        print(f"pushpool: flow run {run_id} is {flow_run['state']['type']}; nothing to do")
        return 0
    deployment = client.read_deployment(flow_run["deployment_id"])
    wait_until(datetime.fromisoformat(flow_run["scheduled_time"]))
    # The message names this runner, so a report whose answer was lost (the control plane went
    # down after recording it) is recognised as ours when the retry is refused.
    started = f"Started by runner {uuid.uuid4().hex[:12]} (pid {os.getpid()} on {socket.gethostname()})"
    if not report(client, run_id, "RUNNING", started):
        print(f"pushpool: not starting flow run {run_id}: it is {client.read_flow_run(run_id)['state']['type']}")
        return 0
    reporter, logs = shippers(client, run_id, relay)
    failure = result = failure_name = None
    stopped = False
    flow: Flow | None = None
    with shipping_logs(logs) if logs else contextlib.nullcontext():  # ends after the last line is sent
        try:
            fn = load_entrypoint(deployment["entrypoint"], project_root())
            flow = fn if isinstance(fn, Flow) else None
            with interruptions(flow.timeout_seconds if flow else None):
                value = call_flow(fn, flow_run["parameters"],
                                  FlowRunContext(flow_run_id=run_id, recorder=reporter, client=client,
                                                 log_prints=log_prints_by_default(),
                                                 scheduled_time=datetime.fromisoformat(flow_run["scheduled_time"])),
                                  on_retry=lambda name, message: report_retry(client, run_id, name, message))
            if flow is not None and flow.persist_result:
                result = persisted_result(value, location=flow.result_storage, key=f"flow-run-{run_id}")
        except FlowTimeout as exc:
            failure, failure_name = str(exc), "TimedOut"
            print(f"pushpool: {exc}", file=sys.stderr)
        except FlowCancelled as exc:
            stopped = True
            print(f"pushpool: {exc}", file=sys.stderr)
        except Exception as exc:
            traceback.print_exc()
            failure = f"{type(exc).__name__}: {exc}"[:5000]
        if flow is not None:
            outcome = ("CANCELLED", flow.on_cancellation) if stopped else (
                ("FAILED", flow.on_failure) if failure is not None else ("COMPLETED", flow.on_completion))
            call_hooks(outcome[1], flow, flow_run, {"type": outcome[0], "name": failure_name, "message": failure})
    reporter.close()
    if isinstance(logs, LogShipper):  # shipped from this process (the relay has finished by now)
        logs.close()
    if failure is not None:
        report(client, run_id, "FAILED", failure, name=failure_name)
    else:
        if not stopped:  # a stopped run is recorded by the control plane once its infrastructure is gone
            report(client, run_id, "COMPLETED", None, result)
    if stopped or failure_name:  # the interrupted flow's task threads may still run: leave without them
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(143 if stopped else 1)
    return 0 if failure is None else 1


def log_prints_by_default() -> bool:
    """``PUSHPOOL_LOG_PRINTS=true`` in the run's environment (a pool's or deployment's ``env``): every flow's
    ``print()`` calls become log records, as with ``@flow(log_prints=True)``."""
    return os.environ.get("PUSHPOOL_LOG_PRINTS", "").strip().lower() in {"1", "true", "yes", "on"}


def shippers(client: PushpoolClient, run_id: str,
             relay: LogRelay | None) -> tuple[TaskRunReporter, RelayedLogs | LogShipper | None]:
    """Task runs and log lines go to the control plane in batches, each on a client of its own that gives up
    sooner than the state reports' (the shipper keeps what it could not send and tries again): task runs from
    this process, log lines from the relay (or from here when it could not start). Logs are not sent with
    ``PUSHPOOL_RUN_LOGS=off`` in the run's environment."""
    tasks = PushpoolClient(client.api_url, client.api_key, workspace=client.workspace, retries=2)
    tasks_path = tasks.ws(f"/flow_runs/{run_id}/task_runs")
    reporter = TaskRunReporter(lambda batch: tasks.request("POST", tasks_path, json={"task_runs": batch}),
                               on_close=tasks.close)
    if not logs_wanted():
        return reporter, None
    target = RelayTarget(client.api_url, client.api_key, client.workspace or "", run_id)
    return reporter, RelayedLogs(relay, target) if relay is not None else log_shipper_for(target)


def report_retry(client: PushpoolClient, run_id: str, name: str, message: str) -> None:
    """A flow retry in the run's history (a RUNNING state of that name: the run keeps its infrastructure);
    a report that fails is only printed, the retry goes on."""
    try:
        client.set_flow_run_state(run_id, "RUNNING", message=message, name=name)
    except PushpoolError as exc:
        print(f"pushpool: could not record the retry ({exc})", file=sys.stderr)


def report(client: PushpoolClient, run_id: str, state: str, message: str | None, result: Any = None,
           name: str | None = None) -> bool:
    """Report a state; ``True`` once it is recorded, also when an earlier attempt was (its answer lost).

    ``False`` when the run is elsewhere (cancelled, or started by someone else); a final report
    refused because the run ended otherwise (e.g. cancelled meanwhile) raises the Conflict.
    """
    try:
        client.set_flow_run_state(run_id, state, message=message, name=name, result=result)
        return True
    except Conflict:
        current = client.read_flow_run(run_id)["state"]
        if current["type"] == state and (message is None or current.get("message") == message):
            return True
        if state == "RUNNING":
            return False
        raise


def main() -> int:
    missing = [name for name in REQUIRED_ENV if not os.environ.get(name)]
    if missing:
        print(f"pushpool-runner: missing environment variable(s) {', '.join(missing)}; "
              "the runner is started by a pushpool pusher, which sets them", file=sys.stderr)
        return 2
    run_id = os.environ["PUSHPOOL_FLOW_RUN_ID"]
    try:
        with PushpoolClient(os.environ["PUSHPOOL_API_URL"], os.environ["PUSHPOOL_RUN_TOKEN"],
                            retries=int(os.environ.get("PUSHPOOL_RUNNER_RETRIES", REPORT_RETRIES))) as client:
            return run(client, run_id)
    except PushpoolError as exc:
        print(f"pushpool-runner: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
