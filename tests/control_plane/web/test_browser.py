"""The dashboard in a real browser (headless Chromium) against a real embedded server running ``local:push``
flows: sign in, find a COMPLETED and a FAILED run, read a run's logs, cancel a run; and what a viewer sees."""

from __future__ import annotations

import os
import textwrap
import time
from pathlib import Path

from tests.e2e.local_project import local_project
from tests.live_server import wait_for_state

#: ``make screenshots`` (DASHBOARD_SCREENSHOTS=1) writes the pictures docs/dashboard.md shows here.
SCREENSHOTS = Path(__file__).parents[3] / "docs" / "images"
FLOWS = textwrap.dedent('''
    from pushpool import flow, get_run_logger

    @flow
    def greet(name: str = "world") -> None:
        get_run_logger().info(f"hello {name}")

    @flow
    def broken() -> None:
        raise ValueError("the input file is missing")

    @flow
    def slow() -> None:
        import time
        print("started, sleeping", flush=True)
        time.sleep(120)
''')


def test_sign_in_read_a_run_and_its_logs_then_cancel_one(live, tmp_path: Path, chromium):
    project = local_project(live, tmp_path, FLOWS)
    done = project.run(project.deploy("greet"), parameters={"name": "browser"})
    failed = project.run(project.deploy("broken"))
    assert (done["state"]["type"], failed["state"]["type"]) == ("COMPLETED", "FAILED")
    waiting = project.client.create_flow_run(project.deploy("greet", name="later")["id"],
                                             scheduled_time="2030-01-01T00:00:00Z")

    page = chromium.new_context().new_page()
    base = live.settings.api_url
    page.goto(f"{base}/")
    assert page.url.startswith(f"{base}/sign-in")
    page.fill("#key", "ppu_wrong")
    page.click("button[type=submit]")
    assert "not a valid API key" in page.inner_text("[role=alert]")
    page.fill("#key", live.key)
    page.click("button[type=submit]")
    assert page.url == f"{base}/w/{live.workspace}/"  # the overview
    chart = page.text_content("svg.chart")
    assert "Completed" in chart and "Failed" in chart and "Scheduled" not in chart  # the waiting run is not due
    assert failed["name"] in page.inner_text("section[aria-labelledby=failed]")
    assert waiting["name"] in page.inner_text("section[aria-labelledby=upcoming]")
    if os.environ.get("DASHBOARD_SCREENSHOTS"):
        page.set_viewport_size({"width": 1100, "height": 800})
        page.screenshot(path=str(SCREENSHOTS / "dashboard-overview.png"), full_page=True)
    page.click("header >> text=Flow runs")
    if os.environ.get("DASHBOARD_SCREENSHOTS"):
        page.set_viewport_size({"width": 1100, "height": 500})
        page.screenshot(path=str(SCREENSHOTS / "dashboard-runs.png"))
    table = page.inner_text("table")
    assert done["name"] in table and failed["name"] in table and "Completed" in table and "Failed" in table

    page.click("text=Failed")  # the state filter
    assert failed["name"] in page.inner_text("table") and done["name"] not in page.inner_text("table")
    page.click(f"text={failed['name']}")
    assert "ValueError: the input file is missing" in page.inner_text("main")

    page.goto(f"{base}/w/{live.workspace}/runs/{done['id']}")
    assert "INFO    | greet - hello browser" in page.inner_text("pre.logs")
    assert "browser" in page.inner_text("[aria-label=Parameters]")
    shot = SCREENSHOTS / "dashboard-run.png" if os.environ.get("DASHBOARD_SCREENSHOTS") else tmp_path / "r.png"
    page.set_viewport_size({"width": 1100, "height": 900})
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000

    page.goto(f"{base}/w/{live.workspace}/runs/{waiting['id']}")
    assert page.get_attribute("main", "data-refresh") == "2"  # a run that is not final follows itself
    page.click("button:has-text('Cancel')")
    assert page.url.endswith(f"/runs/{waiting['id']}")
    assert "Cancelled" in page.inner_text("h1")
    assert project.client.read_flow_run(waiting["id"])["state"]["type"] == "CANCELLED"


def test_cancel_a_running_run_and_a_forged_post_is_refused(live, tmp_path: Path, chromium):
    project = local_project(live, tmp_path, FLOWS)
    run = project.client.create_flow_run(project.deploy("slow")["id"])
    wait_for_state(project.client, run["id"], {"RUNNING"}, timeout=60)
    context = chromium.new_context()
    page = context.new_page()
    page.goto(f"{live.settings.api_url}/sign-in?next=/w/{live.workspace}/runs/{run['id']}")
    page.fill("#key", live.key)
    page.click("button[type=submit]")
    assert "Running" in page.inner_text("h1")
    # a forged form: the browser's own session cookie, but no CSRF token (as another site's page would post)
    forged = context.request.post(f"{live.settings.api_url}/w/{live.workspace}/runs/{run['id']}/cancel",
                                  form={"reason": "forged"}, max_redirects=0)
    assert forged.status == 403 and "CSRF token" in forged.text()
    assert project.client.read_flow_run(run["id"])["state"]["type"] == "RUNNING"
    page.click("button:has-text('Cancel')")
    final = wait_for_state(project.client, run["id"], {"CANCELLED"}, timeout=60)  # SIGTERM reached the flow
    assert final["state"]["type"] == "CANCELLED"
    deadline = time.monotonic() + 15
    while "Cancelled" not in page.inner_text("h1"):  # the page follows the run to its end
        assert time.monotonic() < deadline, page.inner_text("h1")
        page.wait_for_timeout(200)


