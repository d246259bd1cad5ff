"""A flow made of tasks through ``local:push`` on a real server: its task runs reach the control plane."""

from __future__ import annotations

import textwrap
from pathlib import Path

from tests.e2e.local_project import local_project
from tests.live_server import wait_for_state, wait_until

TASK_FLOWS = textwrap.dedent('''
    import time
    from pushpool import INPUTS, ThreadPoolTaskRunner, flow, task, unmapped

    attempts = []

    @task
    def square(x: int, offset: int = 0) -> int:
        return x * x + offset

    @task(retries=2, retry_delay_seconds=0.1)
    def flaky() -> str:
        attempts.append(1)
        if len(attempts) < 3:
            raise ConnectionError(f"attempt {len(attempts)}")
        return "ok"

    @task(cache_policy=INPUTS, result_storage="cache")
    def cached(day: str) -> str:
        return day.upper()

    @task(timeout_seconds=0.2)
    def too_slow() -> None:
        time.sleep(5)

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=4))
    def pipeline(n: int = 20) -> int:
        total = sum(f.result() for f in square.map(range(n), offset=unmapped(1)))
        flaky()
        cached("mon")
        try:
            too_slow()
        except TimeoutError:
            pass
        return total
''')


def test_task_runs_of_a_local_run_are_listed_by_the_control_plane(live, tmp_path: Path):
    project = local_project(live, tmp_path, TASK_FLOWS)
    dep = project.deploy("pipeline")
    listings = []
    for _ in range(2):  # the second run finds 'cached' in the cache the first one wrote
        done = project.run(dep, parameters={"n": 20})
        assert done["state"]["type"] == "COMPLETED", done["state"]
        listings.append({t["name"]: t for t in project.get(f"/flow_runs/{done['id']}/task_runs", limit=1000)})
    first, second = listings
    assert sorted(first) == sorted([f"square-{i}" for i in range(20)] + ["flaky-0", "cached-0", "too_slow-0"])
    assert all(first[f"square-{i}"]["state_type"] == "COMPLETED" for i in range(20))
    assert (first["flaky-0"]["attempts"], first["flaky-0"]["state_type"]) == (3, "COMPLETED")
    assert (first["too_slow-0"]["state_name"], first["too_slow-0"]["state_type"]) == ("TimedOut", "FAILED")
    assert "exceeded its timeout" in first["too_slow-0"]["error"]
    assert not first["cached-0"]["cache_hit"] and second["cached-0"]["cache_hit"]
    assert second["cached-0"]["state_name"] == "Cached"


LOGGING_FLOW = textwrap.dedent('''
    import sys
    from pushpool import flow, get_run_logger, task

    @task(log_prints=True)
    def load(rows: int) -> int:
        print(f"loading {rows} rows")
        return rows

    @flow
    def report(rows: int = 3) -> None:
        get_run_logger().info("report starts")
        print("plain print")
        print("to stderr", file=sys.stderr)
        load(rows)
        get_run_logger().warning("report done")
''')


def test_logs_of_a_local_run_are_read_from_the_control_plane(live, tmp_path: Path):
    project = local_project(live, tmp_path, LOGGING_FLOW)
    done = project.run(project.deploy("report"), parameters={"rows": 7})
    run, client = done, project.client
    assert done["state"]["type"] == "COMPLETED", done["state"]
    local_file = Path(done["console_url"].removeprefix("file://"))
    local_file.unlink()  # read as from another machine: nothing local to fall back on
    page = client.request("GET", client.ws(f"/flow_runs/{run['id']}/logs"))
    assert page["source"] == "control_plane"
    text = "\n".join(page["lines"])
    for expected in ("INFO    | report - report starts", "plain print", "to stderr",
                     "INFO    | load - loading 7 rows", "WARNING | report - report done"):
        assert expected in text, (expected, text)
    assert text.index("report starts") < text.index("loading 7 rows") < text.index("report done")
    tail = client.request("GET", client.ws(f"/flow_runs/{run['id']}/logs"), params={"tail": 1})["lines"]
    assert len(tail) == 1 and "report done" in tail[0]


RESULT_FLOWS = textwrap.dedent('''
    import datetime
    from pushpool import flow

    @flow(persist_result=True)
    def summary(n: int = 3) -> dict:
        return {"rows": n, "ok": True}

    @flow(persist_result=True, result_storage="results")
    def big() -> bytes:
        return b"x" * 100

    @flow(persist_result=True)
    def unkept() -> datetime.date:
        return datetime.date(2026, 5, 1)

    @flow
    def not_persisted() -> int:
        return 7
''')


def test_persisted_results_are_shown_with_the_run(live, tmp_path: Path):
    import pickle

    local = local_project(live, tmp_path, RESULT_FLOWS)
    project = local.dir
    results = {}
    for name in ("summary", "big", "unkept", "not_persisted"):
        done = local.run(local.deploy(name))
        assert done["state"]["type"] == "COMPLETED", done["state"]
        results[name] = (done["id"], done["result"])
    assert results["summary"][1] == {"value": {"rows": 3, "ok": True}}
    big_id, big = results["big"]
    assert big == {"storage": "results", "key": f"flow-run-{big_id}"}
    expires_at, value = pickle.loads((project / "results" / f"flow-run-{big_id}.pickle").read_bytes())
    assert value == b"x" * 100 and expires_at is None
    assert "date returned is not JSON" in results["unkept"][1]["unpersisted"]
    assert results["not_persisted"][1] is None


