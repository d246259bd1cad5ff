"""The control plane's metrics (control_plane/metrics.py): /metrics scraped after a real ``local:push`` loop,
who may read it, bounded labels, and the EMF lines' shape."""

from __future__ import annotations

import io
import json
import re
import textwrap

import httpx
import pytest

from pushpool.control_plane.metrics import EmfMetrics, crash_reason
from pushpool.pushers.base import TransientPusherError
from pushpool.pushers.local import LocalPusher
from tests.e2e.local_project import local_project
from tests.live_server import wait_for_state

FLOWS = textwrap.dedent('''
    import os

    from pushpool import flow

    @flow
    def fine() -> None:
        print("all good")

    @flow
    def dies() -> None:
        os._exit(3)  # the process ends without reporting: the infrastructure "crashed"
''')


def scrape(url: str) -> dict[tuple[str, tuple], float]:
    from prometheus_client.parser import text_string_to_metric_families

    answer = httpx.get(f"{url}/metrics")
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(answer.text) for s in family.samples}


def value(samples: dict, metric: str, **labels: str) -> float:
    return samples.get((metric, tuple(sorted(labels.items()))), 0.0)


def test_metrics_after_a_real_local_loop(live_with, tmp_path, monkeypatch):
    live = live_with(submission_backoff_seconds=0.2)
    real_submit, failures = LocalPusher.submit, []

    def submit_failing_once(self, job):
        if not failures:
            failures.append(job.flow_run_id)
            raise TransientPusherError("the cloud said: slow down")
        return real_submit(self, job)

    monkeypatch.setattr(LocalPusher, "submit", submit_failing_once)
    project = local_project(live, tmp_path, FLOWS)
    before = scrape(live.settings.api_url)
    completed = project.run(project.deploy("fine"))
    assert completed["state"]["type"] == "COMPLETED"
    crashed = project.client.create_flow_run(project.deploy("dies")["id"])
    assert wait_for_state(project.client, crashed["id"], {"CRASHED", "COMPLETED", "FAILED"})["state"]["type"] == \
        "CRASHED"
    after = scrape(live.settings.api_url)

    def grew(metric: str, **labels: str) -> float:
        return value(after, metric, **labels) - value(before, metric, **labels)

    local = {"pool_type": "local:push"}
    assert grew("pushpool_flow_run_transitions_total", state="COMPLETED", **local) == 1
    assert grew("pushpool_flow_run_transitions_total", state="CRASHED", **local) == 1
    assert grew("pushpool_flow_run_transitions_total", state="RUNNING", **local) == 2
    assert grew("pushpool_submission_errors_total", kind="transient", **local) == 1
    assert grew("pushpool_flow_run_crashes_total", reason="exit_code", **local) == 1
    # Two submissions: the histogram's count, and every bucket at +Inf, grew by two; the sum is their lateness.
    assert grew("pushpool_dispatch_lateness_seconds_count", **local) == 2
    assert grew("pushpool_dispatch_lateness_seconds_bucket", le="+Inf", **local) == 2
    assert grew("pushpool_dispatch_lateness_seconds_bucket", le="3600.0", **local) == 2
    assert grew("pushpool_dispatch_lateness_seconds_sum", **local) > 0  # the retried one waited its backoff
    assert grew("pushpool_tick_pass_duration_seconds_count", name="dispatcher") > 0
    assert grew("pushpool_log_lines_ingested_total") >= 1 and grew("pushpool_events_total", outcome="written") > 0
    route = "/api/workspaces/{workspace}/flow_runs/{run_id}/set_state"
    assert grew("pushpool_api_request_duration_seconds_count", route=route, method="POST", status="200") >= 2
    # Bounded labels: no id and no tenant's name in any label value.
    uuid = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-")
    labels = {v for _, pairs in after for _, v in pairs}
    assert not any(uuid.search(v) for v in labels) and not {"fine", "dies", project.pool} & labels


