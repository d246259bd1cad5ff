"""``deployment backfill`` (dry run, progress bar, exit code), the ``backfill`` group, and a deployment's overlap
and catch-up, from the CLI against a real server whose local pool runs the flows."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from typer.testing import CliRunner

from pushpool.cli.main import app
from tests.sdk.cli.conftest import write_project


@pytest.fixture
def run(server, monkeypatch):
    monkeypatch.setenv("PUSHPOOL_HOME", str(server.home))
    runner = CliRunner()

    def invoke(*args: str, code: int = 0):
        result = runner.invoke(app, list(args), env={"COLUMNS": "200"})
        assert result.exit_code == code, f"{args}: {result.output}\n{result.exception!r}"
        return result

    return invoke


@pytest.fixture
def deployed(server, run, tmp_path):
    """greet/daily on a local pool, every day at 06:00 UTC (the project's flow prints its greeting)."""
    if "backfills" not in {p["name"] for p in json.loads(run("work-pool", "ls", "-o", "json").output)}:
        run("work-pool", "create", "backfills", "--type", "local:push")
    script = write_project(tmp_path / "project", name="daily", pool="backfills")
    script.write_text(script.read_text().replace('cron="* * * * *"', 'cron="0 6 * * *"'))
    done = server.python(script)
    assert done.returncode == 0, done.stderr
    return "greet/daily"


def test_a_dry_run_a_backfill_followed_to_the_end_and_its_listing(run, deployed):
    end = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    window = ["--start", (end - timedelta(days=3)).isoformat(), "--end", end.isoformat()]
    plan = run("deployment", "backfill", deployed, *window, "--dry-run")
    assert "3 run(s) to create, 0 occurrence(s) to skip" in plan.output
    assert json.loads(run("backfill", "ls", "-o", "json").output) == []  # the dry run made nothing
    followed = run("deployment", "backfill", deployed, *window, "--max-active", "2", "--param", "name=past")
    assert "3 occurrence(s)" in followed.output and "Backfill completed: 3 completed, 0 skipped" in followed.output
    [listed] = json.loads(run("backfill", "ls", "--deployment", deployed, "-o", "json").output)
    assert listed["state"] == "COMPLETED" and listed["max_active"] == 2
    again = run("deployment", "backfill", deployed, *window, "--reprocess", "failed", "--dry-run", "-o", "json")
    assert json.loads(again.output)["to_create"] == 0
    assert "it has a COMPLETED run" in run("deployment", "backfill", deployed, *window, "--dry-run").output
    started = json.loads(run("deployment", "backfill", deployed, *window, "--reprocess", "all", "--no-wait",
                             "-o", "json").output)
    assert "cancelled" in run("backfill", "cancel", started["id"], "--yes").output
    assert "already CANCELLED" in str(run("backfill", "pause", started["id"], code=1).exception)


def test_bad_backfill_input_is_one_clear_line(server, deployed):
    now = datetime.now(UTC)
    line = server.fails("deployment", "backfill", deployed, "--start", now.isoformat(), "--end",
                        (now + timedelta(days=1)).isoformat())
    assert "end: a backfill covers the past" in line
    assert "--start" in server.fails("deployment", "backfill", deployed, "--start", "yesterday", "--end",
                                     now.isoformat())
    assert "--reprocess" in server.fails("deployment", "backfill", deployed, "--start", now.isoformat(), "--end",
                                         now.isoformat(), "--reprocess", "some")


def test_overlap_and_catch_up_are_set_and_shown(run, server, deployed):
    out = run("deployment", "update", deployed, "--overlap", "skip", "--catch-up", "within:600").output
    assert "overlap skip, catch-up within 600s" in out
    shown = json.loads(run("deployment", "inspect", deployed).output)
    assert shown["overlap"] == "skip" and shown["late_run_policy"] == {"mode": "skip_late", "skip_after_seconds": 600}
    assert "catch-up the pool's" in run("deployment", "update", deployed, "--catch-up", "pool").output
    assert "--overlap" in server.fails("deployment", "update", deployed, "--overlap", "sometimes")
    assert "--catch-up" in server.fails("deployment", "update", deployed, "--catch-up", "later")
