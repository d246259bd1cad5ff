"""The new-user journey, scripted end to end against a real ``pushpool server start``."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

from tests.sdk.cli.conftest import write_project


def future_auto_runs(cli) -> list[dict]:
    runs = cli.json("flow-run", "ls", "--upcoming", "--state", "SCHEDULED", "--deployment", "greet/dep",
                    "--limit", "1000")
    now = datetime.now(UTC)
    return [r for r in runs if r["auto_scheduled"] and datetime.fromisoformat(r["scheduled_time"]) > now]


def test_new_user_journey(server, tmp_path):
    cli = server
    # The server wrote the first key into the local profile: no key handling.
    assert "PUSHPOOL_API_KEY" in cli.ok("config", "view")
    cli.ok("work-pool", "create", "demo", "--type", "local:push")

    project = tmp_path / "project"
    result = cli.python(write_project(project))
    assert result.returncode == 0, result.stderr
    deployment = cli.json("deployment", "ls")
    assert [d["flow_name"] + "/" + d["name"] for d in deployment] == ["greet/dep"]
    assert deployment[0]["entrypoint"] == "flows/greet.py:greet"
    assert deployment[0]["job_variables"]["working_dir"] == str(project.resolve())

    run = cli.run("deployment", "run", "greet/dep", "--param", "name=x", "--watch")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "COMPLETED" in run.stdout

    # The cron schedule may put a run of its own next to ours: pick the one we started.
    recent = cli.json("flow-run", "ls", "--deployment", "greet/dep", "--limit", "20")
    [latest] = [r for r in recent if r["parameters"].get("name") == "x"]
    assert latest["state"]["type"] == "COMPLETED" and latest["parameters"] == {"name": "x", "times": 2}
    assert latest["infra_id"].startswith("pid-") and latest["console_url"].startswith("file://")
    assert latest["id"] in {r["id"] for r in cli.json("flow-run", "ls", "--flow", "greet", "--limit", "20")}
    assert cli.json("flow-run", "ls", "--flow", "no-such-flow") == []
    table = cli.ok("flow-run", "ls", "--wide")
    assert latest["infra_id"] in table and latest["name"] in table
    assert "hello x" in cli.ok("flow-run", "logs", latest["id"])
    # Narrow, as in a pipe: the unique end of each id and the whole name, each accepted to name the run.
    narrow = cli.ok("flow-run", "ls", COLUMNS="80")
    tail = latest["id"].replace("-", "")[-12:]
    assert tail in narrow and latest["name"] in narrow and max(len(line) for line in narrow.splitlines()) <= 80
    assert "hello x" in cli.ok("flow-run", "logs", tail)
    assert json.loads(cli.ok("flow-run", "inspect", tail))["id"] == latest["id"]

    assert future_auto_runs(cli), "a cron deployment has runs scheduled ahead"
    out = cli.ok("deployment", "schedule", "pause", "--all", "--yes")
    assert "Paused 1 schedule(s) of 1 deployment(s)" in out
    assert future_auto_runs(cli) == []
    time.sleep(2.5)  # several scheduler passes (1 s apart on this server): still nothing new
    assert future_auto_runs(cli) == []

    out = cli.ok("deployment", "schedule", "resume", "--all", "--yes")
    assert "Resumed 1 schedule(s)" in out
    assert len(future_auto_runs(cli)) >= 3


def test_a_failing_run_makes_watch_exit_non_zero(server, tmp_path):
    cli = server
    cli.run("work-pool", "create", "demo", "--type", "local:push")
    project = tmp_path / "failing"
    (project / "flows").mkdir(parents=True)
    (project / "flows" / "bad.py").write_text(
        "from pushpool import flow\n\n@flow\ndef bad():\n    raise RuntimeError('no luck')\n\n"
        "if __name__ == '__main__':\n    bad.deploy(name='once', work_pool_name='demo')\n")
    assert cli.python(project / "flows" / "bad.py").returncode == 0
    run = cli.run("deployment", "run", "bad/once", "--watch")
    assert run.returncode == 1
    assert "FAILED" in run.stdout and "RuntimeError: no luck" in run.stdout


def test_run_options(server, tmp_path):
    cli = server
    cli.run("work-pool", "create", "demo", "--type", "local:push")
    assert cli.python(write_project(tmp_path / "p")).returncode == 0
    created = cli.json("deployment", "run", "greet/dep", "--params", '{"name": "acme"}', "--start-in", "2 hours",
                       "--flow-run-name", "customer-{name}", "--tag", "adhoc")
    assert created["name"] == "customer-acme" and "adhoc" in created["tags"]
    delay = datetime.fromisoformat(created["scheduled_time"]) - datetime.now(UTC)
    assert 7100 < delay.total_seconds() <= 7200
    assert cli.ok("flow-run", "cancel", created["id"], "--yes").strip().endswith("is CANCELLED")


SLOW_FLOW = '''
import time
from pushpool import flow


@flow
def slow():
    print("first line", flush=True)
    time.sleep(3)
    print("second line", flush=True)


if __name__ == "__main__":
    slow.deploy(name="slow", work_pool_name="demo")
'''


def test_watch_shows_every_state_and_logs_follow_until_the_run_is_final(server, tmp_path):
    import subprocess
    import sys

    cli = server
    cli.run("work-pool", "create", "demo", "--type", "local:push")
    project = tmp_path / "slow"
    (project / "flows").mkdir(parents=True)
    (project / "flows" / "slow.py").write_text(SLOW_FLOW)
    assert cli.python(project / "flows" / "slow.py").returncode == 0
    created = json.loads(cli.ok("deployment", "run", "slow/slow", "--output", "json"))
    deadline = time.monotonic() + 30
    while "first line" not in cli.run("flow-run", "logs", created["id"]).stdout:  # it may not be dispatched yet
        assert time.monotonic() < deadline, "the run never started"
        time.sleep(0.2)
    follower = subprocess.run([sys.executable, "-m", "pushpool.cli.main", "flow-run", "logs", "-f", created["id"]],
                              capture_output=True, text=True, env=cli.env(), timeout=60)
    assert follower.returncode == 0 and "first line" in follower.stdout and "second line" in follower.stdout
    watched = cli.run("deployment", "run", "slow/slow", "--watch")
    assert watched.returncode == 0, watched.stdout + watched.stderr
    order = [state for state in ("SCHEDULED", "PENDING", "RUNNING", "COMPLETED") if state in watched.stdout]
    assert order == ["SCHEDULED", "PENDING", "RUNNING", "COMPLETED"], watched.stdout
    positions = [watched.stdout.index(f": {state} (") for state in order]
    assert positions == sorted(positions)


def test_a_teams_first_day_workspaces_users_and_members(server, tmp_path):
    from tests.sdk.cli.conftest import Cli

    admin = server
    url = {r["setting"]: r["value"] for r in admin.json("config", "view")}["PUSHPOOL_API_URL"]
    assert "Created workspace 'team'" in admin.ok("workspace", "create", "team")
    assert "team" in [w["workspace_name"] for w in admin.json("whoami")["memberships"]]
    ann_key = admin.ok("user", "create", "ann@example.com", "--workspace", "team", "--role", "developer"
                       ).strip().splitlines()[-1]
    bob_key = admin.json("user", "create", "bob@example.com")["key"]
    assert {"ann@example.com", "bob@example.com"} <= {u["name"] for u in admin.json("user", "ls")}

    in_team = {"PUSHPOOL_WORKSPACE": "team"}
    assert "--role: 'boss' is not a role" in admin.fails("member", "add", "bob@example.com", "--role", "boss",
                                                        **in_team)
    assert "Added 'bob@example.com' to workspace 'team' as viewer" in admin.ok(
        "member", "add", "bob@example.com", "--role", "viewer", **in_team)
    roles = {m["actor"]["name"]: m["role"] for m in admin.json("member", "ls", **in_team)}
    assert roles == {"admin": "owner", "ann@example.com": "developer", "bob@example.com": "viewer"}

    # Bob, on his own machine: logs in with the key he was handed and sees only what a viewer sees.
    bob = Cli(home=tmp_path / "bob-home", cwd=tmp_path)
    assert "workspace 'team'" in bob.ok("login", "--key", bob_key, "--url", url + "/api")
    assert [(w["workspace_name"], w["role"]) for w in bob.json("whoami")["memberships"]] == [("team", "viewer")]
    assert bob.json("member", "ls")  # any member may see who is in the workspace
    assert "lacks the 'admin' permission" in bob.fails("member", "add", "ann@example.com")
    assert "lacks the 'write' permission" in bob.fails("work-pool", "create", "mine", "--type", "local:push")
    assert "Only an instance administrator" in bob.fails("user", "ls")

    assert "is now runner (was viewer)" in admin.ok("member", "set-role", "bob@example.com", "runner", **in_team)
    assert bob.json("whoami")["memberships"][0]["role"] == "runner"
    assert "last owner" in admin.fails("member", "remove", "admin", "--yes", **in_team)
    assert "Removed 'bob@example.com'" in admin.ok("member", "remove", "bob@example.com", "--yes", **in_team)
    assert bob.json("whoami")["memberships"] == []
    assert "not found" in bob.fails("work-pool", "ls").lower()
    assert "no member 'bob@example.com'" in admin.fails("member", "remove", "bob@example.com", "--yes", **in_team)

    ann = Cli(home=tmp_path / "ann-home", cwd=tmp_path)
    ann.ok("login", "--key", ann_key, "--url", url)
    assert "Created secret block" in ann.ok("block", "create", "ann-token", "--type", "secret", "--field",
                                            "value=s3cret")  # a developer may write
    assert "Only an instance administrator" in ann.fails("workspace", "create", "anns")


FLAKY_FLOW = '''
import os
from pushpool import flow


@flow
def flaky(day: str = "2026-01-01"):
    marker = os.path.join(os.path.dirname(__file__), "tried")
    if not os.path.exists(marker):
        open(marker, "w").close()
        raise RuntimeError("upstream not ready")
    print(f"processed {day}")


if __name__ == "__main__":
    flaky.deploy(name="daily", work_pool_name="demo", concurrency_limit=2, collision_strategy="CANCEL_NEW")
'''


def test_the_housekeeping_a_prefect_user_reaches_for(server, tmp_path):
    """Queues changed in place, flows listed, a failed run retried with its parameters, old runs deleted."""
    cli = server
    cli.run("work-pool", "create", "demo", "--type", "local:push")
    cli.ok("work-queue", "create", "fast", "--pool", "demo")
    out = cli.ok("work-queue", "update", "fast", "--pool", "demo", "--priority", "5", "--concurrency-limit", "3")
    assert "priority 5, concurrency limit 3" in out
    cli.ok("work-queue", "update", "fast", "--pool", "demo", "--no-concurrency-limit")
    [fast] = [q for q in cli.json("work-queue", "ls", "--pool", "demo") if q["name"] == "fast"]
    assert (fast["priority"], fast["concurrency_limit"]) == (5, None)
    assert "nothing to change" in cli.fails("work-queue", "update", "fast", "--pool", "demo")

    project = tmp_path / "flaky"
    (project / "flows").mkdir(parents=True)
    (project / "flows" / "flaky.py").write_text(FLAKY_FLOW)
    assert cli.python(project / "flows" / "flaky.py").returncode == 0
    [flaky] = [f for f in cli.json("flow", "ls") if f["name"] == "flaky"]
    assert flaky["deployments"] == ["daily"] and "flaky" in cli.ok("flow", "ls")
    deployment = json.loads(cli.ok("deployment", "inspect", "flaky/daily"))
    assert (deployment["concurrency_limit"], deployment["collision_strategy"]) == (2, "CANCEL_NEW")

    failed = cli.run("deployment", "run", "flaky/daily", "--param", "day=2026-05-01", "--watch")
    assert failed.returncode == 1 and "upstream not ready" in failed.stdout
    [first] = cli.json("flow-run", "ls", "--deployment", "flaky/daily", "--state", "FAILED")
    retried = cli.run("flow-run", "retry", first["id"], "--watch")  # random names may repeat; ids do not
    assert retried.returncode == 0 and "COMPLETED" in retried.stdout, retried.stdout + retried.stderr
    runs = cli.json("flow-run", "ls", "--deployment", "flaky/daily")
    [second] = [r for r in runs if r["retry_of"] == first["id"]]
    assert second["state"]["type"] == "COMPLETED" and second["parameters"] == {"day": "2026-05-01"}
    assert "processed 2026-05-01" in cli.ok("flow-run", "logs", second["id"])
    later = cli.json("deployment", "run", "flaky/daily", "--start-in", "1 hour")
    assert "only a finished run can be retried" in cli.fails("flow-run", "retry", later["id"])

    out = cli.ok("flow-run", "delete", first["id"], second["id"].replace("-", "")[-12:], later["id"], "--yes")
    assert f"Deleted flow run {first['name']!r}" in out and f"Deleted flow run {second['name']!r}" in out
    assert cli.json("flow-run", "ls", "--deployment", "flaky/daily") == []
    assert "not found" in cli.fails("flow-run", "inspect", first["id"]).lower()

    assert "Paused deployment" in cli.ok("deployment", "pause", "flaky/daily")
    assert "Resumed deployment" in cli.ok("deployment", "resume", "flaky/daily")


TASK_FLOW = '''
from pushpool import flow, task


@task(retries=1, retry_delay_seconds=0)
def fetch(i: int) -> int:
    if i == 2:
        raise ValueError("row 2 is bad")
    return i


@flow
def etl(n: int = 4):
    results = [f.result(raise_on_failure=False) for f in fetch.map(range(n))]
    return sum(r for r in results if isinstance(r, int))


if __name__ == "__main__":
    etl.deploy(name="tasks", work_pool_name="demo")
'''


def test_a_prefect_style_flow_of_tasks_and_its_task_runs(server, tmp_path):
    cli = server
    cli.run("work-pool", "create", "demo", "--type", "local:push")
    project = tmp_path / "etl"
    (project / "flows").mkdir(parents=True)
    (project / "flows" / "etl.py").write_text(TASK_FLOW)
    assert cli.python(project / "flows" / "etl.py").returncode == 0
    watched = cli.run("deployment", "run", "etl/tasks", "--watch")
    assert watched.returncode == 0, watched.stdout + watched.stderr
    [run] = cli.json("flow-run", "ls", "--deployment", "etl/tasks")
    rows = {t["name"]: t for t in cli.json("task-run", "ls", "--flow-run", run["id"])}
    assert sorted(rows) == ["fetch-0", "fetch-1", "fetch-2", "fetch-3"]
    assert (rows["fetch-2"]["state_type"], rows["fetch-2"]["attempts"]) == ("FAILED", 2)
    table = cli.ok("task-run", "ls", "--flow-run", run["id"], "--state", "failed")
    assert "fetch-2" in table and "row 2 is bad" in table and "fetch-1" not in table
    detail = json.loads(cli.ok("flow-run", "inspect", run["id"]))
    assert detail["task_runs"]["by_state"] == {"COMPLETED": 3, "FAILED": 1}


def test_variables_from_the_cli(server):
    cli = server
    assert "Set variable 'region'" in cli.ok("variable", "set", "region", "eu-west-1", "--tag", "aws")
    cli.ok("variable", "set", "limits", '{"rows": 5}')
    assert json.loads(cli.ok("variable", "get", "limits")) == {"rows": 5}
    assert cli.ok("variable", "get", "region").strip() == '"eu-west-1"'
    assert {v["name"] for v in cli.json("variable", "ls")} >= {"region", "limits"}
    assert "already exists" in cli.fails("variable", "set", "region", "x", "--no-overwrite")
    cli.ok("variable", "delete", "region", "--yes")
    assert "not found" in cli.fails("variable", "get", "region").lower()


def test_logs_follow_waits_for_a_run_that_has_not_started(server, tmp_path):
    cli = server
    cli.run("work-pool", "create", "demo", "--type", "local:push")
    assert cli.python(write_project(tmp_path / "later", name="later")).returncode == 0
    created = cli.json("deployment", "run", "greet/later", "--param", "name=soon", "--start-in", "2 seconds")
    followed = cli.run("flow-run", "logs", "-f", created["id"])
    assert followed.returncode == 0, followed.stderr
    assert followed.stdout.count("hello soon") == 2  # times=2 from the deployment
