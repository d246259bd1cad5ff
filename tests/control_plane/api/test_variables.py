"""Workspace variables: set, read, list, delete; bounded; a run token reads and sets one, never more."""

from __future__ import annotations

from tests.control_plane.api.test_auth import run_token_for


def test_set_read_list_and_delete(api):
    made = api.ok("PUT", api.ws("/variables/region"), json={"value": "eu-west-1", "tags": ["aws"]})
    assert (made["name"], made["value"], made["tags"]) == ("region", "eu-west-1", ["aws"])
    api.ok("PUT", api.ws("/variables/limits"), json={"value": {"rows": 1000, "batch": [1, 2]}})
    again = api.ok("PUT", api.ws("/variables/region"), json={"value": "eu-central-1"})
    assert again["value"] == "eu-central-1" and again["created"] == made["created"]
    refused = api.request("PUT", api.ws("/variables/region"), json={"value": "x", "overwrite": False})
    assert refused.status_code == 409 and "overwrite" in refused.json()["detail"]
    assert [v["name"] for v in api.ok("GET", api.ws("/variables"))] == ["limits", "region"]
    assert api.ok("GET", api.ws("/variables/limits"))["value"] == {"rows": 1000, "batch": [1, 2]}
    api.ok("DELETE", api.ws("/variables/region"), status=204)
    assert api.get(api.ws("/variables/region")).status_code == 404
    assert api.request("DELETE", api.ws("/variables/region")).status_code == 404


def test_names_sizes_and_counts_are_bounded(api_with):
    small = api_with(max_variables_per_workspace=2)
    for name, body, code in (("bad name", {"value": 1}, 422), ("x" * 101, {"value": 1}, 422),
                             ("big", {"value": "x" * 11_000}, 422), ("ok", {"value": 1, "extra": 2}, 422)):
        response = small.request("PUT", small.ws(f"/variables/{name}"), json=body)
        assert response.status_code == code, (name, response.text)
    small.ok("PUT", small.ws("/variables/a"), json={"value": 1})
    small.ok("PUT", small.ws("/variables/b"), json={"value": 2})
    full = small.request("PUT", small.ws("/variables/c"), json={"value": 3})
    assert full.status_code == 413 and "PUSHPOOL_MAX_VARIABLES_PER_WORKSPACE" in full.json()["detail"]
    small.ok("PUT", small.ws("/variables/a"), json={"value": 10})  # replacing one is fine at the limit


def test_roles_and_run_tokens(api, ctx, fake_pusher):
    api.ok("PUT", api.ws("/variables/region"), json={"value": "eu"})
    viewer = api.as_key(api.user("vera", role="viewer"))
    assert viewer.ok("GET", viewer.ws("/variables/region"))["value"] == "eu"
    assert viewer.request("PUT", viewer.ws("/variables/region"), json={"value": "x"}).status_code == 403
    assert viewer.request("DELETE", viewer.ws("/variables/region")).status_code == 403
    token, _, _, _ = run_token_for(api, ctx, fake_pusher)
    assert token.ok("GET", token.ws("/variables/region"))["value"] == "eu"
    assert token.ok("PUT", token.ws("/variables/last_run"), json={"value": "ok"})["value"] == "ok"
    assert token.get(token.ws("/variables")).status_code == 403  # no listing
    assert token.request("DELETE", token.ws("/variables/region")).status_code == 403
    api.ok("POST", "/api/workspaces", json={"name": "other"})
    assert token.get("/api/workspaces/other/variables/region").status_code == 404
    assert api.ok("GET", api.ws("/variables/region"))["value"] == "eu"
