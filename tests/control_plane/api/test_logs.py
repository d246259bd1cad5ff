"""Run logs kept by the control plane: a runner's numbered batches, pages, tails, the cap, who may do what."""

from __future__ import annotations

from tests.control_plane.api.test_auth import run_token_for

T = "2026-06-01T12:00:00.250000+00:00"


def lines(*messages: str, **fields) -> list[dict]:
    return [{"timestamp": T, "message": m, **fields} for m in messages]


def test_a_runner_sends_batches_and_a_reader_follows_them_with_a_cursor(api, ctx, fake_pusher):
    token, run, _, _ = run_token_for(api, ctx, fake_pusher)
    path = token.ws(f"/flow_runs/{run['id']}/logs")
    assert token.ok("POST", path, status=202, json={"seq": 0, "lines": lines("hello", stream="stdout")}) == {
        "accepted": 1, "truncated": False}
    token.ok("POST", path, json={"seq": 1, "lines": lines("loaded 3 rows", level=20, logger="etl.load",
                                                        task_run_id="t1")})
    page = api.ok("GET", api.ws(f"/flow_runs/{run['id']}/logs"))
    assert page["source"] == "control_plane" and page["supported"]
    assert page["lines"] == ["hello", "12:00:00.250 | INFO    | etl.load - loaded 3 rows"]
    token.ok("POST", path, json={"seq": 2, "lines": lines("more", stream="stderr")})
    token.ok("POST", path, json={"seq": 1, "lines": lines("loaded 3 rows", logger="etl.load")})  # a resend
    after = api.ok("GET", api.ws(f"/flow_runs/{run['id']}/logs"), params={"cursor": page["cursor"]})
    assert after["lines"] == ["more"]
    assert api.ok("GET", api.ws(f"/flow_runs/{run['id']}/logs"), params={"cursor": after["cursor"]})["lines"] == []
    tail = api.ok("GET", api.ws(f"/flow_runs/{run['id']}/logs"), params={"tail": 2})
    assert [line.rsplit(" ", 1)[-1] for line in tail["lines"]] == ["rows", "more"]


def test_past_the_cap_one_notice_says_the_log_was_truncated(api_with):
    capped = api_with(max_log_bytes_per_flow_run=2000)
    capped.pool()
    run = capped.run(capped.deployment()["id"])
    path = capped.ws(f"/flow_runs/{run['id']}/logs")
    assert not capped.ok("POST", path, json={"seq": 0, "lines": lines("x" * 1000)})["truncated"]
    assert capped.ok("POST", path, json={"seq": 1, "lines": lines("y" * 1000)}) == {"accepted": 0,
                                                                                   "truncated": True}
    assert capped.ok("POST", path, json={"seq": 2, "lines": lines("z")})["truncated"]
    shown = capped.ok("GET", path)["lines"]
    assert len(shown) == 2 and shown[0].endswith("run - " + "x" * 1000) and "log truncated" in shown[1]
    assert "PUSHPOOL_MAX_LOG_BYTES_PER_FLOW_RUN" in shown[1]


def text(value: str, stream: str = "stdout") -> dict:
    return {"stream": stream, "timestamp": 1_700_000_000.5, "text": value}


def test_captured_text_is_kept_line_by_line_and_long_lines_in_pieces(api, ctx, fake_pusher):
    token, run, _, _ = run_token_for(api, ctx, fake_pusher)
    path = token.ws(f"/flow_runs/{run['id']}/logs")
    batch = [text("first\n\nthird"), {"timestamp": 1_700_000_001, "message": "a record", "logger": "etl"},
             text("w" * 16_390, stream="stderr")]
    assert token.ok("POST", path, json={"seq": 0, "lines": batch})["accepted"] == 5
    shown = api.ok("GET", api.ws(f"/flow_runs/{run['id']}/logs"))["lines"]
    assert shown[:3] == ["first", "", "third"] and shown[3].endswith("| INFO    | etl - a record")
    assert shown[4:] == ["w" * 16_384, "w" * 6]
    assert api.ok("GET", api.ws(f"/flow_runs/{run['id']}/logs"), params={"tail": 2})["lines"] == shown[4:]


