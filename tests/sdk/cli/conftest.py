"""A real ``pushpool server start`` process and a helper that runs the CLI as a user would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.fakes.net import free_port

REPO = Path(__file__).resolve().parents[3]


@dataclass
class Cli:
    home: Path
    cwd: Path

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PUSHPOOL_")}
        env.update(PUSHPOOL_HOME=str(self.home), PYTHONPATH=str(REPO), COLUMNS="200")
        env.update(extra)
        return env

    def run(self, *args: str, cwd: Path | None = None, **env: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "pushpool.cli.main", *args], capture_output=True, text=True,
                              cwd=cwd or self.cwd, env=self.env(**env), stdin=subprocess.DEVNULL, timeout=120)

    def ok(self, *args: str, **kw) -> str:
        result = self.run(*args, **kw)
        assert result.returncode == 0, f"{args}: {result.stdout}\n{result.stderr}"
        return result.stdout

    def json(self, *args: str, **kw):
        return json.loads(self.ok(*args, "--output", "json", **kw))

    def python(self, script: Path, **env: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=script.parent.parent,
                              env=self.env(**env), timeout=120)

    def fails(self, *args: str, **kw) -> str:
        """Run a command that must fail with exit code 1 and exactly one line on stderr; return that line."""
        result = self.run(*args, **kw)
        assert result.returncode == 1, f"{args} exited {result.returncode}: {result.stdout}\n{result.stderr}"
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert lines[0].startswith("Error: ")
        return lines[0]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """``pushpool server start`` in a fresh home; yields a Cli bound to it."""
    base = tmp_path_factory.mktemp("cli")
    cli = Cli(home=base / "home", cwd=base)
    port = free_port()
    log = open(base / "server.log", "w")  # noqa: SIM115 - open for the server's lifetime
    process = subprocess.Popen([sys.executable, "-m", "pushpool.cli.main", "server", "start", "--port", str(port)],
                               env=cli.env(PUSHPOOL_SCHEDULER_INTERVAL_SECONDS="1"), cwd=base, stdout=log,
                               stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while True:
        try:
            if (cli.home / "profiles.toml").exists() and httpx.get(f"http://127.0.0.1:{port}/api/health").is_success:
                break
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline or process.poll() is not None:
            raise RuntimeError(f"server did not start: {(base / 'server.log').read_text()}")
        time.sleep(0.1)
    yield cli
    process.terminate()
    process.wait(timeout=20)
    log.close()


FLOW = '''
from pushpool import flow


@flow
def greet(name: str = "world", times: int = 1):
    """Greets."""
    for _ in range(times):
        print(f"hello {{name}}")


if __name__ == "__main__":
    greet.deploy(name="{name}", work_pool_name="{pool}", cron="* * * * *", parameters={{"times": 2}}, tags=["t"])
'''


def write_project(root: Path, name: str = "dep", pool: str = "demo") -> Path:
    (root / "flows").mkdir(parents=True, exist_ok=True)
    script = root / "flows" / "greet.py"
    script.write_text(FLOW.format(name=name, pool=pool))
    return script
