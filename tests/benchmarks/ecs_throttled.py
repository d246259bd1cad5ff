"""``make bench-ecs``: many runs due at once on one ECS pool, through AWS's own limits.

The strict AWS fake (tests/fakes/aws_rules.py) in front of moto throttles RunTask to ``--run-task-rate`` a second
(burst of as many) and RegisterTaskDefinition to one a second (burst 20, refusing concurrent revisions of a
family); ``--deployments`` deployments with their own images need a task definition each. The control plane's
dispatcher (its thread pool, real clock, embedded SQLite store) submits every run; the script prints how long
that took, the submission rate against the limit, what AWS refused, and checks that every run got exactly one
task and none crashed. Prints a markdown table; ``--update-docs`` writes it into docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections import Counter
from pathlib import Path

from tests.benchmarks.systems import write_doc_block


def run(runs: int, deployments: int, run_task_rate: float, timeout: float) -> dict:
    """Set up moto with the limits, submit every run, and say how it went (the environment is put back)."""
    from tests.fakes.aws import REGION, start_moto

    moto, server = start_moto()
    moto.rules.configure(run_task_per_second=run_task_rate, run_task_burst=run_task_rate)
    moto.reset()
    saved = {k: os.environ.get(k) for k in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                                            "AWS_DEFAULT_REGION")}
    os.environ.update(AWS_ENDPOINT_URL=moto.url, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
                      AWS_DEFAULT_REGION=REGION)
    try:
        return _submit_all(moto, runs, deployments, run_task_rate, timeout)
    finally:
        server.stop()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _submit_all(moto, runs: int, deployments: int, run_task_rate: float, timeout: float) -> dict:
    from cryptography.fernet import Fernet
    from fastapi.testclient import TestClient

    from pushpool.control_plane.app import create_app
    from pushpool.control_plane.bootstrap import bootstrap
    from pushpool.control_plane.models import FlowRunFilter
    from pushpool.control_plane.services.context import build_context
    from pushpool.control_plane.services.dispatcher import Dispatcher
    from pushpool.control_plane.settings import Settings
    from pushpool.control_plane.storage.sqlite import SqliteStore
    from pushpool.pushers.ecs import EcsPusher
    from tests.fakes.aws import REGION

    moto.create_ecs_service_role()
    moto.client("ecs").create_cluster(clusterName="flows", capacityProviders=["FARGATE", "FARGATE_SPOT"])
    home = Path(tempfile.mkdtemp(prefix="pushpool-bench-ecs-"))
    settings = Settings(home=home, encryption_key=Fernet.generate_key().decode(), submission_backoff_seconds=1.0,
                        failed_requests_per_minute=10_000)
    store = SqliteStore(home / "pushpool.db")
    ctx = build_context(settings, store)
    workspace, key = bootstrap(ctx)
    api = TestClient(create_app(settings, store, ctx=ctx), headers={"Authorization": f"Bearer {key}"})
    ws = f"/api/workspaces/{workspace}"
    workspace_id = store.get_workspace(workspace).id
    api.post(f"{ws}/blocks", json={"name": "aws", "type": "aws-credentials", "data": {
        "aws_access_key_id": "testing", "aws_secret_access_key": "testing", "region_name": REGION}}).raise_for_status()
    template = EcsPusher.default_job_template()
    for name, value in {"region": REGION, "cluster": "flows", "aws_credentials": "{{ pushpool.blocks.aws }}"}.items():
        template["variables"]["properties"][name]["default"] = value
    api.post(f"{ws}/work_pools", json={"name": "ecs", "type": "ecs:push", "base_job_template": template,
                                       "paused": True}).raise_for_status()
    made = [api.post(f"{ws}/deployments", json={
        "flow_name": "etl", "name": f"d{i}", "entrypoint": "flows.py:etl", "work_pool_name": "ecs",
        "image": f"registry.example/etl:{i}"}).json()["id"] for i in range(deployments)]
    for i in range(runs):
        api.post(f"{ws}/deployments/{made[i % deployments]}/runs", json={}).raise_for_status()
    api.patch(f"{ws}/work_pools/ecs", json={"paused": False}).raise_for_status()

    dispatcher = Dispatcher(ctx)
    started = time.perf_counter()
    passes = 0
    while time.perf_counter() - started < timeout:
        dispatcher.run_once()
        passes += 1
        every = store.list_flow_runs(workspace_id, FlowRunFilter(), limit=runs + 1)
        states = Counter(r.state.type.value for r in every)
        if not any(r.infra_id is None and r.state.type.value in ("SCHEDULED", "PENDING") for r in every):
            break
        time.sleep(0.2)
    elapsed = time.perf_counter() - started
    dispatcher.close()
    tasks = Counter(t.started_by for t in moto.tasks("flows").values())
    out = {"runs": runs, "deployments": deployments, "rate": run_task_rate, "seconds": elapsed, "passes": passes,
           "states": dict(states), "tasks": sum(tasks.values()), "most_tasks_per_run": max(tasks.values(), default=0),
           "run_task": moto.rules.counts("RunTask"), "register": moto.rules.counts("RegisterTaskDefinition")}
    store.close()
    return out


def table(r: dict) -> str:
    floor = max(r["runs"] / r["rate"] - 1, 0.001)  # the fastest the limit allows (the burst leaves at once)
    crashed = r["states"].get("CRASHED", 0)
    return "\n".join([
        "| measure | figure |", "|---|---|",
        f"| runs due at once / deployments (a task definition each) | {r['runs']:,} / {r['deployments']} |",
        f"| AWS limits in the fake | RunTask {r['rate']:.0f}/s, RegisterTaskDefinition 1/s (burst 20) |",
        f"| all submitted after | {r['seconds']:.1f} s ({r['passes']} dispatcher passes) |",
        f"| submission rate | {r['runs'] / r['seconds']:.1f} runs/s ({floor / r['seconds'] * 100:.0f} % of what "
        f"the limit allows) |",
        f"| tasks started / most for one run | {r['tasks']:,} / {r['most_tasks_per_run']} |",
        f"| runs CRASHED | {crashed} |",
        f"| RunTask answers | {', '.join(f'{k} {v:,}' for k, v in sorted(r['run_task'].items()))} |",
        f"| RegisterTaskDefinition answers | {', '.join(f'{k} {v}' for k, v in sorted(r['register'].items()))} |",
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--deployments", type=int, default=25)
    parser.add_argument("--run-task-rate", type=float, default=20.0)
    parser.add_argument("--timeout", type=float, default=900.0)
    parser.add_argument("--update-docs", action="store_true")
    args = parser.parse_args()
    result = run(args.runs, args.deployments, args.run_task_rate, args.timeout)
    text = table(result)
    print(text)
    ok = result["tasks"] == args.runs and result["most_tasks_per_run"] == 1 and not result["states"].get("CRASHED")
    print("exactly once, none crashed" if ok else f"NOT exactly once or some crashed: {result['states']}")
    if args.update_docs:
        write_doc_block("ecs-throttled", text, "ECS under AWS's limits", "`make bench-ecs` (tests/benchmarks/"
                        "ecs_throttled.py): runs due at once on one ECS pool, through the strict AWS fake's "
                        "throttling.")
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
