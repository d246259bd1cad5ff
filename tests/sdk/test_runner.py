"""The runner's entrypoint loading and flow calling, and its environment checks."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from sdk.runner import EntrypointError, call_flow, load_entrypoint

MODULE = textwrap.dedent('''
    from sdk import flow
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
    out = subprocess.run([sys.executable, "-m", "sdk.runner"], capture_output=True, text=True, env=env)
    assert out.returncode == 2
    assert "missing environment variable(s) PUSHPOOL_API_URL, PUSHPOOL_FLOW_RUN_ID, PUSHPOOL_RUN_TOKEN" in out.stderr
