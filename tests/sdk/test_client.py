"""The HTTP client: retries and error translation."""

from __future__ import annotations

import httpx
import pytest

from pushpool.client import PushpoolClient, normalize_api_url
from pushpool.control_plane.errors import ConfigurationError, Conflict, InvalidInput, NotFound, Unauthorized


def client_with(handler) -> PushpoolClient:
    client = PushpoolClient("http://127.0.0.1:9", "ppu_x", "default", transport=httpx.MockTransport(handler))
    client.retries = 3
    return client


def test_retries_5xx_and_429_then_succeeds(monkeypatch):
    monkeypatch.setattr("pushpool.client.time.sleep", lambda s: None)
    answers = iter([503, 429, 200])
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["authorization"])
        status = next(answers)
        return httpx.Response(status, json={"status": "ok"} if status == 200 else {"detail": "busy"})

    assert client_with(handler).health() == {"status": "ok"}
    assert seen == ["Bearer ppu_x"] * 3


@pytest.mark.parametrize("status, body, error, text", [
    (401, {"detail": "Invalid authentication credentials", "reason": "expired"}, Unauthorized, "has expired"),
    (404, {"detail": "Work pool 'x' not found"}, NotFound, "Work pool 'x' not found"),
    (409, {"detail": "Cannot move a flow run from SCHEDULED to COMPLETED"}, Conflict, "SCHEDULED to COMPLETED"),
    (422, {"detail": [{"loc": ["body", "schedules", 0, "cron"], "msg": "bad"}]}, InvalidInput, "schedules.0.cron: bad"),
])
def test_errors_are_translated(status, body, error, text):
    client = client_with(lambda request: httpx.Response(status, json=body))
    with pytest.raises(error, match=text):
        client.me()


def test_missing_api_url_is_a_clear_error():
    with pytest.raises(ConfigurationError, match="No API URL configured"):
        PushpoolClient()


@pytest.mark.parametrize("written", ["http://127.0.0.1:4200/api", "http://127.0.0.1:4200/api/",
                                     "http://127.0.0.1:4200/", " http://127.0.0.1:4200 "])
def test_an_api_url_written_as_prefect_writes_it_means_the_base_url(written):
    assert normalize_api_url(written) == "http://127.0.0.1:4200"
    with PushpoolClient(written, "pp_key") as client:
        assert client.api_url == "http://127.0.0.1:4200"


def test_a_404_from_a_wrong_base_url_names_the_url_tried_and_the_expected_form():
    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/api/me"):
            return httpx.Response(404, json={"detail": "Not Found"})  # a route the server does not have
        return httpx.Response(404, json={"detail": "flow run 'x' does not exist"})

    client = PushpoolClient("http://example.test/prefix", "pp_key", transport=httpx.MockTransport(answer))
    with pytest.raises(NotFound, match=r"GET http://example.test/prefix/api/me answered 404.*base URL"):
        client.me()
    with pytest.raises(NotFound, match="flow run 'x' does not exist"):  # pushpool's own 404s stay as they are
        client.read_flow_run("x")
