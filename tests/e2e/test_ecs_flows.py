"""Issue 21's flow features through ``ecs:push`` on moto with the container simulator: mapped, retried, cached and
timed-out tasks, logs read back through the API (no local file), the result; and a crash retry as a new ECS task."""

from __future__ import annotations

import textwrap

from tests.e2e.test_ecs_loop import IMAGE, ecs_template, make_block, wait_for_infra
from tests.fakes.aws import ContainerSimulator
from tests.live_server import wait_for_state

FLOWS = textwrap.dedent('''
    import time
    from pushpool import INPUTS, flow, get_run_logger, task, unmapped

    tries = []

    @task
    def square(x: int, offset: int) -> int:
        return x * x + offset

    @task(retries=1, retry_delay_seconds=0)
    def flaky() -> str:
        tries.append(1)
        if len(tries) == 1:
            raise ConnectionError("first try fails")
        return "ok"

    @task(cache_policy=INPUTS, result_storage="cache")
    def cached(day: str) -> str:
        return day.upper()

    @task(timeout_seconds=0.2)
    def too_slow() -> None:
        time.sleep(3)

    @flow(persist_result=True)
    def etl(n: int = 5) -> int:
        get_run_logger().info("etl starts with %d rows", n)
        total = sum(f.result() for f in square.map(range(n), unmapped(1)))
        flaky()
        cached("mon")
        try:
            too_slow()
        except TimeoutError:
            print("too_slow timed out, going on")
        return total
''')


def test_tasks_logs_and_result_of_a_run_on_ecs(live, aws, tmp_path):
    (tmp_path / "flows.py").write_text(FLOWS)
    client = live.client()
    make_block(lambda body: client.request("POST", client.ws("/blocks"), json=body))
    client.create_work_pool("ecs", "ecs:push", base_job_template=ecs_template())
    dep = client.apply_deployment(flow_name="etl", name="ecs", entrypoint="flows.py:etl", work_pool_name="ecs",
                                  image=IMAGE)
    simulator = ContainerSimulator(aws, tmp_path)
    listings = []
    for _ in range(2):  # the second run reads 'cached' from the cache the first wrote
        run = wait_for_infra(client, client.create_flow_run(dep["id"], parameters={"n": 5})["id"])
        assert simulator.run(run["infra_id"]) == 0, simulator.output
        done = wait_for_state(client, run["id"], {"COMPLETED", "FAILED", "CRASHED"})
        assert done["state"]["type"] == "COMPLETED" and done["result"] == {"value": 0 + 1 + 4 + 9 + 16 + 5}
        listings.append({t["name"]: t for t in client.request("GET", client.ws(f"/flow_runs/{run['id']}/task_runs"))})
        logs = client.request("GET", client.ws(f"/flow_runs/{run['id']}/logs"))
        assert logs["source"] == "control_plane"
        text = "\n".join(logs["lines"])
        assert "etl starts with 5 rows" in text and "too_slow timed out, going on" in text
    first, second = listings
    assert sorted(first) == sorted([f"square-{i}" for i in range(5)] + ["flaky-0", "cached-0", "too_slow-0"])
    assert first["flaky-0"]["attempts"] == 2 and first["too_slow-0"]["state_name"] == "TimedOut"
    assert not first["cached-0"]["cache_hit"] and second["cached-0"]["cache_hit"]


def test_a_crashed_ecs_task_is_retried_as_a_new_task(live, aws, tmp_path):
    (tmp_path / "flows.py").write_text("from pushpool import flow\n\n@flow\ndef etl():\n    print('done')\n")
    client = live.client()
    make_block(lambda body: client.request("POST", client.ws("/blocks"), json=body))
    client.create_work_pool("ecs", "ecs:push", base_job_template=ecs_template(), crash_retries=1,
                            crash_retry_delay_seconds=0)
    dep = client.apply_deployment(flow_name="etl", name="ecs", entrypoint="flows.py:etl", work_pool_name="ecs",
                                  image=IMAGE)
    run = wait_for_infra(client, client.create_flow_run(dep["id"])["id"])
    first_task = run["infra_id"]
    aws.stop(first_task, exit_code=137, container_reason="OutOfMemoryError: Container killed due to memory usage")
    retried = wait_for_infra_change(client, run["id"], first_task)
    assert retried["crash_attempts"] == 1
    assert aws.task(retried["infra_id"]).started_by == run["id"].replace("-", "") + "-r1"
    simulator = ContainerSimulator(aws, tmp_path)
    assert simulator.run(retried["infra_id"]) == 0, simulator.output
    done = wait_for_state(client, run["id"], {"COMPLETED", "FAILED", "CRASHED"})
    assert done["state"]["type"] == "COMPLETED"
    names = [s["name"] for s in client.request("GET", client.ws(f"/flow_runs/{run['id']}/states"))]
    assert "AwaitingRetry" in names and names[-1] == "Completed"


def wait_for_infra_change(client, run_id: str, old: str, timeout: float = 30) -> dict:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = client.read_flow_run(run_id)
        if run["infra_id"] and run["infra_id"] != old:
            return run
        time.sleep(0.1)
    raise AssertionError(f"never resubmitted: {client.read_flow_run(run_id)['state']}")
