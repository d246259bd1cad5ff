"""The dashboard's work-pool pages over HTTP: health (active runs, at limit), the template's variables, the
rendered-job preview (blocks unresolved, secrets masked), what was provisioned, and who may pause."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.control_plane.web.test_pages import csrf_of, sign_in

TEMPLATE = {
    "job_configuration": {"image": "{{ image }}", "cpu": "{{ cpu }}", "env": "{{ env }}",
                          "credentials": "{{ credentials }}"},
    "variables": {"type": "object", "required": ["image"], "properties": {
        "image": {"type": "string", "description": "The <b>image</b> to run"},
        "cpu": {"type": "integer", "default": 1},
        "env": {"type": "object", "default": {"REGION": "eu"}},
        "credentials": {"type": "string", "default": "{{ pushpool.blocks.aws-creds }}"}}}}


@pytest.fixture
def dep(api, fake_pusher):
    api.pool(base_job_template=TEMPLATE, concurrency_limit=2)
    return api.deployment(image="ghcr.io/acme/etl:1", job_variables={
        "cpu": 4, "env": {"DB_PASSWORD": "hunter2", "MODE": "fast"}})


def test_pools_pause_and_resume_for_writers_only(app, api, dep):
    client = sign_in(app, api.key)
    page = client.get(f"/w/{api.workspace}/pools")
    assert ">Pause</button>" in page.text
    token = csrf_of(page.text)
    assert client.post(f"/w/{api.workspace}/pools/pool/pause", data={}).status_code == 403  # no CSRF token
    assert client.post(f"/w/{api.workspace}/pools/pool/pause", data={"csrf": token}).status_code == 303
    assert api.ok("GET", api.ws("/work_pools/pool"))["paused"] is True
    assert ">Resume</button>" in client.get(f"/w/{api.workspace}/pools").text
    runner = sign_in(app, api.user("rita", role="runner"))
    page = runner.get(f"/w/{api.workspace}/pools")
    assert page.status_code == 200 and ">Resume</button>" not in page.text
    assert runner.post(f"/w/{api.workspace}/pools/pool/resume", data={"csrf": csrf_of(page.text)}).status_code == 403
    assert client.post(f"/w/{api.workspace}/pools/pool/resume", data={"csrf": token}).status_code == 303
    assert api.ok("GET", api.ws("/work_pools/pool"))["paused"] is False
    assert client.post(f"/w/{api.workspace}/pools/nope/pause", data={"csrf": token}).status_code == 404



def test_a_pool_at_its_limit_says_so_on_the_list_its_page_and_the_overview(app, api, ctx, dep):
    for _ in range(3):
        api.run(dep["id"])
    client = sign_in(app, api.key)
    assert "at limit" not in client.get(f"/w/{api.workspace}/pools").text
    pool = ctx.store.get_work_pool(ctx.store.get_workspace(api.workspace).id, "pool")
    now = ctx.clock.now()
    claimed = ctx.store.claim_flow_runs(pool.id, now + timedelta(minutes=1), now + timedelta(minutes=5), 10).claimed
    assert len(claimed) == 2  # the limit holds one back
    listing = client.get(f"/w/{api.workspace}/pools").text
    assert "2 / 2" in listing and "at limit" in listing
    page = client.get(f"/w/{api.workspace}/pools/pool").text
    assert "2 of 2" in page and "at limit" in page
    overview = client.get(f"/w/{api.workspace}/").text
    assert "2 active of 2" in overview and "at limit" in overview


def test_the_preview_renders_the_job_without_blocks_or_secrets(app, api, dep):
    client = sign_in(app, api.key)
    defaults = client.get(f"/w/{api.workspace}/pools/pool")
    assert defaults.status_code == 200
    text = defaults.text
    assert "The &lt;b&gt;image&lt;/b&gt; to run" in text and "<b>image</b>" not in text
    assert "&#34;REGION&#34;: &#34;eu&#34;" in text and "&#34;cpu&#34;: 1" in text
    assert "{{ pushpool.blocks.aws-creds }}" in text  # a reference, never the block's fields
    chosen = client.get(f"/w/{api.workspace}/pools/pool?deployment={dep['id']}").text
    assert "ghcr.io/acme/etl:1" in chosen and "&#34;cpu&#34;: 4" in chosen
    assert "&#34;MODE&#34;: &#34;fast&#34;" in chosen
    assert "hunter2" not in chosen and "&#34;DB_PASSWORD&#34;: &#34;••••••&#34;" in chosen
    assert "hunter2" not in client.get(f"/w/{api.workspace}/deployments/{dep['id']}").text
    unknown = client.get(f"/w/{api.workspace}/pools/pool?deployment=someone-elses")
    assert unknown.status_code == 200 and "and its defaults, as the dispatcher" in unknown.text


def test_what_a_provisioner_created_is_summarised(app, api, dep):
    client = sign_in(app, api.key)
    assert "Nothing provisioned by pushpool" in client.get(f"/w/{api.workspace}/pools/pool").text
    api.ok("PATCH", api.ws("/work_pools/pool"), json={"provisioning": {
        "region": "eu-west-1", "account": "123456789012", "credentials_block": "pool-aws",
        "created": {"cluster": "arn:aws:ecs:eu-west-1:123456789012:cluster/pool",
                    "subnets": ["subnet-1", "subnet-2"]}}})
    page = client.get(f"/w/{api.workspace}/pools/pool").text
    assert "eu-west-1" in page and "pool-aws" in page and "cluster/pool" in page and "subnet-2" in page
    assert "pushpool work-pool deprovision pool" in page


def test_another_workspaces_pool_is_not_found(app, api, dep):
    api.ok("POST", "/api/workspaces", json={"name": "other"})
    other = api.as_key(api.key, "other")
    other.pool(name="secret-pool")
    client = sign_in(app, api.key)
    assert client.get(f"/w/{api.workspace}/pools/secret-pool").status_code == 404
    viewer = sign_in(app, api.user("vic", role="viewer"))
    page = viewer.get(f"/w/{api.workspace}/pools/pool")
    assert page.status_code == 200 and ">Pause</button>" not in page.text