def test_only_loopback_or_the_operators_token_reads_metrics(api_with, settings, store):
    from fastapi.testclient import TestClient

    from pushpool.control_plane.app import create_app

    api = api_with(metrics_token="s3cret-scrape")
    # TestClient's caller is "testclient", not a loopback address: like a scraper on another host.
    assert api.client.get("/metrics").status_code == 404
    assert api.client.get("/metrics", headers={"Authorization": f"Bearer {api.key}"}).status_code == 404  # a key
    assert api.client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 404
    answer = api.client.get("/metrics", headers={"Authorization": "Bearer s3cret-scrape"})
    assert answer.status_code == 200 and "pushpool_flow_run_transitions" in answer.text
    off = TestClient(create_app(settings.model_copy(update={"metrics": "off", "metrics_token": "s3cret-scrape"}),
                                store))
    assert off.get("/metrics", headers={"Authorization": "Bearer s3cret-scrape"}).status_code == 404


def test_emf_lines_carry_at_most_100_values_and_the_dimensions_they_declare():
    out = io.StringIO()
    metrics = EmfMetrics(stream=out)
    for i in range(150):
        metrics.dispatched("ecs:push", i / 10)
    metrics.pass_took("dispatcher", 0.5, failed=True)
    metrics.flush()
    documents = [json.loads(line) for line in out.getvalue().splitlines()]
    lateness = [d for d in documents if "DispatchLateness" in d and d.get("PoolType") == "ecs:push"]
    assert [len(d["DispatchLateness"]) for d in lateness] == [100, 50]
    errors = [d for d in documents if "TickErrors" in d]
    assert {tuple(d["_aws"]["CloudWatchMetrics"][0]["Dimensions"][0]) for d in errors} == {("Pass",), ()}
    metrics.flush()
    assert out.getvalue().count("\n") == len(documents)  # nothing gathered twice


@pytest.mark.parametrize("exit_code, reason, missing, expected", [
    (137, "exit code 137: killed, likely out of memory", False, "out_of_memory"),
    (1, "image pull failed for 'x'", False, "image_pull"),
    (None, "the ECS task no longer exists", True, "vanished"),
    (1, "the Spot capacity was reclaimed by AWS (SpotInterruption)", False, "spot_or_host"),
    (3, "exit code 3", False, "exit_code"),
])
def test_crash_reasons_are_a_bounded_set(exit_code, reason, missing, expected):
    assert crash_reason(exit_code, reason, missing) == expected


def test_the_grafana_dashboard_reads_only_metrics_that_exist():
    from pathlib import Path

    from pushpool.control_plane.metrics import PrometheusMetrics

    dashboard = json.loads((Path(__file__).parents[2] / "docs" / "grafana-dashboard.json").read_text())
    used = {re.sub(r"_(bucket|count|sum|total)$", "", name) for panel in dashboard["panels"]
            for target in panel["targets"] for name in re.findall(r"pushpool_[a-z_]+", target["expr"])}
    known = {metric.name for metric in PrometheusMetrics().registry.collect()}
    assert used and used <= known, used - known


def test_a_throttled_submission_is_counted_as_throttled(api, ctx, fake_pusher, monkeypatch):
    from pushpool.control_plane.metrics import PrometheusMetrics
    from pushpool.control_plane.services.dispatcher import Dispatcher
    from pushpool.pushers.base import ThrottledPusherError

    ctx.metrics = ctx.events.metrics = PrometheusMetrics()
    api.pool()
    api.run(api.deployment()["id"])

    def submit(job):
        raise ThrottledPusherError("ecs:RunTask: ThrottlingException: Rate exceeded")

    monkeypatch.setattr(fake_pusher, "submit", submit)
    dispatcher = Dispatcher(ctx)
    dispatcher.run_once()
    dispatcher.close()
    body = ctx.metrics.exposition()[0].decode()
    assert 'pushpool_submission_errors_total{kind="throttled",pool_type="fake:push"} 1.0' in body
