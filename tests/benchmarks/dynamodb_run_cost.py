"""``make bench-lambda`` (second half): what one run's life costs in DynamoDB request units on the serverless path.

The real Lambda handlers on moto (127.0.0.1): the API function behind a Function URL on loopback, the tick
function invoked as EventBridge Scheduler would. A batch of runs of one deployment is created through the API,
dispatched by a tick (claim, run token, submission to the recording pusher), run by the real in-container
runner (``pushpool.runner``: who am I, read the run and the deployment, RUNNING, the flow, COMPLETED, logs
off), and cleaned up by the next tick's reconciler. Every DynamoDB request of the functions goes through
:class:`~tests.benchmarks.dynamodb_capacity.CapacityMeter`, which computes the units DynamoDB would bill.

Printed: write and read units per run in each phase, what they were spent on, the dollars per million runs at
published on-demand prices, and the same for a tick with nothing to do (the cost at rest). ``--update-docs``
writes the table into docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

from tests.benchmarks.dynamodb_capacity import READ_PRICE_PER_MILLION, WRITE_PRICE_PER_MILLION, CapacityMeter, Totals

PHASES = ("create", "dispatch", "runner", "reconcile")
#: What this benchmark measured before the changes it was written for (78a60c8, the same harness): write units,
#: read units per run's life. The table prints today's figures against it.
BEFORE = (92.0, 36.7)
FLOW = textwrap.dedent('''
    from pushpool import flow

    @flow
    def etl(rows: int = 3):
        return rows * 2
''')


def ecs_task_arn(run_id: str) -> str:
    return f"arn:aws:ecs:eu-west-1:123456789012:task/pushpool-flows/{run_id.replace('-', '')}"


def ecs_shaped(pusher: Any) -> Any:
    """The recording pusher answering as the ECS pusher does: a task ARN, the task's console page and its log
    stream's page (what a run item carries after submission: a real-sized item, not a test-sized one)."""
    from pushpool.pushers.base import Submission

    record = pusher.submit

    def submit(job: Any) -> Submission:
        record(job)
        task = job.flow_run_id.replace("-", "")
        region = "https://eu-west-1.console.aws.amazon.com"
        return Submission(
            infra_id=ecs_task_arn(job.flow_run_id),
            console_url=f"{region}/ecs/v2/clusters/pushpool-flows/tasks/{task}/configuration?region=eu-west-1",
            logs_url=f"{region}/cloudwatch/home?region=eu-west-1#logsV2:log-groups/log-group/$252Fpushpool$252Fflows"
                     f"/log-events/pushpool$252Fflow$252F{task}")

    pusher.submit = submit
    return pusher