def test_captured_text_may_come_as_a_plain_text_body(api, ctx, fake_pusher):
    token, run, other, _ = run_token_for(api, ctx, fake_pusher)
    path = token.ws(f"/flow_runs/{run['id']}/logs/text")
    query = {"seq": 0, "stream": "stderr", "timestamp": 1_700_000_000.25}
    answer = token.post(path, params=query, content="naïve\nsecond".encode())
    assert answer.status_code == 202 and answer.json() == {"accepted": 2, "truncated": False}
    token.ok("POST", token.ws(f"/flow_runs/{run['id']}/logs"), json={"seq": 1, "lines": lines("a record")})
    shown = api.ok("GET", api.ws(f"/flow_runs/{run['id']}/logs"))["lines"]
    assert shown[:2] == ["naïve", "second"] and shown[2].endswith("run - a record")
    for params, body, field in (({**query, "stream": "log"}, b"x", "stream"),
                                ({"stream": "stdout", "timestamp": 1.0}, b"x", "seq"),
                                ({**query, "timestamp": 9e12}, b"x", "timestamp"),
                                (query, b"\xff\xfe", "not UTF-8"),
                                (query, b"x" * (256 * 1024 + 1), "at most 262144")):
        response = token.post(path, params=params, content=body)
        assert response.status_code == 422 and field in response.text, (field, response.text)
    assert token.post(token.ws(f"/flow_runs/{other['id']}/logs/text"), params=query, content=b"x").status_code == 404
    viewer = api.as_key(api.user("vic", role="viewer"))
    assert viewer.post(viewer.ws(f"/flow_runs/{run['id']}/logs/text"), params=query,
                       content=b"x").status_code == 403


def test_bad_batches_are_refused_whole(api, ctx, fake_pusher):
    token, run, _, _ = run_token_for(api, ctx, fake_pusher)
    path = token.ws(f"/flow_runs/{run['id']}/logs")
    for body, field in (({"seq": 0, "lines": lines("x" * 16_385)}, "message"),
                        ({"seq": 0, "lines": lines("ok", stream="stdin")}, "stream"),
                        ({"seq": -1, "lines": lines("ok")}, "seq"),
                        ({"seq": 0, "lines": []}, "lines"),
                        ({"seq": 0, "lines": lines(*["l"] * 5001)}, "lines"),
                        ({"seq": 0, "lines": [text("é" * 100_000), text("é" * 40_000)]}, "bytes of text"),
                        ({"seq": 0, "lines": [text("ok", stream="log")]}, "stream")):
        response = token.post(path, json=body)
        assert response.status_code == 422 and field in response.text, (field, response.text)
    assert api.ok("GET", api.ws(f"/flow_runs/{run['id']}/logs"))["source"] != "control_plane"
    bad_cursor = api.get(api.ws(f"/flow_runs/{run['id']}/logs"), params={"cursor": "cp:nope"})
    assert bad_cursor.status_code == 422 and "cursor" in bad_cursor.text


def test_who_may_send_and_read_logs(api, ctx, fake_pusher):
    token, run, other, _ = run_token_for(api, ctx, fake_pusher)
    body = {"seq": 0, "lines": lines("secret-free line")}
    assert token.post(token.ws(f"/flow_runs/{other['id']}/logs"), json=body).status_code == 404
    assert token.get(token.ws(f"/flow_runs/{run['id']}/logs")).status_code == 403  # a runner writes, never reads
    viewer = api.as_key(api.user("vera", role="viewer"))
    assert viewer.post(viewer.ws(f"/flow_runs/{run['id']}/logs"), json=body).status_code == 403
    token.ok("POST", token.ws(f"/flow_runs/{run['id']}/logs"), json=body)
    assert viewer.ok("GET", viewer.ws(f"/flow_runs/{run['id']}/logs"))["lines"] == ["12:00:00.250 | INFO    | "
                                                                                    "run - secret-free line"]
    assert api.ok("GET", api.ws(f"/flow_runs/{other['id']}/logs"))["lines"] == []
