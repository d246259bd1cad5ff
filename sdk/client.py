"""The HTTP client of the pushpool API.

Retries connection errors, 429 and 5xx with backoff; turns every other error into
the matching :mod:`control_plane.errors` class carrying the server's message.
"""

from __future__ import annotations

import time
from typing import Any

import httpx

from pushpool.control_plane.errors import (
    AlreadyExists,
    ConfigurationError,
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    PushpoolError,
    TooLarge,
    Unauthorized,
)
from pushpool.settings import ClientSettings

_RETRY_STATUS = {429, 500, 502, 503, 504}


def _error_for(response: httpx.Response) -> PushpoolError:
    try:
        body = response.json()
    except ValueError:
        body = {"detail": response.text}
    detail = body.get("detail") if isinstance(body, dict) else body
    errors = body.get("errors") if isinstance(body, dict) else None
    if isinstance(detail, list):  # FastAPI request validation: drop the leading "body"/"query"
        errors = [{"loc": list(e.get("loc", []))[1:], "msg": e.get("msg")} for e in detail]
        detail = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in errors)
    message = str(detail)
    code = response.status_code
    if code == 401:
        error = Unauthorized(body.get("reason", "unknown") if isinstance(body, dict) else "unknown")
        if error.reason == "expired":
            error.message = "Your API key has expired; create a new one and run 'pushpool login --key KEY'"
        return error
    cls = {403: Forbidden, 404: NotFound, 413: TooLarge, 422: InvalidInput}.get(code)
    if cls is None and code == 409:
        cls = AlreadyExists if "already exists" in message else Conflict
    return (cls or PushpoolError)(message, errors=errors)


def normalize_api_url(url: str) -> str:
    """The server's base URL: ``http://host:4200/api`` and ``http://host:4200/`` (as Prefect's API URL is
    written) both mean ``http://host:4200``."""
    url = url.strip().rstrip("/")
    return url.removesuffix("/api").rstrip("/")


class PushpoolClient:
    def __init__(self, api_url: str | None = None, api_key: str | None = None, workspace: str | None = None,
                 *, timeout: float | None = None, retries: int = 4,
                 transport: httpx.BaseTransport | None = None) -> None:
        # A runner passes everything explicitly and must not read anyone's profile.
        settings = None if (api_url and api_key) else ClientSettings()
        self.api_url = normalize_api_url(api_url or (settings.api_url if settings else None) or "")
        if not self.api_url:
            raise ConfigurationError(
                "No API URL configured: set PUSHPOOL_API_URL, run 'pushpool login --url URL --key KEY', "
                "or start a local server with 'pushpool server start'"
            )
        self.api_key = api_key or (settings.api_key if settings else None)
        self.workspace = workspace or (settings.workspace if settings else "default")
        timeout = timeout or (settings.request_timeout if settings else 30.0)
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        self.retries = retries
        self._http = httpx.Client(base_url=self.api_url, headers=headers, timeout=timeout, transport=transport)

    # ------------------------------------------------------------------ plumbing
    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        delay = 0.25
        for attempt in range(self.retries + 1):
            try:
                response = self._http.request(method, path, **kwargs)
            except httpx.TransportError as exc:
                if attempt == self.retries:
                    raise PushpoolError(f"Cannot reach the pushpool API at {self.api_url}: {exc}") from exc
            else:
                if response.status_code not in _RETRY_STATUS or attempt == self.retries:
                    if response.is_error:
                        raise self._wrong_url(response) or _error_for(response)
                    return response.json() if response.content else None
                retry_after = response.headers.get("retry-after")
                if retry_after and retry_after.isdigit():
                    delay = max(delay, float(retry_after))
            time.sleep(delay)
            delay = min(delay * 2, 8.0)
        raise AssertionError("unreachable")

    def _wrong_url(self, response: httpx.Response) -> PushpoolError | None:
        """A 404 that is not pushpool's (no such route): the base URL is probably wrong; say which was tried."""
        if response.status_code != 404:
            return None
        try:
            detail = response.json().get("detail")
        except (ValueError, AttributeError):
            detail = None
        if detail != "Not Found":  # pushpool's own 404s name what was not found
            return None
        return NotFound(f"{response.request.method} {response.request.url} answered 404 Not Found: is {self.api_url} "
                        "a pushpool server? The API URL is the server's base URL, e.g. http://127.0.0.1:4200 "
                        "(PUSHPOOL_API_URL or 'pushpool login --url')")

    def ws(self, path: str) -> str:
        return f"/api/workspaces/{self.workspace}{path}"

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> PushpoolClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ resources
    def health(self) -> dict:
        return self.request("GET", "/api/health")

    def me(self) -> dict:
        return self.request("GET", "/api/me")

    def create_work_pool(self, name: str, type: str, **fields: Any) -> dict:
        return self.request("POST", self.ws("/work_pools"), json={"name": name, "type": type, **fields})

    def read_work_pool(self, name: str) -> dict:
        return self.request("GET", self.ws(f"/work_pools/{name}"))

    def read_work_pool_or_none(self, name: str) -> dict | None:
        try:
            return self.read_work_pool(name)
        except NotFound:
            return None

    def apply_deployment(self, **fields: Any) -> dict:
        """Create or update a deployment (by flow name and name)."""
        return self.request("POST", self.ws("/deployments"), json=fields)

    def read_deployment(self, deployment_id: str) -> dict:
        return self.request("GET", self.ws(f"/deployments/{deployment_id}"))

    def read_deployment_by_name(self, full_name: str) -> dict:
        flow_name, _, name = full_name.partition("/")
        if not name:
            raise InvalidInput(f"name: {full_name!r} is not of the form 'flow-name/deployment-name'")
        return self.request("GET", self.ws(f"/deployments/name/{flow_name}/{name}"))

    def create_flow_run(self, deployment_id: str, **fields: Any) -> dict:
        return self.request("POST", self.ws(f"/deployments/{deployment_id}/runs"), json=fields)

    def read_flow_run(self, run_id: str) -> dict:
        return self.request("GET", self.ws(f"/flow_runs/{run_id}"))

    def list_flow_runs(self, **params: Any) -> list[dict]:
        return self.request("GET", self.ws("/flow_runs"), params={k: v for k, v in params.items() if v is not None})

    def set_flow_run_state(self, run_id: str, type: str, message: str | None = None, name: str | None = None,
                           result: Any = None) -> dict:
        body = {"type": type, "message": message, "name": name, "result": result}
        return self.request("POST", self.ws(f"/flow_runs/{run_id}/set_state"),
                            json={k: v for k, v in body.items() if v is not None})

    def cancel_flow_run(self, run_id: str) -> dict:
        return self.request("POST", self.ws(f"/flow_runs/{run_id}/cancel"))
