"""The two systems under test, each a server process on 127.0.0.1 in a temporary home, and one small
API adapter per system so every workload runs the same steps against both.

* pushpool: ``pushpool server start`` (SQLite, WAL, synchronous=NORMAL) from this checkout.
* Prefect: ``prefect server start`` from its own virtual environment (``.bench/prefect-venv``,
  prefect 3.8 with ``fastapi<0.151`` and ``sqlalchemy<2.1``, see ../shared/testing-notes.md), default SQLite database
  (WAL, synchronous=NORMAL, as Prefect sets it), measured with its services on (as users run it)
  and with ``--no-services``.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import psutil

REPO = Path(__file__).resolve().parents[2]
BENCH_DIR = REPO / ".bench"
PREFECT_VENV = BENCH_DIR / "prefect-venv"
#: fastapi<0.151: newer ones break ``prefect server start``; sqlalchemy<2.1: with 2.1 Prefect's scheduler
#: service fails every insert ("Can't evaluate bulk DML statement") and never creates a run.
PREFECT_REQUIREMENTS = ["prefect>=3.8,<3.9", "fastapi<0.151", "sqlalchemy[asyncio]<2.1"]


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ensure_prefect() -> Path:
    """Prefect in its own venv (created once; ~1 minute)."""
    prefect = PREFECT_VENV / "bin" / "prefect"
    if not prefect.exists():
        print("Installing Prefect into .bench/prefect-venv ...", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(PREFECT_VENV)], check=True)
        subprocess.run([str(PREFECT_VENV / "bin" / "pip"), "install", "--quiet", *PREFECT_REQUIREMENTS], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return prefect


def prefect_version() -> str:
    out = subprocess.run([str(PREFECT_VENV / "bin" / "python"), "-c", "import prefect; print(prefect.__version__)"],
                         capture_output=True, text=True, check=True)
    return out.stdout.strip()


class PeakRss:
    """Samples the resident memory of a process and its children every 50 ms; ``peak`` in bytes."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        # Listing children walks /proc: refresh that list once a second, read the memory every 50 ms
        # (cheaply, so the sampler does not slow the benchmark client that shares this process).
        children: list[psutil.Process] = []
        refreshed = 0.0
        while not self._stop.is_set():
            try:
                if time.monotonic() - refreshed > 1.0:
                    children, refreshed = self.process.children(recursive=True), time.monotonic()
                total = self.process.memory_info().rss
                for child in children:
                    with contextlib.suppress(psutil.Error):
                        total += child.memory_info().rss
                self.peak = max(self.peak, total)
            except psutil.Error:
                pass
            self._stop.wait(0.05)

    def __enter__(self) -> PeakRss:
        self.peak = 0
        self._stop.clear()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


class Server:
    label = ""

    def __init__(self) -> None:
        self.home = Path(tempfile.mkdtemp(prefix="pushpool-bench-"))
        self.port = free_port()
        self.process: subprocess.Popen | None = None
        self.log = open(self.home / "server.log", "w")  # noqa: SIM115 - open for the server's lifetime

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _wait_healthy(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                break
            try:
                if httpx.get(f"{self.url}/api/health", timeout=2).is_success and self._ready():
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{self.label} did not start: {(self.home / 'server.log').read_text()[-2000:]}")

    def _ready(self) -> bool:
        return True

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.log.close()


class PushpoolServer(Server):
    label = "pushpool"

    def __init__(self, *, record: Path | None = None, env: dict[str, str] | None = None) -> None:
        super().__init__()
        command = [sys.executable, "-m", "tests.benchmarks.pushpool_server", "--port", str(self.port)]
        if record is not None:
            command += ["--record", str(record)]
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("PUSHPOOL_")}
        full_env.update(PUSHPOOL_HOME=str(self.home), PYTHONPATH=str(REPO), **(env or {}))
        self.process = subprocess.Popen(command, env=full_env, cwd=REPO, stdout=self.log, stderr=subprocess.STDOUT)
        self._wait_healthy()
        self.key = (self.home / "bench.key").read_text().strip()

    def _ready(self) -> bool:
        return (self.home / "bench.key").exists()


class ReferenceServer(Server):
    """The limit of the stack (tests/benchmarks/reference_app.py): the same uvicorn and SQLite, nothing else."""

    label = "reference"

    def __init__(self) -> None:
        super().__init__()
        command = [sys.executable, "-m", "tests.benchmarks.reference_app", "--port", str(self.port), "--home",
                   str(self.home)]
        self.process = subprocess.Popen(command, env={**os.environ, "PYTHONPATH": str(REPO)}, cwd=REPO,
                                        stdout=self.log, stderr=subprocess.STDOUT)
        self._wait_healthy()
        self.key = (self.home / "bench.key").read_text().strip()

    def _ready(self) -> bool:
        return (self.home / "bench.key").exists()


