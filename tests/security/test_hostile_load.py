"""A hostile tenant gets nothing, part 2: what a tenant can make the server compute, send or store.

Schedules and templates whose evaluation used to stall everyone, notifications used as a port scanner
or to hold up the event flush, oversized bodies, guessing keys and slugs, a full disk. Where another
tenant could suffer, the test measures that tenant's dispatch while the attack runs (≤ 3 s).
"""

from __future__ import annotations

import json
import socket
import sqlite3
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from pushpool.control_plane.models import Deployment, Schedule
from tests.conftest import Api
from tests.live_server import wait_until

OTHER_TENANT_SECONDS = 3.0


def dispatch_latency(client, deployment_id: str) -> float:
    """Seconds from creating an ad-hoc run until it has been submitted."""
    started = time.monotonic()
    run = client.create_flow_run(deployment_id)
    deadline = started + 30
    while time.monotonic() < deadline:
        if client.read_flow_run(run["id"])["infra_id"]:
            return time.monotonic() - started
        time.sleep(0.05)
    return float("inf")


def other_tenant(live) -> tuple:
    """Workspace ``victim`` with a pool and deployment of its own, and a client for it."""
    admin = live.client()
    admin.request("POST", "/api/workspaces", json={"name": "victim"})
    client = type(admin)(api_url=live.settings.api_url, api_key=live.key, workspace="victim")
    client.create_work_pool("cloud", "fake:push")
    dep = client.apply_deployment(flow_name="f", name="d", entrypoint="f.py:f", work_pool_name="cloud")
    return client, dep


# --------------------------------------------------------------------------- schedules


@pytest.mark.parametrize("schedule, field", [
    ({"rrule": "FREQ=SECONDLY"}, "schedules[0].rrule"),
    ({"rrule": "FREQ=MINUTELY;BYSECOND=0,1,2,3"}, "schedules[0].rrule"),
    ({"rrule": "FREQ=DAILY;COUNT=1000000"}, "schedules[0].rrule"),
    ({"cron": "* * * * * */1"}, "schedules[0].cron"),
    ({"cron": "* * * * * *"}, "schedules[0].cron"),
    ({"rrule": "FREQ=MINUTELY;BYMONTH=2;BYMONTHDAY=30"}, "schedules[0].rrule"),  # never: too slow to find out
])
def test_costly_schedules_are_refused_naming_the_rule(api, schedule, field):
    api.pool()
    started = time.monotonic()
    response = api.post(api.ws("/deployments"), json={"flow_name": "f", "name": "d", "entrypoint": "f.py:f",
                                                      "work_pool_name": "pool", "schedules": [schedule]})
    assert response.status_code == 422 and field in response.json()["detail"], response.text
    assert time.monotonic() - started < 3


def test_a_minutely_rule_anchored_long_ago_is_quick(api):
    api.pool()
    started = time.monotonic()
    dep = api.deployment(schedules=[{"rrule": "FREQ=MINUTELY", "anchor_date": "2000-01-01T00:00:00Z"}])
    assert time.monotonic() - started < 3 and dep["schedules"][0]["rrule"] == "FREQ=MINUTELY"


def test_schedules_that_stall_do_not_delay_another_tenants_dispatch(live_with):
    """Costly schedules already in the database (written before the rules existed) are skipped within their
    budget on the scheduler's own thread; the other tenant's runs leave on time and the server stops at once."""
    live = live_with(scheduler_interval_seconds=0.2)
    attacker = live.ctx.store.get_workspace(live.workspace)
    client = live.client()
    pool = client.create_work_pool("cloud", "fake:push")
    now = datetime.now(UTC)
    for i in range(8):
        live.ctx.store.create_deployment(Deployment(
            workspace_id=attacker.id, flow_name="bomb", name=f"d{i}", entrypoint="f.py:f", pool_id=pool["id"],
            queue_id=live.ctx.store.list_work_queues(attacker.id, pool["id"])[0].id, created=now, updated=now,
            schedules=[Schedule(rrule="FREQ=SECONDLY;BYMONTH=2;BYMONTHDAY=30"), Schedule(cron="* * * * * *")]))
    live.ctx.request_scheduling()
    victim, dep = other_tenant(live)
    latencies = [dispatch_latency(victim, dep["id"]) for _ in range(3)]
    assert max(latencies) <= OTHER_TENANT_SECONDS, latencies
    started = time.monotonic()
    live.stop()
    assert time.monotonic() - started < 5


# --------------------------------------------------------------------------- template bombs


def peak_rss_mb() -> float:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) / 1024


