"""The dashboard's list of flow runs over HTTP: every filter, both sorts, cursor pages that keep the filters,
and bad filters refused with the field named."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from pushpool.control_plane.web.run_list import PAGE_SIZE
from tests.control_plane.web.test_pages import sign_in

T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def world(api, ctx, fake_pusher):
    api.pool()
    dep = api.deployment()
    run = api.run(dep["id"])
    return {"dep": dep, "run": run}


def run_names(page: str) -> list[str]:
    return re.findall(r'/runs/[0-9a-f-]+">([^<]+)</a>', page)


def next_link(page: str) -> str | None:
    found = re.search(r'<a href="\?([^"]+)" rel="next">', page)
    return found.group(1).replace("&amp;", "&") if found else None


def test_bad_filters_are_refused_naming_the_field(app, api, world):
    client = sign_in(app, api.key)
    for query in ("state=NOPE", "sort=sideways", "after=garbage", "after=2026-01-01T00:00:00.000000Z%23x%27%3B"):
        assert client.get(f"/w/{api.workspace}/runs?{query}").status_code == 422, query
    bad_time = client.get(f"/w/{api.workspace}/runs?from=yesterday")
    assert bad_time.status_code == 422 and "from: &#39;yesterday&#39; is not a time" in bad_time.text
    empty_form = client.get(f"/w/{api.workspace}/runs?flow=&tag=&from=&to=&deployment=&pool=&sort=newest")
    assert empty_form.status_code == 200 and world["run"]["name"] in empty_form.text


def test_runs_filter_by_deployment_and_pool_and_links_keep_the_filters(app, api, world):
    other_dep = api.deployment(name="other")
    api.pool(name="second")
    mine = api.run(other_dep["id"])
    client = sign_in(app, api.key)
    by_deployment = client.get(f"/w/{api.workspace}/runs?deployment={other_dep['id']}").text
    assert mine["name"] in by_deployment and world["run"]["name"] not in by_deployment
    assert f'<option value="{other_dep["id"]}" selected>' in by_deployment
    assert world["run"]["name"] in client.get(f"/w/{api.workspace}/runs?pool=pool").text
    empty = client.get(f"/w/{api.workspace}/runs?pool=second").text
    assert "No flow runs match these filters" in empty and world["run"]["name"] not in empty
    assert "No flow runs" in client.get(f"/w/{api.workspace}/runs?pool=no-such-pool").text
    failed_link = client.get(f"/w/{api.workspace}/runs?pool=pool").text
    assert 'href="?state=FAILED&amp;pool=pool"' in failed_link


def test_runs_filter_by_flow_tag_and_scheduled_time(app, api, world):
    etl = api.deployment(name="nightly", flow_name="etl")
    tagged = api.run(etl["id"], tags=["finance", "eu"], scheduled_time=T0.isoformat(), name="tagged-run")
    later = api.run(etl["id"], tags=["eu"], scheduled_time=(T0 + timedelta(days=2)).isoformat(), name="later-run")
    client = sign_in(app, api.key)

    def names(query: str) -> set[str]:
        answer = client.get(f"/w/{api.workspace}/runs?{query}")
        assert answer.status_code == 200, answer.text
        return set(run_names(answer.text))

    assert names("flow=etl") == {"tagged-run", "later-run"}
    assert names("tag=eu") == {"tagged-run", "later-run"} and names("tag=finance") == {"tagged-run"}
    assert names("flow=flow&tag=eu") == set()
    assert names("flow=etl&from=2026-06-02T00:00") == {"later-run"}
    assert names("flow=etl&from=2026-05-01T00:00&to=2026-06-02T00:00") == {"tagged-run"}
    assert names("flow=etl&to=2026-06-01T14:30%2B02:00") == {"tagged-run"}  # an offset is honoured: 12:30 UTC
    assert names("flow=etl&to=2026-06-01T13:30%2B02:00") == set()  # 11:30 UTC
    page = client.get(f"/w/{api.workspace}/runs?flow=etl").text
    assert 'href="?flow=etl&amp;tag=finance"' in page  # a run's tag filters by it
    assert tagged["id"] in page and later["id"] in page


def test_cursor_pages_walk_every_run_once_in_either_order(app, api, world):
    dep = world["dep"]
    made = [api.run(dep["id"], name=f"run-{i:03}", scheduled_time=(T0 + timedelta(minutes=i // 2)).isoformat())
            for i in range(PAGE_SIZE + 7)]
    client = sign_in(app, api.key)
    for sort in ("newest", "oldest"):
        seen: list[str] = []
        query: str | None = f"deployment={dep['id']}&sort={sort}"
        while query:
            page = client.get(f"/w/{api.workspace}/runs?{query}").text
            names = run_names(page)
            assert len(names) <= PAGE_SIZE
            seen += names
            query = next_link(page)
            if query:
                assert f"deployment={dep['id']}" in query and ("sort=oldest" in query) == (sort == "oldest")
                assert "Newest first page" in client.get(f"/w/{api.workspace}/runs?{query}").text or sort == "oldest"
        ours = [name for name in seen if name.startswith("run-")]
        ordered = sorted(made, key=lambda r: (r["scheduled_time"], r["id"]), reverse=sort == "newest")
        assert ours == [r["name"] for r in ordered], sort
        assert len(seen) == len(set(seen)) == len(made) + 1


def test_filter_options_are_escaped_and_mark_the_chosen_one():
    from pushpool.control_plane.web.common import select_options

    html = str(select_options([("a\"><script>", "<b>x</b> & y"), ("id-2", "flow/dep")], "id-2"))
    assert html == ('<option value="a&#34;&gt;&lt;script&gt;">&lt;b&gt;x&lt;/b&gt; &amp; y</option>'
                    '<option value="id-2" selected>flow/dep</option>')
