"""A fake Azure Resource Manager for container groups, over HTTP on 127.0.0.1.

The official ``azure-mgmt-containerinstance`` client talks to it unchanged (``base_url``). A PUT answers
201 with an ``Azure-AsyncOperation`` URL (``Retry-After: 0``) that reports Succeeded when polled;
GET/DELETE/stop and the container's logs follow the real paths and JSON. Every call must carry the
bearer token the test's credential issues. :class:`AciSimulator` runs what a group's container would run.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.fakes.containers import run_as_container
from tests.fakes.json_api import ApiError, JsonApi, Reply

TOKEN = "fake-arm-token"
GROUPS = r"/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft\.ContainerInstance/containerGroups/[^/]+"


@dataclass
class AzureState:
    groups: dict[str, dict[str, Any]] = field(default_factory=dict)   # resource id (lower case) → group
    created: list[str] = field(default_factory=list)                 # every PUT that created a group
    deleted: list[str] = field(default_factory=list)
    stopped: list[str] = field(default_factory=list)
    logs: dict[str, str] = field(default_factory=dict)


class StaticCredential:
    """A TokenCredential that always has the fake's token (the tests do not talk to Microsoft Entra)."""

    def get_token(self, *scopes: str, **_: Any) -> Any:
        from azure.core.credentials import AccessToken

        return AccessToken(TOKEN, 4102444800)


class FakeArmApi(JsonApi):
    ROUTES = [
        ("PUT", rf"({GROUPS})", "put_group"),
        ("GET", rf"({GROUPS})", "get_group"),
        ("DELETE", rf"({GROUPS})", "delete_group"),
        ("POST", rf"({GROUPS})/stop", "stop_group"),
        ("GET", rf"({GROUPS})/containers/[^/]+/logs", "container_logs"),
        ("GET", r"/operations/([^/]+)", "get_async_operation"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.state = AzureState()
        self._ids = itertools.count(1)

    def authenticate(self, path: str, headers: Any) -> Reply | None:
        if headers.get("Authorization") != f"Bearer {TOKEN}":
            raise ApiError(401, "The access token is missing or invalid.", "AuthenticationFailed")
        return None

    def error_body(self, error: ApiError) -> dict[str, Any]:
        return {"error": {"code": error.code or {404: "ResourceNotFound", 409: "Conflict"}.get(error.status, "Error"),
                          "message": error.message}}

    def _group(self, resource_id: str) -> dict[str, Any]:
        group = self.state.groups.get(resource_id.lower())
        if group is None:
            raise ApiError(404, f"The Resource '{resource_id.rsplit('/', 1)[1]}' was not found.", "ResourceNotFound")
        return group

    # ------------------------------------------------------------------ the API
    def put_group(self, resource_id: str, _: Any, body: dict[str, Any]) -> Reply:
        key = resource_id.lower()
        existing = key in self.state.groups
        properties = body.get("properties", {})
        for container in properties.get("containers", []):
            container.setdefault("properties", {})["instanceView"] = {
                "currentState": {"state": "Waiting", "detailStatus": "ContainerCreating"}, "events": []}
        group = {**body, "id": resource_id, "name": resource_id.rsplit("/", 1)[1],
                 "type": "Microsoft.ContainerInstance/containerGroups",
                 "properties": {**properties, "provisioningState": "Succeeded",
                                "instanceView": {"state": "Pending"}}}
        self.state.groups[key] = group
        if not existing:
            self.state.created.append(resource_id)
        operation = f"{self.url}/operations/op-{next(self._ids)}?api-version=2023-05-01"
        return Reply(group, 200 if existing else 201, {"Azure-AsyncOperation": operation, "Retry-After": "0"})

    def get_async_operation(self, operation_id: str, *_: Any) -> dict[str, Any]:
        return {"id": operation_id, "status": "Succeeded"}

    def get_group(self, resource_id: str, *_: Any) -> dict[str, Any]:
        return self._group(resource_id)

    def delete_group(self, resource_id: str, *_: Any) -> Reply:
        group = self._group(resource_id)
        del self.state.groups[resource_id.lower()]
        self.state.deleted.append(resource_id)
        return Reply(group, 200)

    def stop_group(self, resource_id: str, *_: Any) -> Reply:
        group = self._group(resource_id)
        self.state.stopped.append(resource_id)
        view = group["properties"]["containers"][0]["properties"]["instanceView"]
        if view["currentState"]["state"] != "Terminated":
            view["currentState"] = {"state": "Terminated", "exitCode": 137, "detailStatus": "Killed"}
        return Reply({}, 204)

    def container_logs(self, resource_id: str, query: dict[str, list[str]], _: Any) -> dict[str, Any]:
        self._group(resource_id)
        lines = self.state.logs.get(resource_id.lower(), "").splitlines(keepends=True)
        tail = int((query.get("tail") or ["0"])[0])
        return {"content": "".join(lines[-tail:] if tail else lines)}

    # ------------------------------------------------------------------ test controls
    def container(self, resource_id: str) -> dict[str, Any]:
        return self._group(resource_id)["properties"]["containers"][0]["properties"]

    def set_state(self, resource_id: str, state: str, exit_code: int | None = None, detail: str = "",
                  events: list[dict[str, Any]] | None = None) -> None:
        current: dict[str, Any] = {"state": state, "detailStatus": detail}
        if exit_code is not None:
            current["exitCode"] = exit_code
        self.container(resource_id)["instanceView"] = {"currentState": current, "events": events or []}

    def groups_of_run(self, run_id: str) -> list[str]:
        return [g["id"] for g in self.state.groups.values() if g["name"] == f"pushpool-{run_id}"]


class AciSimulator:
    """Runs what a group's container would run: its command and environment (secure values included)."""

    def __init__(self, api: FakeArmApi, workdir: Path) -> None:
        self.api, self.workdir = api, workdir
        self.output = ""

    def recorded(self, resource_id: str) -> tuple[list[str], dict[str, str]]:
        container = self.api.container(resource_id)
        env = {e["name"]: e.get("value", e.get("secureValue", "")) for e in container.get("environmentVariables", [])}
        return list(container.get("command") or []), env

    def run(self, resource_id: str, timeout: float = 60) -> int:
        command, env = self.recorded(resource_id)
        self.api.set_state(resource_id, "Running")
        code, self.output = run_as_container(command, env, self.workdir, timeout)
        self.api.state.logs[resource_id.lower()] = self.output
        self.api.set_state(resource_id, "Terminated", code, "Completed" if code == 0 else "Error")
        return code