def test_a_viewer_sees_runs_but_no_buttons(live, tmp_path: Path, chromium):
    project = local_project(live, tmp_path, FLOWS)
    deployment = project.deploy("greet")
    run = project.client.create_flow_run(deployment["id"], scheduled_time="2030-01-01T00:00:00Z")
    viewer_key = project.client.request("POST", "/api/users", json={"name": "vic", "workspace": live.workspace,
                                                                     "role": "viewer"})["key"]
    page = chromium.new_context().new_page()
    page.goto(f"{live.settings.api_url}/sign-in")
    page.fill("#key", viewer_key)
    page.click("button[type=submit]")
    page.click(f"text={run['name']}")
    assert "(viewer)" in page.inner_text("header")
    assert page.locator("button:has-text('Cancel')").count() == 0
    assert page.locator("button:has-text('Retry')").count() == 0
    page.goto(f"{live.settings.api_url}/w/{live.workspace}/deployments/{deployment['id']}")
    assert "greet/d" in page.inner_text("h1") and page.locator("button:has-text('Run')").count() == 0
    page.goto(f"{live.settings.api_url}/w/{live.workspace}/pools")
    assert page.locator("button:has-text('Pause')").count() == 0


def test_run_a_deployment_from_its_form_and_pause_its_pool(live, tmp_path: Path, chromium):
    from pushpool.flows import Flow

    def greet(name: str = "world") -> None: ...

    project = local_project(live, tmp_path, FLOWS)
    schema = Flow(greet, name="greet").parameter_schema()  # what `pushpool deploy` sends for the flow
    project.deploy("greet", parameter_schema=schema)
    page = chromium.new_context().new_page()
    base = live.settings.api_url
    page.goto(f"{base}/sign-in")
    page.fill("#key", live.key)
    page.click("button[type=submit]")
    page.click("header >> text=Deployments")
    page.click("text=greet/d")
    assert page.input_value("#param-name") == "world"  # the flow's default
    page.fill("#param-name", "from the form")
    page.click("button:has-text('Run')")
    run_url = page.url
    assert "/runs/" in run_url
    deadline = time.monotonic() + 60
    while "Completed" not in page.inner_text("h1"):
        assert time.monotonic() < deadline, page.inner_text("main")
        time.sleep(0.5)
        page.goto(run_url)
    assert "hello from the form" in page.inner_text("pre.logs")

    page.click("header >> text=Work pools")
    page.click("button:has-text('Pause')")
    assert page.locator("button:has-text('Resume')").count() == 1
    assert project.client.request("GET", project.client.ws(f"/work_pools/{project.pool}"))["paused"] is True


def test_a_run_page_follows_its_run_without_a_reload(live, tmp_path: Path, chromium):
    project = local_project(live, tmp_path, FLOWS)
    run = project.client.create_flow_run(project.deploy("greet")["id"], scheduled_time="2030-01-01T00:00:00Z")
    page = chromium.new_context().new_page()
    page.goto(f"{live.settings.api_url}/sign-in?next=/w/{live.workspace}/runs/{run['id']}")
    page.fill("#key", live.key)
    page.click("button[type=submit]")
    assert "Scheduled" in page.inner_text("h1")
    navigations: list[str] = []
    reads: list[float] = []
    page.on("framenavigated", lambda frame: navigations.append(frame.url))
    page.on("request", lambda request: reads.append(time.monotonic()) if "/runs/" in request.url else None)
    project.client.request("POST", project.client.ws(f"/flow_runs/{run['id']}/cancel"))
    deadline = time.monotonic() + 15
    while "Cancelled" not in page.inner_text("h1"):  # (CSP forbids the eval wait_for_function would use)
        assert time.monotonic() < deadline, page.inner_text("main")
        page.wait_for_timeout(200)
    seen_final = time.monotonic()
    assert navigations == [] and reads  # swapped in place by the page's own script, not reloaded
    page.wait_for_timeout(4500)
    assert [t for t in reads if t > seen_final] == []  # a final run's page stops reading itself


def test_the_link_pushpool_dashboard_prints_fills_in_the_key_without_sending_it(live, chromium):
    import json

    from typer.testing import CliRunner

    from pushpool.cli.main import app

    printed = CliRunner().invoke(app, ["dashboard", "-o", "json"], env={
        "PUSHPOOL_API_URL": live.settings.api_url, "PUSHPOOL_API_KEY": live.key, "PUSHPOOL_WORKSPACE": live.workspace})
    assert printed.exit_code == 0, printed.output
    url = json.loads(printed.output)["url"]
    assert url.startswith(f"{live.settings.api_url}/sign-in#key=") and url.endswith(live.key)
    page = chromium.new_context().new_page()
    asked: list[str] = []
    page.on("request", lambda request: asked.append(request.url))
    page.goto(url)
    assert page.input_value("#key") == live.key and page.url == f"{live.settings.api_url}/sign-in"
    assert not any(live.key in address for address in asked)  # the fragment never went to the server
    page.click("button[type=submit]")
    assert page.url == f"{live.settings.api_url}/w/{live.workspace}/"
    wrong = CliRunner().invoke(app, ["dashboard"], env={"PUSHPOOL_API_URL": live.settings.api_url,
                                                        "PUSHPOOL_API_KEY": "ppu_wrong"})
    assert wrong.exit_code != 0 and "Invalid authentication credentials" in str(wrong.exception)  # no broken link
