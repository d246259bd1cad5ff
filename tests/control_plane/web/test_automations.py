"""The dashboard's automations, webhooks and events over HTTP: enable/disable for writers only (with CSRF),
a deployment's triggers on its page, the events feed's filters and cursor pages, an event's page, a run's
events, and the walls between workspaces."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

import pytest

from pushpool.control_plane.storage.records import ts
from pushpool.control_plane.web.automations import EVENTS_PAGE
from tests.control_plane.web.test_pages import csrf_of, sign_in

TABLE = {"pushpool.resource.id": "warehouse.table.orders", "pushpool.resource.name": "orders"}
COMPLETED = "pushpool.flow-run.Completed"


@pytest.fixture
def world(api, ctx, fake_pusher):
    api.pool()
    upstream, downstream = api.deployment("up"), api.deployment("down")
    trigger = {"expect": [COMPLETED], "match_related": {
        "pushpool.resource.id": f"pushpool.deployment.{upstream['id']}"}}
    api.ok("PUT", api.ws(f"/deployments/{downstream['id']}/triggers"), json=[trigger])
    api.ok("POST", api.ws("/automations"), status=201, json={
        "name": "notify-<b>", "trigger": {"expect": ["pushpool.flow-run.Failed"], "threshold": 3, "within": 600},
        "actions": [{"type": "pause-deployment", "deployment": downstream["id"]}]})
    api.ok("POST", api.ws("/webhooks"), status=201, json={"name": "github", "template": '{"event": "gh.push"}'})
    return {"up": upstream, "down": downstream, "ctx": ctx}


def test_automations_and_webhooks_are_listed_and_writers_enable_and_disable_them(app, api, world):
    client = sign_in(app, api.key)
    page = client.get(f"/w/{api.workspace}/automations")
    assert page.status_code == 200
    assert "notify-&lt;b&gt;" in page.text and "3× pushpool.flow-run.Failed within 600 s" in page.text
    assert "trigger of" in page.text and "flow/down" in page.text and "/hooks/" in page.text
    [automation] = [a for a in api.ok("GET", api.ws("/automations")) if a["name"] == "notify-<b>"]
    url = f"/w/{api.workspace}/automations/{automation['id']}/disable"
    assert client.post(url, data={}).status_code == 403  # no CSRF token
    assert client.post(url, data={"csrf": csrf_of(page.text)}).status_code == 303
    assert api.ok("GET", api.ws(f"/automations/{automation['id']}"))["enabled"] is False
    disable_hook = f"/w/{api.workspace}/webhooks/github/disable"
    assert client.post(disable_hook, data={"csrf": csrf_of(page.text)}).status_code == 303
    assert api.ok("GET", api.ws("/webhooks/github"))["enabled"] is False
    page = client.get(f"/w/{api.workspace}/automations").text
    assert 'aria-label="Enable notify-&lt;b&gt;"' in page and 'aria-label="Enable github"' in page
    viewer = sign_in(app, api.user("vi", role="viewer"))
    seen = viewer.get(f"/w/{api.workspace}/automations")
    assert seen.status_code == 200 and "Enable" not in seen.text and "notify-&lt;b&gt;" in seen.text
    enable = f"/w/{api.workspace}/automations/{automation['id']}/enable"
    assert viewer.post(enable, data={"csrf": csrf_of(seen.text)}).status_code == 403
    assert api.ok("GET", api.ws(f"/automations/{automation['id']}"))["enabled"] is False
    assert client.post(f"/w/{api.workspace}/automations/nope/enable",
                       data={"csrf": csrf_of(page)}).status_code == 404


def test_a_deployments_page_shows_the_triggers_that_run_it_and_its_next_runs(app, api, world):
    client = sign_in(app, api.key)
    page = client.get(f"/w/{api.workspace}/deployments/{world['down']['id']}").text
    assert "flow/down trigger 1" in page and COMPLETED in page
    assert "No triggers run this deployment." in client.get(f"/w/{api.workspace}/deployments/{world['up']['id']}").text
    now = world["ctx"].clock.now()
    past = api.run(world["up"]["id"], name="ran-before", scheduled_time=(now - timedelta(hours=1)).isoformat())
    future = api.run(world["up"]["id"], name="due-later", scheduled_time=(now + timedelta(hours=1)).isoformat())
    page = client.get(f"/w/{api.workspace}/deployments/{world['up']['id']}").text
    next_runs, recent = page.split('id="upcoming"')[1].split('id="triggers"')[0], page.split('id="recent"')[1]
    assert future["name"] in next_runs and past["name"] not in next_runs
    assert past["name"] in recent and future["name"] not in recent


def test_the_events_feed_filters_and_pages_and_an_event_has_its_page(app, api, world):
    for i in range(EVENTS_PAGE + 5):
        api.ok("POST", api.ws("/events"), status=201, json={
            "event": "etl.table.refreshed", "resource": TABLE, "payload": {"rows": i, "note": "<script>x</script>"}})
    world["ctx"].events.flush()
    client = sign_in(app, api.key)
    seen, query = [], "event=etl.table."
    while query:
        page = client.get(f"/w/{api.workspace}/events?{query}").text
        seen += re.findall(r'/events/([0-9a-f-]+)\?at=', page)
        found = re.search(r'<a href="\?([^"]+)" rel="next">', page)
        query = found.group(1).replace("&amp;", "&") if found else None
        assert query is None or "event=etl.table." in query
    assert len(seen) == len(set(seen)) == EVENTS_PAGE + 5
    other = client.get(f"/w/{api.workspace}/events?resource=warehouse.table.customers").text
    assert "No events match these filters" in other
    link = re.search(r'href="(/w/[^"]+/events/[0-9a-f-]+\?at=[^"]+)"', client.get(
        f"/w/{api.workspace}/events?event=etl.").text).group(1).replace("&amp;", "&")
    detail = client.get(link)
    assert detail.status_code == 200 and "warehouse.table.orders" in detail.text
    assert "&lt;script&gt;x&lt;/script&gt;" in detail.text and "<script>x" not in detail.text
    assert client.get(link.replace("?at=", "x?at=")).status_code == 404
    for bad in ("events/x?at=yesterday", "events/x", "events?after=nope", "events?from=soon"):
        assert client.get(f"/w/{api.workspace}/{bad}").status_code == 422, bad


def test_a_runs_page_lists_its_events(app, api, world):
    run = api.run(world["up"]["id"])
    world["ctx"].events.flush()
    client = sign_in(app, api.key)
    page = client.get(f"/w/{api.workspace}/runs/{run['id']}").text
    assert "pushpool.flow-run.Scheduled" in page and "No events about this run." not in page


def test_another_workspaces_events_and_automations_stay_there(app, api, world):
    api.ok("POST", "/api/workspaces", json={"name": "other"})
    other = api.as_key(api.key, "other")
    other.ok("POST", other.ws("/events"), status=201, json={"event": "secret.thing", "resource": TABLE})
    other.ok("POST", other.ws("/webhooks"), status=201, json={"name": "theirs", "template": '{"event": "x"}'})
    world["ctx"].events.flush()
    [theirs] = other.ok("GET", other.ws("/events"), params={"event": "secret."})["events"]
    client = sign_in(app, api.key)
    assert "secret.thing" not in client.get(f"/w/{api.workspace}/events").text
    at = ts(datetime.fromisoformat(theirs["occurred"].replace("Z", "+00:00")))
    assert client.get(f"/w/{api.workspace}/events/{theirs['id']}?at={at}").status_code == 404
    token = csrf_of(client.get(f"/w/{api.workspace}/automations").text)
    assert client.post(f"/w/{api.workspace}/webhooks/theirs/disable", data={"csrf": token}).status_code == 404
    assert other.ok("GET", other.ws("/webhooks/theirs"))["enabled"] is True
