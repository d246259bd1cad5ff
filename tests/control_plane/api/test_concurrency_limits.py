"""Tag concurrency limits: slots taken all-or-none, full limits say when to ask again, leases end, runs keep to
their own holders."""

from __future__ import annotations

from tests.control_plane.api.test_auth import run_token_for


def acquire(caller, holder: str, *tags: str, lease: float = 60) -> dict:
    return caller.ok("POST", caller.ws("/concurrency_limits/acquire"),
                     json={"holder": holder, "tags": list(tags), "lease_seconds": lease})


def test_slots_up_to_the_limit_all_or_none_and_given_back(api):
    api.ok("PUT", api.ws("/concurrency_limits/db"), json={"limit": 2})
    api.ok("PUT", api.ws("/concurrency_limits/api"), json={"limit": 1})
    assert acquire(api, "t1", "db", "api") == {"acquired": True, "limited": ["api", "db"]}
    blocked = acquire(api, "t2", "db", "api")  # db has room, api not: nothing is taken
    assert not blocked["acquired"] and blocked["full"] == ["api"] and 0.5 <= blocked["retry_after"] <= 5
    assert len(api.ok("GET", api.ws("/concurrency_limits/db"))["holders"]) == 1
    assert acquire(api, "t3", "db")["acquired"]
    assert not acquire(api, "t4", "db")["acquired"]
    assert acquire(api, "t1", "db", "api")["acquired"]  # asking again while holding: a renewal
    released = api.ok("POST", api.ws("/concurrency_limits/release"), json={"holder": "t1", "tags": ["db", "api"]})
    assert sorted(released["released"]) == ["api", "db"]
    assert acquire(api, "t4", "db", "api")["acquired"]
    assert acquire(api, "t9", "untracked") == {"acquired": True, "limited": []}


def test_a_dead_runners_slot_frees_itself_when_its_lease_ends(api, clock):
    api.ok("PUT", api.ws("/concurrency_limits/db"), json={"limit": 1})
    assert acquire(api, "dead", "db", lease=10)["acquired"]
    assert not acquire(api, "next", "db")["acquired"]
    clock.advance(11)
    assert acquire(api, "next", "db")["acquired"]
    assert list(api.ok("GET", api.ws("/concurrency_limits/db"))["holders"]) == ["next"]


def test_limits_are_listed_changed_and_deleted_by_developers_only(api):
    viewer = api.as_key(api.user("vera", role="viewer"))
    assert viewer.request("PUT", viewer.ws("/concurrency_limits/db"), json={"limit": 1}).status_code == 403
    assert viewer.post(viewer.ws("/concurrency_limits/acquire"), json={"holder": "x", "tags": ["db"]}).status_code \
        == 403
    api.ok("PUT", api.ws("/concurrency_limits/db"), json={"limit": 1})
    assert api.ok("PUT", api.ws("/concurrency_limits/db"), json={"limit": 3})["limit"] == 3
    assert [c["tag"] for c in viewer.ok("GET", viewer.ws("/concurrency_limits"))] == ["db"]
    assert api.request("PUT", api.ws("/concurrency_limits/db"), json={"limit": -1}).status_code == 422
    api.ok("DELETE", api.ws("/concurrency_limits/db"), status=204)
    assert api.get(api.ws("/concurrency_limits/db")).status_code == 404


def test_a_run_token_holds_slots_only_in_its_own_name(api, ctx, fake_pusher):
    api.ok("PUT", api.ws("/concurrency_limits/db"), json={"limit": 1})
    assert acquire(api, "someone", "db")["acquired"]
    token, run, _, _ = run_token_for(api, ctx, fake_pusher)
    released = token.ok("POST", token.ws("/concurrency_limits/release"), json={"holder": "someone", "tags": ["db"]})
    assert released == {"released": []}  # its 'someone' is its own run's, not the other holder
    assert not acquire(token, "t1", "db")["acquired"]
    api.ok("POST", api.ws("/concurrency_limits/release"), json={"holder": "someone", "tags": ["db"]})
    assert acquire(token, "t1", "db")["acquired"]
    assert list(api.ok("GET", api.ws("/concurrency_limits/db"))["holders"]) == [f"{run['id']}/t1"]
    assert token.request("PUT", token.ws("/concurrency_limits/db"), json={"limit": 9}).status_code == 403
