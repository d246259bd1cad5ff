"""The overview page over HTTP: the chart's counts by state in a window, late runs, pools' health, upcoming runs."""

from __future__ import annotations

import re
from datetime import timedelta

from pushpool.control_plane.models import State, StateType
from tests.control_plane.web.test_pages import sign_in


def section(page: str, name: str) -> str:
    return page.split(f'id="{name}"')[1].split("</section>")[0]


def set_state(ctx, run: dict, kind: StateType) -> None:
    ctx.store.set_flow_run_state(run["id"], State(type=kind, name=kind.value.capitalize(), timestamp=ctx.clock.now()))


def test_the_overview_counts_runs_by_state_and_lists_late_failed_and_upcoming(app, api, ctx, clock, fake_pusher):
    api.pool(paused=True)  # nothing is dispatched: a due run waits, and is late after a minute
    dep = api.deployment()
    done, broken, late = api.run(dep["id"]), api.run(dep["id"]), api.run(dep["id"])
    upcoming = api.run(dep["id"], scheduled_time=(clock.now() + timedelta(days=3)).isoformat())
    set_state(ctx, done, StateType.COMPLETED)
    set_state(ctx, broken, StateType.FAILED)
    clock.advance(minutes=5)
    client = sign_in(app, api.key)
    page = client.get(f"/w/{api.workspace}/").text
    counts = dict(re.findall(r'class="label">(\w+)</text>.*?class="count">(\d+)</text>', page, re.S))
    assert counts == {"Failed": "1", "Scheduled": "1", "Completed": "1"}  # the upcoming run is not in the window
    assert re.findall(r'<rect [^>]*width="(\d+)"', page) == ["460", "460", "460"]  # equal counts, equal bars
    assert late["name"] in section(page, "late") and done["name"] not in section(page, "late")
    assert broken["name"] in section(page, "failed") and done["name"] not in section(page, "failed")
    assert upcoming["name"] in section(page, "upcoming") and late["name"] not in section(page, "upcoming")
    assert "paused" in section(page, "pools") and "2 waiting" in section(page, "pools")  # late, upcoming
    assert client.get(f"/w/{api.workspace}/?window=1y").status_code == 422
    clock.advance(days=2)
    assert client.get(f"/w/{api.workspace}/").status_code == 303  # a session lasts 12 hours
    client = sign_in(app, api.key)
    assert "No runs scheduled in the last 24h." in client.get(f"/w/{api.workspace}/").text
    week = client.get(f"/w/{api.workspace}/?window=7d").text
    assert dict(re.findall(r'class="label">(\w+)</text>.*?class="count">(\d+)</text>', week, re.S)) == counts


def test_a_pool_shows_the_last_submission_error_of_a_waiting_run(app, api, ctx, fake_pusher):
    api.pool()
    run = api.run(api.deployment()["id"])
    ctx.store.update_flow_run(run["id"], {"submission_error": "ThrottlingException: <slow down>"})
    pools = section(sign_in(app, api.key).get(f"/w/{api.workspace}/").text, "pools")
    assert "last submission error: ThrottlingException: &lt;slow down&gt;" in pools
