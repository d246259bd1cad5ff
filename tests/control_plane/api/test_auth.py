"""Authentication, roles, expiry, revocation, workspace isolation and run tokens."""

from __future__ import annotations

from datetime import timedelta

import pytest

from pushpool.control_plane.services.dispatcher import Dispatcher


def test_me_identifies_the_key(api):
    me = api.ok("GET", "/api/me")
    assert me["kind"] == "user" and me["actor"]["name"] == "admin" and me["actor"]["is_admin"]
    assert me["memberships"] == [{"workspace_id": me["memberships"][0]["workspace_id"],
                                  "workspace_name": "default", "role": "owner"}]
    assert me["api_key"]["prefix"] == api.key[:10] and "key_hash" not in me["api_key"]


@pytest.mark.parametrize("header", [None, "Bearer", "Bearer nonsense", "Basic abc", "Bearer ppu_unknown",
                                    "Bearer ppr_00000000000000000000000000000000_x"])
def test_missing_or_bad_credentials_are_401(api, header):
    headers = {"Authorization": header} if header else {}
    response = api.client.get("/api/me", headers=headers)
    assert response.status_code == 401
    assert response.json()["detail"] == "Invalid authentication credentials"
    assert response.headers["www-authenticate"] == "Bearer"


def test_expired_key_is_401_with_reason(api, clock):
    key = api.ok("POST", "/api/api_keys", json={"name": "short", "expires_in_seconds": 60})["key"]
    assert api.as_key(key).get("/api/me").status_code == 200
    clock.advance(61)
    response = api.as_key(key).get("/api/me")
    assert response.status_code == 401 and response.json()["reason"] == "expired"


def test_revoked_key_is_401(api):
    issued = api.ok("POST", "/api/api_keys", json={"name": "temp"})
    assert issued["key"].startswith("ppu_")
    api.ok("DELETE", f"/api/api_keys/{issued['api_key']['id']}")
    response = api.as_key(issued["key"]).get("/api/me")
    assert response.status_code == 401 and response.json()["reason"] == "revoked"


def test_keys_are_stored_only_as_hashes(api, ctx):
    issued = api.ok("POST", "/api/api_keys", json={"name": "x"})
    from pathlib import Path

    raw = Path(ctx.store.path).read_bytes()
    assert issued["key"].encode() not in raw
    listed = api.ok("GET", "/api/api_keys")
    assert all("key" not in k and "key_hash" not in k for k in listed)


@pytest.mark.parametrize("role, allowed", [
    ("viewer", {"read"}),
    ("runner", {"read", "run"}),
    ("developer", {"read", "run", "write"}),
    ("owner", {"read", "run", "write", "admin"}),
])
def test_role_permissions(api, role, allowed):
    api.pool()
    dep = api.deployment()
    user = api.as_key(api.user(f"u-{role}", role=role))
    checks = {
        "read": lambda: user.get(user.ws("/work_pools")),
        "run": lambda: user.post(user.ws(f"/deployments/{dep['id']}/runs"), json={}),
        "write": lambda: user.post(user.ws("/work_pools"), json={"name": f"p-{role}", "type": "fake:push"}),
        "admin": lambda: user.post(user.ws("/service_accounts"), json={"name": f"sa-{role}"}),
    }
    for permission, call in checks.items():
        code = call().status_code
        if permission in allowed:
            assert code < 300, (role, permission, code)
        else:
            assert code == 403, (role, permission, code)


def test_only_admins_create_workspaces_and_users(api):
    dev = api.as_key(api.user("dev"))
    assert dev.post("/api/workspaces", json={"name": "mine"}).status_code == 403
    assert dev.post("/api/users", json={"name": "x"}).status_code == 403
    assert api.post("/api/workspaces", json={"name": "mine"}).status_code == 201
    assert api.post("/api/workspaces", json={"name": "mine"}).status_code == 409


