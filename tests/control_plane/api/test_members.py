"""Users of the instance and members of a workspace: who adds whom, roles, removal, the last owner."""

from __future__ import annotations


def member_roles(api) -> dict[str, str]:
    return {m["actor"]["name"]: m["role"] for m in api.ok("GET", api.ws("/members"))}


def test_an_owner_adds_a_user_by_name_sets_the_role_and_removes_them(api):
    api.ok("POST", "/api/users", json={"name": "dana"})  # an instance user, in no workspace yet
    dana = api.ok("POST", api.ws("/members"), status=201, json={"user": "dana", "role": "viewer"})
    assert dana["role"] == "viewer" and dana["actor"]["kind"] == "user"
    assert member_roles(api) == {"admin": "owner", "dana": "viewer"}

    again = api.post(api.ws("/members"), json={"user": "dana"})
    assert again.status_code == 409 and "already a member (viewer)" in again.json()["detail"]
    api.ok("PUT", api.ws(f"/members/{dana['actor']['id']}"), json={"role": "developer"})
    assert member_roles(api)["dana"] == "developer"

    api.ok("DELETE", api.ws(f"/members/{dana['actor']['id']}"), status=204)
    assert member_roles(api) == {"admin": "owner"}
    missing = api.request("DELETE", api.ws(f"/members/{dana['actor']['id']}"))
    assert missing.status_code == 404


def test_a_removed_member_loses_the_workspace_at_once_and_only_that_one(api):
    api.ok("POST", "/api/workspaces", json={"name": "second"})
    key = api.user("erin", role="developer")
    api.ok("PUT", f"/api/workspaces/second/members/{api.as_key(key).ok('GET', '/api/me')['actor']['id']}",
           json={"role": "viewer"})
    erin = api.as_key(key)
    erin_id = erin.ok("GET", "/api/me")["actor"]["id"]
    assert erin.get(erin.ws("/work_pools")).status_code == 200
    api.ok("DELETE", api.ws(f"/members/{erin_id}"), status=204)
    assert erin.get(erin.ws("/work_pools")).status_code == 404  # like a workspace that does not exist
    assert [m["workspace_name"] for m in erin.ok("GET", "/api/me")["memberships"]] == ["second"]
    assert erin.as_key(key, workspace="second").get("/api/workspaces/second/work_pools").status_code == 200


def test_the_last_owner_cannot_leave_or_be_demoted(api):
    me = api.ok("GET", "/api/me")["actor"]["id"]
    demoted = api.request("PUT", api.ws(f"/members/{me}"), json={"role": "developer"})
    removed = api.request("DELETE", api.ws(f"/members/{me}"))
    for response in (demoted, removed):
        assert response.status_code == 409 and "last owner" in response.json()["detail"]
    assert member_roles(api) == {"admin": "owner"}
    key = api.user("fay", role="owner")
    api.ok("PUT", api.ws(f"/members/{me}"), json={"role": "developer"})  # another owner exists now
    assert member_roles(api) == {"admin": "developer", "fay": "owner"}
    fay = api.as_key(key)
    fay_id = fay.ok("GET", "/api/me")["actor"]["id"]
    assert fay.request("DELETE", fay.ws(f"/members/{fay_id}")).status_code == 409


def test_users_by_name_are_unique_and_ambiguous_or_unknown_names_are_clear(api):
    api.ok("POST", "/api/users", json={"name": "gil"})
    taken = api.post("/api/users", json={"name": "gil"})
    assert taken.status_code == 409 and "gil" in taken.json()["detail"]
    unknown = api.post(api.ws("/members"), json={"user": "nobody"})
    assert unknown.status_code == 404 and "pushpool user create" in unknown.json()["detail"]
    by_id = api.ok("GET", "/api/users")
    assert [u["name"] for u in by_id] == ["admin", "gil"]
    gil = next(u for u in by_id if u["name"] == "gil")
    assert api.ok("POST", api.ws("/members"), json={"user": gil["id"]})["role"] == "developer"


def test_service_accounts_are_listed_but_leave_only_by_deletion(api):
    sa = api.ok("POST", api.ws("/service_accounts"), json={"name": "ci", "role": "runner"})
    assert member_roles(api) == {"admin": "owner", "ci": "runner"}
    response = api.request("DELETE", api.ws(f"/members/{sa['account']['id']}"))
    assert response.status_code == 409 and "service-account delete" in response.json()["detail"]
    by_name = api.post(api.ws("/members"), json={"user": "ci"})  # not a user: never resolved by name
    assert by_name.status_code == 404


def test_who_may_see_and_change_members(api):
    viewer = api.as_key(api.user("hal", role="viewer"))
    developer = api.as_key(api.user("ida", role="developer"))
    assert {m["actor"]["name"] for m in viewer.ok("GET", viewer.ws("/members"))} == {"admin", "hal", "ida"}
    assert all("key" not in str(m).lower() for m in viewer.ok("GET", viewer.ws("/members")))
    api.ok("POST", "/api/users", json={"name": "joe"})
    hal_id = viewer.ok("GET", "/api/me")["actor"]["id"]
    for caller in (viewer, developer):
        assert caller.post(caller.ws("/members"), json={"user": "joe"}).status_code == 403
        assert caller.request("DELETE", caller.ws(f"/members/{hal_id}")).status_code == 403
        assert caller.request("PUT", caller.ws(f"/members/{hal_id}"), json={"role": "owner"}).status_code == 403
        assert caller.get("/api/users").status_code == 403  # only instance administrators list users
    assert member_roles(api)["hal"] == "viewer"


def test_an_owner_of_another_workspace_cannot_pull_its_service_accounts_or_touch_its_members(api):
    api.ok("POST", "/api/workspaces", json={"name": "other"})  # the instance admin is its first owner
    outsider = api.as_key(api.user("kim", role="owner", workspace="other"), workspace="other")
    theirs = api.ok("POST", api.ws("/service_accounts"), json={"name": "deploy-bot"})
    # Adding another workspace's service account to its own workspace: not found, by id or by name.
    assert outsider.request("PUT", outsider.ws(f"/members/{theirs['account']['id']}"),
                            json={"role": "owner"}).status_code == 404
    assert outsider.post(outsider.ws("/members"), json={"user": theirs["account"]["id"]}).status_code == 404
    assert {m["actor"]["name"] for m in outsider.ok("GET", outsider.ws("/members"))} == {"admin", "kim"}
    assert member_roles(api) == {"admin": "owner", "deploy-bot": "runner"}


def test_a_run_token_cannot_read_or_change_members(api, ctx, fake_pusher):
    from tests.control_plane.api.test_auth import run_token_for

    runner, _, _, _ = run_token_for(api, ctx, fake_pusher)
    me = api.ok("GET", "/api/me")["actor"]["id"]
    assert runner.get(runner.ws("/members")).status_code == 403
    assert runner.post(runner.ws("/members"), json={"user": "admin"}).status_code == 403
    assert runner.request("DELETE", runner.ws(f"/members/{me}")).status_code == 403
    assert runner.get("/api/users").status_code == 403