@pytest.mark.parametrize("template", [
    "{{ 'x'.center(10**9) }}", "{{ '%1000000000d' % 1 }}", "{{ ('x' * 99999).replace('x', 'y' * 99999) }}",
    "{{ ('\n' * 99999)|indent(99999) }}",
])
def test_anonymous_webhook_calls_cannot_make_the_server_allocate(api, template):
    hook = api.ok("POST", api.ws("/webhooks"), json={"name": "h", "template": template})
    before = peak_rss_mb()
    for _ in range(4):
        answer = api.client.post(hook["path"], content=b"{}")
        assert answer.status_code == 400 and "longer than" in answer.json()["detail"]
    assert peak_rss_mb() - before < 200
    started = time.monotonic()
    assert api.client.get("/api/health").status_code == 200 and time.monotonic() - started < 1


# --------------------------------------------------------------------------- notifications


class Receiver:
    """An HTTP server on 127.0.0.1: records bodies, or (slow) accepts and never answers."""

    def __init__(self, slow: bool = False) -> None:
        self.bodies: list[dict] = []
        self.release = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
                if slow:
                    receiver.release.wait(30)
                    return
                receiver.bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _json(who):
    """The JSON-returning call of a TestClient ``Api`` (``ok``) or of a ``PushpoolClient`` (``request``)."""
    return who.ok if isinstance(who, Api) else who.request


def notify_on_ping(who, url: str, name: str = "n") -> str:
    """A webhook that makes a ``ping-<name>`` event and an automation that notifies ``url`` on it; the hook's path."""
    call = _json(who)
    call("POST", who.ws("/blocks"), json={"name": name, "type": "webhook", "data": {"url": url}})
    call("POST", who.ws("/automations"), json={"name": f"tell-{name}", "trigger": {"expect": [f"ping-{name}"]},
                                               "actions": [{"type": "send-notification", "block": name}]})
    hook = call("POST", who.ws("/webhooks"), json={
        "name": f"ping-{name}",
        "template": json.dumps({"event": f"ping-{name}", "resource": {"pushpool.resource.id": "x"}})})
    return hook["path"]


def failure_reasons(who) -> list[str]:
    events = _json(who)("GET", who.ws("/events"), params={"event": "pushpool.automation.action.failed"})["events"]
    return [e["payload"]["reason"] for e in events]


def test_notifications_to_internal_addresses_are_refused_without_detail(api):
    receiver = Receiver()
    try:
        targets = [receiver.url, f"http://localhost:{receiver.server.server_port}/",
                   "http://169.254.169.254/latest/meta-data/iam/security-credentials/", "http://10.0.0.1:22/",
                   "http://[::1]:4200/api/health", f"http://127.0.0.1:{closed_port()}/"]
        for i, url in enumerate(targets):
            assert api.client.post(notify_on_ping(api, url, f"n{i}")).status_code == 202
        reasons = failure_reasons(api)
        assert len(reasons) == len(targets) and receiver.bodies == []
        for reason in reasons:
            assert "not a public address" in reason, reason
            for detail in ("127.0.0.1", "169.254", "refused", "Errno", "4200", "22"):
                assert detail not in reason.split(":", 1)[1], reason
    finally:
        receiver.close()


def test_an_allowed_closed_port_says_only_that_it_could_not_be_reached(live_with):
    live = live_with(outbound_allow=["127.0.0.1"])
    client = live.client()
    httpx.post(live.settings.api_url + notify_on_ping(client, f"http://127.0.0.1:{closed_port()}/"), content=b"{}")
    wait_until(lambda: failure_reasons(client), "the failed notification")
    assert failure_reasons(client)[0].endswith("the URL could not be reached"), failure_reasons(client)


def test_a_slow_notification_url_delays_no_one_else(live_with):
    slow, fast = Receiver(slow=True), Receiver()
    try:
        live = live_with(outbound_allow=["127.0.0.1"], outbound_timeout_seconds=2)
        attacker = live.client()
        victim, dep = other_tenant(live)
        hooks = {name: live.settings.api_url + notify_on_ping(who, url)
                 for name, who, url in (("attacker", attacker, slow.url), ("victim", victim, fast.url))}
        for _ in range(10):
            httpx.post(hooks["attacker"], content=b"{}")
        time.sleep(0.5)  # the attacker's notifications are now hanging on the slow URL
        started = time.monotonic()
        httpx.post(hooks["victim"], content=b"{}")
        wait_until(lambda: fast.bodies, "the victim's notification", timeout=OTHER_TENANT_SECONDS)
        assert time.monotonic() - started <= OTHER_TENANT_SECONDS
        assert dispatch_latency(victim, dep["id"]) <= OTHER_TENANT_SECONDS
        wait_until(lambda: failure_reasons(attacker), "the attacker's timed-out notification", timeout=10)
        assert "did not answer within 2 s" in failure_reasons(attacker)[0]
    finally:
        slow.close()
        fast.close()


