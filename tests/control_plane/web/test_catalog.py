"""The dashboard's deployment pages over HTTP: the Run form from a parameter schema, typed values, clear
refusals, and who may run or pause."""

from __future__ import annotations

import pytest

from tests.control_plane.web.test_pages import csrf_of, sign_in

SCHEMA = {"type": "object", "required": ["rows"], "properties": {
    "rows": {"type": "integer", "title": "Rows"}, "ratio": {"type": "number", "default": 0.5},
    "dry_run": {"type": "boolean", "default": False}, "name": {"type": "string", "default": "<b>x</b>"},
    "columns": {"type": "array", "items": {"type": "string"}, "default": ["a"]}}}


@pytest.fixture
def dep(api, fake_pusher):
    api.pool()
    return api.deployment(parameter_schema=SCHEMA)


def test_the_run_form_follows_the_schema_and_starts_a_typed_run(app, api, dep):
    client = sign_in(app, api.key)
    page = client.get(f"/w/{api.workspace}/deployments/{dep['id']}")
    assert page.status_code == 200
    assert 'name="param.rows" type="number" value="" required' in page.text
    assert 'name="param.ratio" type="number" step="any" value="0.5"' in page.text
    assert 'name="param.dry_run" type="checkbox"' in page.text and "&lt;b&gt;x&lt;/b&gt;" in page.text
    assert "[&#34;a&#34;]</textarea>" in page.text
    answer = client.post(f"/w/{api.workspace}/deployments/{dep['id']}/run", data={
        "csrf": csrf_of(page.text), "param.rows": "7", "param.ratio": "", "param.dry_run": "on",
        "param.columns": '["a", "b"]', "job_variables": ""})
    assert answer.status_code == 303, answer.text
    run_id = answer.headers["location"].rsplit("/", 1)[1]
    run = api.ok("GET", api.ws(f"/flow_runs/{run_id}"))
    # an empty field is left out: the flow's own default applies when it runs
    assert run["parameters"] == {"rows": 7, "dry_run": True, "columns": ["a", "b"]}


@pytest.mark.parametrize("data, says", [
    ({"param.rows": "seven"}, "parameters.rows: &#39;seven&#39; is not a integer"),
    ({"param.rows": "1", "param.columns": "[oops"}, "parameters.columns"),
    ({"param.rows": "1", "job_variables": "{nope"}, "job_variables: not JSON"),
    ({"param.rows": "1", "job_variables": "[1]"}, "job_variables: write a JSON object"),
    ({"param.ratio": "1"}, "rows"),  # required, missing: the API's own validation names it
])
def test_bad_form_values_are_refused_naming_the_field_and_create_nothing(app, api, dep, data, says):
    client = sign_in(app, api.key)
    token = csrf_of(client.get(f"/w/{api.workspace}/deployments/{dep['id']}").text)
    answer = client.post(f"/w/{api.workspace}/deployments/{dep['id']}/run", data={"csrf": token, **data})
    assert answer.status_code == 422 and says in answer.text, answer.text
    assert api.ok("GET", api.ws("/flow_runs")) == []


def test_a_viewer_has_no_run_form_and_cannot_post_one(app, api, dep):
    viewer = sign_in(app, api.user("vera", role="viewer"))
    page = viewer.get(f"/w/{api.workspace}/deployments/{dep['id']}")
    assert page.status_code == 200 and "param.rows" not in page.text and ">Run</button>" not in page.text
    refused = viewer.post(f"/w/{api.workspace}/deployments/{dep['id']}/run",
                          data={"csrf": csrf_of(page.text), "param.rows": "1"})
    assert refused.status_code == 403 and api.ok("GET", api.ws("/flow_runs")) == []


def test_a_deployment_pauses_and_resumes_for_writers_only(app, api, dep):
    client = sign_in(app, api.key)
    url = f"/w/{api.workspace}/deployments/{dep['id']}"
    page = client.get(url)
    assert ">Pause schedules</button>" in page.text
    assert client.post(f"{url}/pause", data={"csrf": csrf_of(page.text)}).headers["location"] == url
    assert api.ok("GET", api.ws(f"/deployments/{dep['id']}"))["paused"] is True
    runner = sign_in(app, api.user("rick", role="runner"))
    page = runner.get(url)
    assert "Resume schedules" not in page.text and ">Run</button>" in page.text  # a runner runs, never changes
    assert runner.post(f"{url}/resume", data={"csrf": csrf_of(page.text)}).status_code == 403
    assert client.post(f"{url}/resume", data={"csrf": csrf_of(client.get(url).text)}).status_code == 303
    assert api.ok("GET", api.ws(f"/deployments/{dep['id']}"))["paused"] is False


def test_a_deployments_backfills_show_their_progress_and_pause_resume_and_cancel_for_runners(app, api, clock):
    from datetime import UTC, datetime, timedelta

    api.pool()
    daily = api.deployment("daily", schedules=[{"cron": "0 6 * * *"}], overlap="skip",
                           late_run_policy={"mode": "skip_late", "skip_after_seconds": 600})
    end = datetime(2026, 6, 1, tzinfo=UTC)
    backfill = api.ok("POST", api.ws(f"/deployments/{daily['id']}/backfills"), json={
        "start": (end - timedelta(days=5)).isoformat(), "end": end.isoformat(), "max_active": 2})
    url = f"/w/{api.workspace}/deployments/{daily['id']}"
    viewer = sign_in(app, api.user("vic", role="viewer"))
    seen = viewer.get(url).text
    assert "0 ended, 2 active, 0 skipped of 5" in seen and f"runs?tag=backfill:{backfill['id']}" in seen
    assert "<dd>skip</dd>" in seen and "<dd>within 600 s</dd>" in seen
    assert ">Pause</button>" not in seen  # a viewer steers nothing
    refused = viewer.post(f"{url}/backfills/{backfill['id']}/pause", data={"csrf": csrf_of(seen)})
    assert refused.status_code == 403
    runner = sign_in(app, api.user("rita", role="runner"))
    page = runner.get(url)
    assert ">Pause</button>" in page.text and ">Cancel</button>" in page.text
    assert runner.post(f"{url}/backfills/{backfill['id']}/pause",
                       data={"csrf": csrf_of(page.text)}).headers["location"] == url
    assert api.ok("GET", api.ws(f"/backfills/{backfill['id']}"))["state"] == "PAUSED"
    page = runner.get(url)
    assert ">Resume</button>" in page.text
    assert runner.post(f"{url}/backfills/{backfill['id']}/cancel", data={"csrf": csrf_of(page.text)}).status_code == 303
    assert api.ok("GET", api.ws(f"/backfills/{backfill['id']}"))["state"] == "CANCELLED"
    assert ">Resume</button>" not in runner.get(url).text