@pytest.fixture
def two_tenants(api):
    """Workspace 'default' with a pool, deployment, queue, block and run; and an outsider workspace."""
    api.pool()
    dep = api.deployment()
    run = api.run(dep["id"])
    api.ok("POST", api.ws("/blocks"), json={"name": "b", "type": "secret", "data": {"value": "v"}})
    sa = api.ok("POST", api.ws("/service_accounts"), json={"name": "bot"})
    api.ok("POST", "/api/workspaces", json={"name": "other"})
    outsider = api.as_key(api.user("outsider", role="owner", workspace="other"), workspace="default")
    return {"dep": dep, "run": run, "sa": sa, "outsider": outsider}


def test_another_workspace_sees_404_for_every_resource_and_changes_nothing(api, two_tenants):
    out = two_tenants["outsider"]
    dep_id, run_id, sa_id = two_tenants["dep"]["id"], two_tenants["run"]["id"], two_tenants["sa"]["account"]["id"]
    attempts = [
        ("GET", "/work_pools"), ("GET", "/work_pools/pool"), ("PATCH", "/work_pools/pool"),
        ("DELETE", "/work_pools/pool"), ("GET", "/work_pools/pool/queues"), ("GET", "/work_pools/pool/queues/default"),
        ("POST", "/work_pools/pool/queues"), ("GET", "/blocks"), ("GET", "/blocks/b"), ("DELETE", "/blocks/b"),
        ("GET", "/deployments"), ("GET", f"/deployments/{dep_id}"), ("PATCH", f"/deployments/{dep_id}"),
        ("DELETE", f"/deployments/{dep_id}"), ("POST", f"/deployments/{dep_id}/runs"), ("GET", "/flow_runs"),
        ("GET", f"/flow_runs/{run_id}"), ("POST", f"/flow_runs/{run_id}/cancel"),
        ("POST", f"/flow_runs/{run_id}/set_state"), ("GET", f"/flow_runs/{run_id}/states"),
        ("GET", "/service_accounts"), ("DELETE", f"/service_accounts/{sa_id}"),
        ("POST", f"/service_accounts/{sa_id}/rotate"), ("GET", "/members"), ("POST", "/members"),
        ("DELETE", f"/members/{sa_id}"), ("PUT", f"/members/{sa_id}"), ("GET", "/flows"),
        ("POST", f"/flow_runs/{run_id}/retry"), ("DELETE", f"/flow_runs/{run_id}"),
        ("GET", f"/flow_runs/{run_id}/task_runs"), ("POST", f"/flow_runs/{run_id}/task_runs"),
    ]
    for method, path in attempts:
        response = out.request(method, out.ws(path), json={})
        assert response.status_code == 404, (method, path, response.status_code)
    # Even addressing its own workspace, the outsider cannot reach default's objects by id.
    mine = out.as_key(out.key, workspace="other")
    assert mine.get(mine.ws(f"/flow_runs/{run_id}")).status_code == 404
    assert mine.get(mine.ws(f"/deployments/{dep_id}")).status_code == 404
    assert mine.post(mine.ws(f"/flow_runs/{run_id}/cancel")).status_code == 404
    # Keys and memberships: another tenant can neither revoke a key nor join the workspace.
    own_key_id = api.ok("GET", "/api/me")["api_key"]["id"]
    assert out.request("DELETE", f"/api/api_keys/{own_key_id}").status_code == 404
    outsider_id = out.ok("GET", "/api/me")["actor"]["id"]
    assert out.request("PUT", out.ws(f"/members/{outsider_id}"), json={"role": "owner"}).status_code == 404
    assert [m["workspace_name"] for m in out.ok("GET", "/api/me")["memberships"]] == ["other"]
    # Nothing changed.
    assert api.get("/api/me").status_code == 200
    assert api.ok("GET", api.ws(f"/flow_runs/{run_id}"))["state"]["type"] == "SCHEDULED"
    assert api.ok("GET", api.ws("/blocks/b"))["name"] == "b"


def test_service_account_keys_rotate(api):
    sa = api.ok("POST", api.ws("/service_accounts"), json={"name": "ci", "role": "runner"})
    assert sa["key"].startswith("ppb_")
    bot = api.as_key(sa["key"])
    assert bot.ok("GET", "/api/me")["kind"] == "service_account"
    assert bot.post("/api/api_keys", json={}).status_code == 403
    rotated = api.ok("POST", api.ws(f"/service_accounts/{sa['account']['id']}/rotate"))
    assert bot.get("/api/me").status_code == 401
    assert api.as_key(rotated["key"]).get("/api/me").status_code == 200
    api.ok("DELETE", api.ws(f"/service_accounts/{sa['account']['id']}"))
    assert api.as_key(rotated["key"]).get("/api/me").status_code == 401