# --------------------------------------------------------------------------- sizes and headers


def test_an_oversized_webhook_body_is_refused_before_the_slug_is_looked_up(live_with):
    live = live_with()
    url = f"{live.settings.api_url}/hooks/no-such-slug"
    big = b"x" * (600 * 1024)
    answer = httpx.post(url, content=big)
    assert answer.status_code == 413 and "PUSHPOOL_MAX_WEBHOOK_BODY_BYTES" in answer.json()["detail"]

    def chunks():  # no Content-Length: counted while it is read
        for _ in range(20):
            yield b"y" * 65536

    assert httpx.post(url, content=chunks()).status_code == 413
    assert httpx.post(url, content=b"{}").status_code == 404  # small: looked up, and unknown


def test_oversized_api_bodies_and_fields_are_refused_and_nothing_is_stored(api):
    huge = api.post(api.ws("/work_pools"), json={"name": "p", "type": "fake:push", "description": "x" * 2_000_000})
    assert huge.status_code == 413 and "PUSHPOOL_MAX_BODY_BYTES" in huge.json()["detail"]
    long = api.post(api.ws("/work_pools"), json={"name": "p", "type": "fake:push", "description": "x" * 20_000})
    assert long.status_code == 422 and "description" in long.text
    assert api.get(api.ws("/work_pools/p")).status_code == 404
    api.pool()
    dep = api.deployment()
    params = api.post(api.ws(f"/deployments/{dep['id']}/runs"), json={"parameters": {"blob": "x" * 300_000}})
    assert params.status_code == 422 and "parameters" in params.text
    assert api.ok("GET", api.ws("/flow_runs")) == []


def test_webhook_events_keep_no_credentials_from_the_caller(api):
    hook = api.ok("POST", api.ws("/webhooks"), json={
        "name": "h", "template": '{"event": "seen", "resource": {"pushpool.resource.id": "x"}}'})
    # Secret values with letters beyond hex, so a random id in the event can never contain one by chance.
    secrets = {"Cookie": "session=cookie-secret-q", "X-Api-Key": "key-secret-q", "Authorization": "Bearer pp-secret-q",
               "X-Amz-Security-Token": "token-secret-q"}
    api.client.post(hook["path"], content=b"{}", headers={**secrets, "X-Trace": "kept"})
    [event] = api.ok("GET", api.ws("/events"), params={"event": "seen"})["events"]
    headers = {k.lower() for k in event["payload"]["headers"]}
    assert "x-trace" in headers
    assert not headers & {"cookie", "x-api-key", "authorization", "x-amz-security-token"}
    stored = json.dumps(event)
    assert not [value for value in secrets.values() if value.split()[-1] in stored]


# --------------------------------------------------------------------------- guessing, full disk


def test_guessing_keys_or_slugs_gets_429(api_with):
    api = api_with(failed_requests_per_minute=5)
    guesser = api.as_key("pp_wrong_key")
    assert [guesser.get(api.ws("/work_pools")).status_code for _ in range(5)] == [401] * 5
    braked = guesser.get(api.ws("/work_pools"))
    assert braked.status_code == 429 and int(braked.headers["Retry-After"]) >= 1
    assert "too many failed requests" in braked.json()["detail"]
    assert api.client.get("/api/health").status_code == 200  # health stays reachable


def test_guessing_webhook_slugs_gets_429(api_with):
    api = api_with(failed_requests_per_minute=3)
    assert [api.client.post(f"/hooks/guess-{i}", content=b"{}").status_code for i in range(3)] == [404] * 3
    assert api.client.post("/hooks/guess-9", content=b"{}").status_code == 429


def test_a_full_disk_is_a_503_and_events_are_kept_for_the_retry(api, ctx, monkeypatch):
    api.pool()
    dep = api.deployment()

    def full(*args, **kwargs):
        raise sqlite3.OperationalError("database or disk is full")

    with monkeypatch.context() as patch:
        patch.setattr(ctx.store, "create_flow_run", full)
        answer = api.post(api.ws(f"/deployments/{dep['id']}/runs"), json={})
    assert answer.status_code == 503 and "disk" in answer.json()["detail"] and answer.headers["Retry-After"]
    with monkeypatch.context() as patch:
        patch.setattr(ctx.store, "append_events", full)
        ctx.events.emit("ws", "held.event", {"pushpool.resource.id": "x"})
        assert ctx.events.flush() == [] and ctx.events.has_pending  # refused: kept in memory
    stored = ctx.events.flush()
    assert [e.event for e in stored] == ["held.event"]
