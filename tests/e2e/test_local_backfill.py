"""A backfill on a real server and ``local:push``: each occurrence runs as a process that knows "its" time."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pushpool.backfills import backfill
from tests.e2e.local_project import local_project
from tests.live_server import wait_until

DAILY_FLOW = textwrap.dedent('''
    from pushpool import flow, scheduled_time

    @flow
    def daily(table: str = "orders") -> None:
        print(f"loading {table} for {scheduled_time().date().isoformat()}")
''')


def test_a_backfill_runs_each_day_as_a_process_that_processes_its_own_day(live, tmp_path: Path):
    project = local_project(live, tmp_path, DAILY_FLOW)
    project.deploy("daily", schedules=[{"cron": "0 6 * * *"}])
    end = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    started = backfill("daily/d", end - timedelta(days=3), end, max_active=2, parameters={"table": "refunds"},
                       client=project.client)
    assert started["total"] == 3 and started["max_active"] == 2

    def ended() -> bool:
        return project.get(f"/backfills/{started['id']}")["state"] == "COMPLETED"

    wait_until(ended, "the backfill completed", timeout=90)
    done = project.get(f"/backfills/{started['id']}")
    assert done["progress"]["finished"] == {"COMPLETED": 3}
    runs = project.get("/flow_runs", tag=f"backfill:{started['id']}")
    lines = sorted(line for run in runs for line in project.get(f"/flow_runs/{run['id']}/logs")["lines"]
                   if line.startswith("loading"))
    assert lines == [f"loading refunds for {(end - timedelta(days=d)).date().isoformat()}" for d in (3, 2, 1)]