class PrefectServer(Server):
    def __init__(self, *, services: bool, env: dict[str, str] | None = None) -> None:
        super().__init__()
        self.label = "Prefect" if services else "Prefect --no-services"
        command = [str(ensure_prefect()), "server", "start", "--host", "127.0.0.1", "--port", str(self.port)]
        if not services:
            command.append("--no-services")
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
        full_env.update(PREFECT_HOME=str(self.home), PREFECT_SERVER_ANALYTICS_ENABLED="false",
                        PREFECT_SERVER_UI_ENABLED="false", PREFECT_API_URL=f"{self.url}/api", **(env or {}))
        self.env = full_env
        self.process = subprocess.Popen(command, env=full_env, cwd=self.home, stdout=self.log,
                                        stderr=subprocess.STDOUT)
        self._wait_healthy()


# --------------------------------------------------------------------------- API adapters


class PushpoolApi:
    """The steps a workload takes, through pushpool's HTTP API."""

    def __init__(self, server: PushpoolServer) -> None:
        self.server = server

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=f"{self.server.url}/api/workspaces/default",
                            headers={"Authorization": f"Bearer {self.server.key}"}, timeout=60)

    def create_pool(self, client: httpx.Client, name: str, **fields: Any) -> None:
        client.post("/work_pools", json={"name": name, "type": "local:push", **fields}).raise_for_status()

    def create_deployment(self, client: httpx.Client, name: str, pool: str, **fields: Any) -> str:
        answer = client.post("/deployments", json={"flow_name": "bench", "name": name, "entrypoint": "flow.py:bench",
                                                   "work_pool_name": pool, **fields})
        answer.raise_for_status()
        return answer.json()["id"]

    def create_run(self, client: httpx.Client, deployment_id: str, **fields: Any) -> httpx.Response:
        return client.post(f"/deployments/{deployment_id}/runs", json=fields)

    def set_state(self, client: httpx.Client, run_id: str, state: str) -> httpx.Response:
        return client.post(f"/flow_runs/{run_id}/set_state", json={"type": state})


def with_retries(call: Any, attempts: int = 10) -> httpx.Response:
    """Set-up steps retry 503 (Prefect's "database is locked") the way Prefect's own client does."""
    for attempt in range(attempts):
        answer = call()
        if answer.status_code not in (429, 503):
            return answer
        time.sleep(min(5.0, 0.5 * 2 ** attempt))
    return answer


class PrefectApi:
    """The same steps through Prefect's REST API."""

    def __init__(self, server: PrefectServer) -> None:
        self.server = server
        self._flow_id: str | None = None

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=f"{self.server.url}/api", timeout=60)

    def create_pool(self, client: httpx.Client, name: str, **fields: Any) -> None:
        client.post("/work_pools/", json={"name": name, "type": "process", **fields}).raise_for_status()

    def create_deployment(self, client: httpx.Client, name: str, pool: str | None, **fields: Any) -> str:
        if self._flow_id is None:
            answer = client.post("/flows/", json={"name": "bench"})
            answer.raise_for_status()
            self._flow_id = answer.json()["id"]
        body = {"name": name, "flow_id": self._flow_id, **fields}
        if pool:
            body["work_pool_name"] = pool
        answer = with_retries(lambda: client.post("/deployments/", json=body))
        answer.raise_for_status()
        return answer.json()["id"]

    def create_run(self, client: httpx.Client, deployment_id: str, **fields: Any) -> httpx.Response:
        if "scheduled_time" in fields:
            fields = {"state": {"type": "SCHEDULED", "state_details": {"scheduled_time": fields.pop("scheduled_time")}},
                      **fields}
        return client.post(f"/deployments/{deployment_id}/create_flow_run", json=fields)

    def set_state(self, client: httpx.Client, run_id: str, state: str) -> httpx.Response:
        return client.post(f"/flow_runs/{run_id}/set_state", json={"state": {"type": state}})

    def count_runs(self, client: httpx.Client) -> int:
        return int(client.post("/flow_runs/count", json={}).json())


class ReferenceApi(PushpoolApi):
    """The workloads' steps against the reference app (the same paths as pushpool's; it has no pools)."""

    def create_pool(self, client: httpx.Client, name: str, **fields: Any) -> None:
        pass

    def create_deployment(self, client: httpx.Client, name: str, pool: str, **fields: Any) -> str:
        return f"reference-{name}"


def write_doc_block(marker: str, table: str, heading: str, intro: str = "") -> None:
    """Put ``table`` between ``<!-- marker:begin -->`` and ``<!-- marker:end -->`` in docs/benchmarks.md, or add a
    section (``heading``, ``intro``) holding it at the end when the markers are not there yet."""
    doc = REPO / "docs" / "benchmarks.md"
    begin, end = f"<!-- {marker}:begin -->", f"<!-- {marker}:end -->"
    block = f"{begin}\n{table}\n{end}"
    text = doc.read_text()
    if begin in text:
        text = re.sub(f"{re.escape(begin)}.*?{re.escape(end)}", lambda _: block, text, flags=re.S)
    else:
        text = text.rstrip() + f"\n\n## {heading}\n\n" + (f"{intro}\n\n" if intro else "") + block + "\n"
    doc.write_text(text)