VARIABLE_FLOW = textwrap.dedent('''
    from pushpool import Variable, emit_event, flow

    @flow
    def configured() -> None:
        limits = Variable.get("limits", default={"rows": 1})
        Variable.set("last_rows", limits["rows"] * 2)
        print("missing is", Variable.get("missing", default="fallback"))
        emit_event("etl.rows.counted", payload={"rows": limits["rows"]})
''')


def test_a_flow_reads_and_sets_variables_and_emits_events_with_its_run_token(live, tmp_path: Path):
    project = local_project(live, tmp_path, VARIABLE_FLOW)
    client = project.client
    client.request("PUT", client.ws("/variables/limits"), json={"value": {"rows": 21}})
    run = done = project.run(project.deploy("configured"))
    assert done["state"]["type"] == "COMPLETED", done["state"]
    assert client.request("GET", client.ws("/variables/last_rows"))["value"] == 42
    page = client.request("GET", client.ws(f"/flow_runs/{run['id']}/logs"))
    assert "missing is fallback" in page["lines"]
    def counted() -> list[dict]:
        return client.request("GET", client.ws("/events"), params={"event": "etl.rows.counted"})["events"]

    wait_until(counted, "the flow's event was stored")
    [event] = counted()
    assert event["payload"] == {"rows": 21}
    assert event["resource"]["pushpool.resource.id"] == f"pushpool.flow-run.{run['id']}"


PARENT_CHILD_FLOWS = textwrap.dedent('''
    from pushpool import flow, run_deployment

    @flow
    def child(day: str) -> None:
        print(f"child processed {day}")

    @flow(persist_result=True)
    def parent() -> str:
        done = run_deployment("child/c", parameters={"day": "mon"}, timeout=60, poll_seconds=0.2)
        return done.state.type
''')


def test_a_parent_flow_runs_a_child_deployment_and_gets_its_state(live, tmp_path: Path):
    project = local_project(live, tmp_path, PARENT_CHILD_FLOWS)
    client = project.client
    project.deploy("child", name="c")
    run = done = project.run(project.deploy("parent", name="p"), timeout=90)
    assert done["state"]["type"] == "COMPLETED", done["state"]
    assert done["result"] == {"value": "COMPLETED"}
    [child] = client.request("GET", client.ws(f"/flow_runs/{run['id']}/children"))
    assert child["parent_flow_run_id"] == run["id"] and child["state"]["type"] == "COMPLETED"
    assert child["parameters"] == {"day": "mon"}
    assert "child processed mon" in client.request("GET", client.ws(f"/flow_runs/{child['id']}/logs"))["lines"]


LIMITED_FLOW = textwrap.dedent('''
    import json, os, time
    from pushpool import flow, task

    @task(tags=["warehouse"])
    def load(i: int) -> None:
        started = time.time()
        time.sleep(0.3)
        with open("spans.jsonl", "a") as out:
            out.write(json.dumps([started, time.time(), os.environ["PUSHPOOL_FLOW_RUN_ID"], i]) + "\\n")

    @flow
    def loads() -> None:
        for future in load.map(range(3)):
            future.result()
''')


def test_a_tag_limit_holds_across_concurrent_runs(live, tmp_path: Path):
    import json

    local = local_project(live, tmp_path, LIMITED_FLOW)
    client, project = local.client, local.dir
    client.request("PUT", client.ws("/concurrency_limits/warehouse"), json={"limit": 1})
    dep = local.deploy("loads")
    runs = [client.create_flow_run(dep["id"]) for _ in range(2)]
    for run in runs:
        done = wait_for_state(client, run["id"], {"COMPLETED", "FAILED", "CRASHED"}, timeout=90)
        assert done["state"]["type"] == "COMPLETED", done["state"]
    spans = sorted(json.loads(line) for line in (project / "spans.jsonl").read_text().splitlines())
    assert len(spans) == 6 and {s[2] for s in spans} == {r["id"] for r in runs}
    for before, after in zip(spans, spans[1:], strict=False):
        assert after[0] >= before[1] - 0.01, (before, after)  # one at a time, across both runs
    assert client.request("GET", client.ws("/concurrency_limits/warehouse"))["holders"] == {}


def test_log_shipping_can_be_turned_off_for_a_deployment(live, tmp_path: Path):
    project = local_project(live, tmp_path, LOGGING_FLOW)
    dep = project.client.apply_deployment(
        flow_name="report", name="quiet", entrypoint="flows.py:report", work_pool_name="local",
        job_variables={"working_dir": str(project.dir), "env": {"PUSHPOOL_RUN_LOGS": "off"}})
    done = project.run(dep, parameters={"rows": 1})
    assert done["state"]["type"] == "COMPLETED", done["state"]
    page = project.get(f"/flow_runs/{done['id']}/logs")
    assert page["source"] != "control_plane" and page["lines"] == []
    local_log = Path(done["console_url"].removeprefix("file://")).read_text()
    assert "plain print" in local_log  # still in the run's own log
