"""The runner's entrypoint loading and flow calling, and its environment checks."""

from __future__ import annotations

import dataclasses
import enum
import subprocess
import sys
import textwrap
from datetime import date, datetime
from decimal import Decimal

import pytest
from pydantic import BaseModel

from pushpool.runner import EntrypointError, call_flow, load_entrypoint

MODULE = textwrap.dedent('''
    from pushpool import flow
    calls = []

    @flow(retries=2)
    def flaky(fail_times: int):
        calls.append(1)
        if len(calls) <= fail_times:
            raise RuntimeError(f"attempt {len(calls)}")
        return len(calls)

    async def coro(x: int):
        return x * 2
''')


@pytest.fixture
def project(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "mod.py").write_text(MODULE)
    (tmp_path / "flows").mkdir()
    (tmp_path / "flows" / "main.py").write_text(MODULE)
    return tmp_path


def test_loads_file_and_module_entrypoints(project):
    assert load_entrypoint("flows/main.py:flaky", project).name == "flaky"
    assert load_entrypoint("pkg.mod:coro", project).__name__ == "coro"


@pytest.mark.parametrize("entrypoint, message", [
    ("flows/missing.py:x", "not found"),
    ("flows/main.py:nothing", "has no attribute 'nothing'"),
    ("nopkg.mod:x", "cannot be imported"),
    ("no-colon", "must look like"),
])
def test_bad_entrypoints_say_what_is_wrong(project, entrypoint, message):
    with pytest.raises(EntrypointError, match=message):
        load_entrypoint(entrypoint, project)


def test_flow_retries_then_succeeds_or_raises(project):
    flaky = load_entrypoint("flows/main.py:flaky", project)
    assert call_flow(flaky, {"fail_times": 2}) == 3
    other = load_entrypoint("pkg.mod:flaky", project)
    with pytest.raises(RuntimeError, match="attempt 3"):
        call_flow(other, {"fail_times": 5})


def test_async_functions_are_awaited(project):
    assert call_flow(load_entrypoint("pkg.mod:coro", project), {"x": 21}) == 42


def test_runner_without_its_environment_exits_2_with_a_message():
    env = {"PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-m", "pushpool.runner"], capture_output=True, text=True, env=env)
    assert out.returncode == 2
    assert "missing environment variable(s) PUSHPOOL_API_URL, PUSHPOOL_FLOW_RUN_ID, PUSHPOOL_RUN_TOKEN" in out.stderr


class LostAnswerClient:
    """A control plane that records the first report of each state, then "loses" the answer: the
    client's retry is refused with a Conflict, as after a control-plane crash mid-request."""

    api_url, api_key, workspace = "http://127.0.0.1:9", "ppr_test", "w"  # task-run reports: none in this flow

    def __init__(self, project) -> None:
        self.state = {"type": "PENDING", "message": None}
        self.run = {"id": "r1", "deployment_id": "d1", "scheduled_time": "2020-01-01T00:00:00+00:00",
                    "parameters": {"fail_times": 0}}
        self.deployment = {"entrypoint": "flows/main.py:flaky"}
        self.reports: list[str] = []

    def me(self) -> dict:
        return {"workspace_id": "w"}

    def read_flow_run(self, run_id: str) -> dict:
        return {**self.run, "state": dict(self.state)}

    def read_deployment(self, deployment_id: str) -> dict:
        return self.deployment

    def set_flow_run_state(self, run_id: str, type: str, message: str | None = None, name=None, result=None) -> dict:
        from pushpool.control_plane.errors import Conflict

        self.reports.append(type)
        self.state = {"type": type, "message": message}
        raise Conflict(f"Cannot move a flow run from {type} to {type}")


def test_a_report_whose_answer_was_lost_counts_as_made(project, monkeypatch):
    from pushpool.runner import run

    monkeypatch.chdir(project)
    client = LostAnswerClient(project)
    assert run(client, "r1") == 0
    assert client.reports == ["RUNNING", "COMPLETED"]  # the flow ran once and its end was reported
    assert client.state["type"] == "COMPLETED"


def test_a_run_started_by_another_runner_is_not_run_again(project, monkeypatch):
    from pushpool.control_plane.errors import Conflict
    from pushpool.runner import run

    monkeypatch.chdir(project)
    client = LostAnswerClient(project)

    def someone_else_started_it(run_id, type, message=None, name=None, result=None):
        client.state = {"type": "RUNNING", "message": "Started by runner other"}
        raise Conflict("Cannot move a flow run from RUNNING to RUNNING")

    client.set_flow_run_state = someone_else_started_it
    assert run(client, "r1") == 0
    assert client.state["message"] == "Started by runner other"


class Color(enum.Enum):
    RED = "red"


class Window(BaseModel):
    start: date
    days: int = 1


@dataclasses.dataclass
class Point:
    x: float
    y: float


def test_parameters_reach_the_flow_as_their_declared_types():
    seen = {}

    def typed(day: date, at: datetime, price: Decimal, color: Color, window: Window, point: Point,
              counts: list[int], untyped, optional: int | None = None, default: str = "kept"):
        seen.update(locals())

    call_flow(typed, {"day": "2025-05-01", "at": "2025-05-01T10:00:00Z", "price": "1.10", "color": "red",
                      "window": {"start": "2025-05-01"}, "point": {"x": 1, "y": 2.5}, "counts": ["1", 2],
                      "untyped": {"as": "is"}, "optional": None})
    assert seen["day"] == date(2025, 5, 1) and seen["at"].tzinfo is not None and seen["price"] == Decimal("1.10")
    assert seen["color"] is Color.RED and seen["window"] == Window(start=date(2025, 5, 1))
    assert seen["point"] == Point(1.0, 2.5) and seen["counts"] == [1, 2] and seen["untyped"] == {"as": "is"}
    assert seen["optional"] is None and seen["default"] == "kept"


def needs_a_date(day: date, n: int = 1):
    return day


def test_a_parameter_that_does_not_convert_fails_naming_it():
    from pushpool.flows import ParameterError

    with pytest.raises(ParameterError, match=r"parameters: day: .*date"):
        call_flow(needs_a_date, {"day": "yesterday"})
    with pytest.raises(ParameterError, match="parameters: n: "):
        call_flow(needs_a_date, {"day": "2025-05-01", "n": "many"})


def test_keyword_arguments_pass_through():
    def anything(a: int, **rest):
        return a, rest

    assert call_flow(anything, {"a": "3", "b": [1]}) == (3, {"b": [1]})