def measure(runs: int) -> tuple[CapacityMeter, Totals]:
    """The meter after ``runs`` lifecycles, and the totals of one tick with nothing to do."""
    from pushpool import runner
    from pushpool.client import PushpoolClient
    from pushpool.control_plane import lambda_handler
    from pushpool.control_plane.bootstrap import bootstrap
    from pushpool.control_plane.settings import Settings
    from pushpool.control_plane.storage.dynamodb import DynamoDbStore
    from pushpool.pushers.base import PUSHER_TYPES, InfraState, InfraStatus, PusherContext, PusherRegistry
    from tests.fakes.aws import REGION, start_moto
    from tests.fakes.function_url import FunctionUrl, LambdaContext
    from tests.fakes.pushers import RecordingPusher

    PUSHER_TYPES["fake:push"] = "tests.fakes.pushers:RecordingPusher"  # as tests/conftest.py registers it
    moto, server = start_moto()
    home = Path(tempfile.mkdtemp(prefix="pushpool-bench-"))
    (home / "flows.py").write_text(FLOW)
    env = {"AWS_ENDPOINT_URL": moto.url, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_DEFAULT_REGION": REGION, "PUSHPOOL_RUN_LOGS": "off"}
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    cwd = os.getcwd()
    try:
        DynamoDbStore("pushpool", region=REGION, create_table=True).close()
        key_id = moto.client("kms").create_key()["KeyMetadata"]["KeyId"]
        pusher = ecs_shaped(RecordingPusher())
        with FunctionUrl(lambda_handler.api_handler) as url:
            settings = Settings(store="dynamodb", dynamodb_table="pushpool", kms_key_id=key_id, home=home / "lambda",
                                public_api_url=url.url)
            registry = PusherRegistry(PusherContext(state_dir=home, api_url=url.url), overrides={"fake:push": pusher})
            lambda_handler._runtime = rt = lambda_handler.build_runtime(settings, pushers=registry)
            workspace, key = bootstrap(rt.ctx)
            client = PushpoolClient(api_url=url.url, api_key=key, workspace=workspace)
            client.create_work_pool("fast", "fake:push")
            deployment = client.apply_deployment(flow_name="etl", name="nightly", entrypoint="flows.py:etl",
                                                 work_pool_name="fast", parameters={"rows": 5}, tags=["etl"])
            meter = CapacityMeter(rt.ctx.store.table.client, "pushpool")

            def tick() -> dict[str, Any]:
                return lambda_handler.tick_handler({"source": "pushpool.schedule"}, LambdaContext("tick", 5))

            def lifecycles(count: int, phase: Any) -> None:
                with phase("create"):
                    ids = [client.create_flow_run(deployment["id"])["id"] for _ in range(count)]
                with phase("dispatch"):
                    dispatched = tick()["dispatched"]
                assert dispatched == count, f"dispatched {dispatched} of {count}"
                with phase("runner"):
                    for job in [j for j in pusher.jobs if j.flow_run_id in ids]:
                        with PushpoolClient(url.url, job.env["PUSHPOOL_RUN_TOKEN"]) as as_runner:
                            assert runner.run_with(as_runner, job.flow_run_id, None) == 0
                        pusher.statuses[ecs_task_arn(job.flow_run_id)] = InfraStatus(InfraState.EXITED, 0)
                with phase("reconcile"):
                    tick()
                final = {(r["state"]["type"], r["cleaned_up"]) for r in map(client.read_flow_run, ids)}
                assert final == {("COMPLETED", True)}, final

            os.chdir(home)
            # A container's first run pays once for what it then keeps (the run-token signing key, ...): one run
            # before the measured ones, as a container that has been serving for a while.
            lifecycles(1, lambda name: contextlib.nullcontext())
            with meter.phase("idle tick") as idle:
                tick()
            lifecycles(runs, meter.phase)
            rt.dispatcher.close()
            lambda_handler._runtime = None
        return meter, idle
    finally:
        os.chdir(cwd)
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        server.stop()


def table(meter: CapacityMeter, idle: Totals, runs: int) -> str:
    """Units per run for each phase (a phase's ticks include what an idle tick costs, taken out here)."""
    rows = ["| phase (per run) | write units | read units | written (units) |", "|---|---:|---:|---|"]
    total_w = total_r = 0.0
    for name in PHASES:
        phase = meter.phases[name]
        ticks = 1 if name in ("dispatch", "reconcile") else 0
        w = (phase.write_units - ticks * idle.write_units) / runs
        r = (phase.read_units - ticks * idle.read_units) / runs
        total_w, total_r = total_w + w, total_r + r
        spent = ", ".join(f"{kind} {units / runs:.1f}" for kind, units in phase.writes_by.most_common(6))
        rows.append(f"| {name} | {w:.1f} | {r:.1f} | {spent} |")
    dollars = total_w * WRITE_PRICE_PER_MILLION + total_r * READ_PRICE_PER_MILLION
    rows.append(f"| **a run's life** | **{total_w:.1f}** | **{total_r:.1f}** | "
                f"**${dollars:.2f} of DynamoDB per million runs** |")
    before_w, before_r = BEFORE
    before = before_w * WRITE_PRICE_PER_MILLION + before_r * READ_PRICE_PER_MILLION
    rows.append(f"| before 7 December's changes (78a60c8) | {before_w:.1f} | {before_r:.1f} | ${before:.2f}: now "
                f"{total_w / before_w:.0%} of the write units, {dollars / before:.0%} of the dollars |")
    rows.append(f"| a tick with nothing to do | {idle.write_units:.1f} | {idle.read_units:.1f} | "
                f"${idle.dollars_per_million() * 43_800 / 1e6:.3f} a month at one a minute |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--update-docs", action="store_true")
    args = parser.parse_args(argv)
    with contextlib.redirect_stdout(sys.stderr):  # the runner prints; the table alone goes to stdout
        meter, idle = measure(args.runs)
    text = table(meter, idle, args.runs)
    print(text)
    if args.update_docs:
        from tests.benchmarks.systems import write_doc_block

        write_doc_block("dynamodb-run-cost", text, "DynamoDB units per run",
                        "`make bench-lambda` (tests/benchmarks/dynamodb_run_cost.py): the Lambda handlers on moto, "
                        f"{args.runs} runs created, dispatched, run by the real runner and cleaned up; units computed "
                        "from each request's items by DynamoDB's published rules:")
    return 0


if __name__ == "__main__":
    sys.exit(main())