def run_token_for(api, ctx, fake_pusher):
    api.pool()
    dep = api.deployment()
    run = api.run(dep["id"])
    other = api.run(dep["id"])
    d = Dispatcher(ctx)
    d.run_once()
    d.close()
    job = next(j for j in fake_pusher.jobs if j.flow_run_id == run["id"])
    return api.as_key(job.env["PUSHPOOL_RUN_TOKEN"]), run, other, dep


def test_run_token_reads_and_reports_only_its_own_run(api, ctx, fake_pusher):
    token, run, other, dep = run_token_for(api, ctx, fake_pusher)
    me = token.ok("GET", "/api/me")
    assert me["kind"] == "run_token" and me["flow_run_id"] == run["id"]
    assert token.ok("GET", token.ws(f"/flow_runs/{run['id']}"))["id"] == run["id"]
    assert token.ok("GET", token.ws(f"/deployments/{dep['id']}"))["id"] == dep["id"]
    assert token.ok("POST", token.ws(f"/flow_runs/{run['id']}/set_state"), json={"type": "RUNNING"})
    assert token.get(token.ws(f"/flow_runs/{other['id']}")).status_code == 404
    assert token.post(token.ws(f"/flow_runs/{other['id']}/set_state"), json={"type": "RUNNING"}).status_code == 404
    assert token.post(token.ws(f"/flow_runs/{run['id']}/set_state"), json={"type": "CANCELLED"}).status_code == 403
    for method, path in [("GET", "/flow_runs"), ("GET", "/blocks"), ("GET", "/work_pools"),
                         ("POST", f"/deployments/{dep['id']}/runs"), ("GET", "/deployments")]:
        assert token.request(method, token.ws(path), json={}).status_code == 403, path
    assert token.post("/api/api_keys", json={}).status_code == 403
    assert token.get("/api/workspaces").status_code == 403


def test_a_run_token_reading_its_own_run_reads_it_once(api, ctx, fake_pusher, monkeypatch):
    """Authentication has just read the token's run: the runner's reads of it are answered from that (on DynamoDB
    each store read is a billed request), and still as of this request."""
    token, run, other, dep = run_token_for(api, ctx, fake_pusher)
    token.ok("POST", token.ws(f"/flow_runs/{run['id']}/set_state"), json={"type": "RUNNING"})
    reads: list[str] = []
    original = ctx.store.get_flow_run
    monkeypatch.setattr(ctx.store, "get_flow_run", lambda ws, run_id: reads.append(run_id) or original(ws, run_id))
    assert token.ok("GET", token.ws(f"/flow_runs/{run['id']}"))["state"]["type"] == "RUNNING"
    assert reads == [run["id"]]
    assert token.get(token.ws(f"/flow_runs/{other['id']}")).status_code == 404  # still its own run only


def test_run_token_expires_with_the_run_deadline(api, ctx, fake_pusher, clock):
    token, run, _, _ = run_token_for(api, ctx, fake_pusher)
    clock.advance(hours=24, seconds=ctx.settings.run_token_grace_seconds - 5)
    assert token.get(token.ws(f"/flow_runs/{run['id']}")).status_code == 200
    clock.advance(10)
    response = token.get(token.ws(f"/flow_runs/{run['id']}"))
    assert response.status_code == 401 and response.json()["reason"] == "expired"


def test_a_forged_run_token_for_a_real_run_is_rejected(api, ctx, fake_pusher):
    token, run, _, _ = run_token_for(api, ctx, fake_pusher)
    forged = token.key[: token.key.rindex("_") + 1] + "A" * 43
    assert api.as_key(forged).get("/api/me").status_code == 401


def test_expired_service_account_key(api, clock):
    sa = api.ok("POST", api.ws("/service_accounts"), json={"name": "tmp", "expires_in_seconds": 30})
    clock.advance(timedelta(seconds=31).total_seconds())
    assert api.as_key(sa["key"]).get("/api/me").status_code == 401
