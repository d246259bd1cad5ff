"""The dashboard's pages, over HTTP: sign-in and its cookie, CSRF, roles, tenant walls, escaping, and what a run's
page shows. (A real browser drives them in ``test_browser.py``.)"""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from pushpool.control_plane.web import sessions


def browser(app) -> TestClient:
    """A client with a cookie jar of its own that does not follow redirects (so they can be checked)."""
    return TestClient(app, follow_redirects=False)


def sign_in(app, key: str) -> TestClient:
    client = browser(app)
    answer = client.post("/sign-in", data={"key": key, "next": "/"})
    assert answer.status_code == 303, answer.text
    return client


def csrf_of(page: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', page).group(1)


@pytest.fixture
def world(api, ctx, fake_pusher):
    api.pool()
    dep = api.deployment()
    run = api.run(dep["id"])
    return {"dep": dep, "run": run}


def test_sign_in_sets_a_strict_http_only_cookie_and_pages_need_it(app, api, world):
    anonymous = browser(app)
    assert anonymous.get("/").headers["location"] == "/sign-in"
    page = anonymous.get(f"/w/{api.workspace}/runs")
    assert page.status_code == 303 and page.headers["location"].startswith("/sign-in?next=/w/")
    form = anonymous.get("/sign-in")
    assert form.status_code == 200 and "default-src 'self'" in form.headers["content-security-policy"]
    answer = anonymous.post("/sign-in", data={"key": api.key, "next": f"/w/{api.workspace}/runs"})
    cookie = answer.headers["set-cookie"]
    assert answer.status_code == 303 and answer.headers["location"] == f"/w/{api.workspace}/runs"
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Max-Age=43200" in cookie
    assert api.key not in cookie  # a signed reference to the key, never the key
    runs = anonymous.get(f"/w/{api.workspace}/runs")
    assert runs.status_code == 200 and world["run"]["name"] in runs.text


@pytest.mark.parametrize("key, says", [("ppu_not-a-key", "not a valid API key"), ("", "not a valid API key")])
def test_a_bad_key_is_refused_with_a_message(app, key, says):
    answer = browser(app).post("/sign-in", data={"key": key})
    assert answer.status_code == 401 and says in answer.text and "set-cookie" not in answer.headers


def test_next_never_leaves_the_site(app, api):
    for target in ("https://evil.example/", "//evil.example/x", "/\\evil.example"):
        assert browser(app).post("/sign-in", data={"key": api.key, "next": target}).headers["location"] == "/"


def test_a_run_token_cannot_sign_in(app, api, ctx, fake_pusher):
    from tests.control_plane.api.test_auth import run_token_for

    token, _, _, _ = run_token_for(api, ctx, fake_pusher)
    answer = browser(app).post("/sign-in", data={"key": token.key})
    assert answer.status_code == 401 and "run token cannot sign in" in answer.text


def test_a_forged_cookie_or_one_of_a_revoked_key_signs_nobody_in(app, api, world):
    client = sign_in(app, api.key)
    good = client.cookies[sessions.COOKIE]
    prefix, key_hash, expires, mac = good.split(".")
    for forged in (f"{prefix}.{key_hash}.{int(expires) + 10**6}.{mac}", f"{prefix}.{'0' * 64}.{expires}.{mac}",
                   "garbage"):
        other = browser(app)
        other.cookies.set(sessions.COOKIE, forged)
        assert other.get(f"/w/{api.workspace}/runs").status_code == 303
    short = api.ok("POST", "/api/api_keys", json={"name": "browser"})
    session = sign_in(app, short["key"])
    assert session.get(f"/w/{api.workspace}/runs").status_code == 200
    api.ok("DELETE", f"/api/api_keys/{short['api_key']['id']}")
    assert session.get(f"/w/{api.workspace}/runs").status_code == 303  # revoking the key ends its sessions


def test_cancel_needs_the_csrf_token_and_a_same_site_origin(app, api, world):
    client = sign_in(app, api.key)
    run_url = f"/w/{api.workspace}/runs/{world['run']['id']}"
    page = client.get(run_url)
    assert ">Cancel</button>" in page.text
    token = csrf_of(page.text)
    assert client.post(f"{run_url}/cancel", data={}).status_code == 403  # a forged form has no token
    assert client.post(f"{run_url}/cancel", data={"csrf": "wrong"}).status_code == 403
    cross_site = client.post(f"{run_url}/cancel", data={"csrf": token}, headers={"Origin": "https://evil.example"})
    assert cross_site.status_code == 403 and "another site" in cross_site.text
    assert api.ok("GET", api.ws(f"/flow_runs/{world['run']['id']}"))["state"]["type"] == "SCHEDULED"
    done = client.post(f"{run_url}/cancel", data={"csrf": token})
    assert done.status_code == 303 and done.headers["location"] == run_url
    assert api.ok("GET", api.ws(f"/flow_runs/{world['run']['id']}"))["state"]["type"] == "CANCELLED"
    retried = client.post(f"{run_url}/retry", data={"csrf": token})
    new_run = retried.headers["location"].rsplit("/", 1)[1]
    assert new_run != world["run"]["id"] and api.ok("GET", api.ws(f"/flow_runs/{new_run}"))["retry_of"] == \
        world["run"]["id"]


def test_a_viewer_sees_no_buttons_and_a_posted_action_is_refused(app, api, world):
    viewer = sign_in(app, api.user("vera", role="viewer"))
    run_url = f"/w/{api.workspace}/runs/{world['run']['id']}"
    page = viewer.get(run_url)
    assert page.status_code == 200 and ">Cancel</button>" not in page.text and ">Retry</button>" not in page.text
    refused = viewer.post(f"{run_url}/cancel", data={"csrf": csrf_of(page.text)})  # the sign-out form's token
    assert refused.status_code == 403 and "lacks the &#39;run&#39; permission" in refused.text
    assert api.ok("GET", api.ws(f"/flow_runs/{world['run']['id']}"))["state"]["type"] == "SCHEDULED"


def test_another_workspace_is_not_found(app, api, world):
    api.ok("POST", "/api/workspaces", json={"name": "other"})
    outsider = sign_in(app, api.user("olga", role="owner", workspace="other"))
    for path in (f"/w/{api.workspace}/runs", f"/w/{api.workspace}/runs/{world['run']['id']}"):
        assert outsider.get(path).status_code == 404
    page = outsider.get("/w/other/runs")
    assert page.status_code == 200 and world["run"]["name"] not in page.text


def test_a_run_page_shows_states_parameters_logs_and_task_runs_escaped(app, api, ctx, world, fake_pusher):
    run = api.ok("POST", api.ws(f"/deployments/{world['dep']['id']}/runs"), json={
        "parameters": {"note": "<script>alert(1)</script>"},
        "job_variables": {"env": {"API_TOKEN": "s3cr3t-value", "REGION": "eu"}}})
    api.ok("POST", api.ws(f"/flow_runs/{run['id']}/logs"), json={"seq": 0, "lines": [
        {"timestamp": 1_780_000_000, "message": "<b>loaded</b> 3 rows", "logger": "etl"}]})
    page = sign_in(app, api.key).get(f"/w/{api.workspace}/runs/{run['id']}")
    assert page.status_code == 200
    assert "<script>alert(1)</script>" not in page.text and "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
    assert "&lt;b&gt;loaded&lt;/b&gt; 3 rows" in page.text
    assert "s3cr3t-value" not in page.text and "API_TOKEN" in page.text and "&#34;eu&#34;" in page.text
    assert "Scheduled" in page.text and "No task runs reported." in page.text


def test_only_the_stylesheet_and_the_script_are_served(app):
    client = browser(app)
    css, script = client.get("/static/app.css"), client.get("/static/app.js")
    assert css.headers["content-type"].startswith("text/css") and script.headers["content-type"].startswith(
        "text/javascript")
    assert "data-refresh" in script.text
    for name in ("../pages.py", "..%2Fpages.py", "templates", "app.css.bak"):
        assert client.get(f"/static/{name}").status_code == 404, name
