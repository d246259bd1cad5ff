"""The server's own log lines (control_plane/log_format.py): JSON lines with the ids they concern, and never a
pushpool secret, whoever logged it."""

from __future__ import annotations

import io
import json
import logging

import pytest

from pushpool.control_plane.log_format import about, configure_logging
from pushpool.control_plane.services.dispatcher import Dispatcher

TOKEN = "ppr_0190d6a85a3c70008000_abcdefghijklmnopqrstuv"
KEY = "ppu_Zx9y8w7v6u5t4s3r2q1p0onmlkjihg"


@pytest.fixture
def json_logs():
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    out = io.StringIO()
    configure_logging("INFO", "json", stream=out)
    yield lambda: [json.loads(line) for line in out.getvalue().splitlines()]
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)


def test_json_lines_carry_the_ids_and_mask_secrets(json_logs):
    log = logging.getLogger("pushpool.test")
    with about(workspace_id="ws-1", flow_run_id="run-1", pool_id="pool-1"):
        log.warning("the cloud answered with %s and the caller used %s", TOKEN, KEY)
        try:
            raise RuntimeError(f"boom {TOKEN}")
        except RuntimeError:
            log.exception("failed")
    log.info("outside")
    first, second, third = json_logs()
    assert (first["level"], first["logger"], first["workspace_id"], first["flow_run_id"], first["pool_id"]) == \
        ("WARNING", "pushpool.test", "ws-1", "run-1", "pool-1")
    assert "ppr_********" in first["message"] and "ppu_********" in first["message"]
    assert TOKEN not in json.dumps([first, second, third]) and KEY not in json.dumps([first, second, third])
    assert "RuntimeError: boom ppr_********" in second["exception"]
    assert "flow_run_id" not in third and third["time"].endswith("Z")


def test_a_failing_submission_logs_its_run_and_no_token(json_logs, api, ctx, fake_pusher, monkeypatch):
    api.pool()
    run = api.run(api.deployment()["id"])

    def submit(job):
        raise RuntimeError(f"the SDK echoed the environment: {job.env}")  # with the run token in it

    monkeypatch.setattr(fake_pusher, "submit", submit)
    dispatcher = Dispatcher(ctx)
    dispatcher.run_once()
    dispatcher.close()
    lines = [line for line in json_logs() if line.get("flow_run_id") == run["id"]]
    assert lines and lines[0]["level"] == "ERROR" and lines[0]["pool_id"] == run["pool_id"]
    assert "ppr_" not in json.dumps(lines).replace("ppr_********", "")
