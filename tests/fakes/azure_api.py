"""A fake Azure Resource Manager for container groups, over HTTP on 127.0.0.1.

The official ``azure-mgmt-containerinstance`` client talks to it unchanged (``base_url``). A PUT answers
201 with an ``Azure-AsyncOperation`` URL (``Retry-After: 0``); the group is ``Creating`` (its operation
``InProgress``) until ``create_seconds`` have passed on the fake's clock — ACI's creates take from seconds to
minutes, image pull included — and then ``Succeeded``, or ``Failed`` when a create was set to fail (a transient
capacity error). GET/DELETE/stop and the container's logs follow the real paths and JSON. Every call must carry
the bearer token the test's credential issues. :class:`AciSimulator` runs what a group's container would run.
"""

from __future__ import annotations

import itertools
import re
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.fakes.containers import run_as_container
from tests.fakes.json_api import ApiError, JsonApi, Reply

TOKEN = "fake-arm-token"
#: The tenant the fake subscription belongs to (what GET /subscriptions/{id} answers as tenantId).
TENANT = "7d0e1f2a-0000-4000-8000-00000000fa4e"
#: Tenants Microsoft Entra refuses for the client-credential flow of a single-tenant app.
SHARED_TENANTS = {"organizations", "common", "consumers"}
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
        ("GET", r"(/subscriptions/[^/]+/resourceGroups/[^/]+)/providers/Microsoft\.ContainerInstance/containerGroups",
         "list_groups"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.state = AzureState()
        self._ids = itertools.count(1)
        self.clock = time.monotonic
        self.create_seconds = 0.0
        #: How many of the next creates end Failed (ACI's own reason), as a capacity shortage does.
        self.failing_creates = 0
        self._creating: dict[str, tuple[float, bool]] = {}  # resource id (lower) → (done at, fails)
        self._operations: dict[str, str] = {}  # operation id → resource id (lower)

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
                 "properties": {**properties, "provisioningState": "Creating",
                                "instanceView": {"state": "Pending"}}}
        self.state.groups[key] = group
        if not existing:
            self.state.created.append(resource_id)
        fails = self.failing_creates > 0
        self.failing_creates -= int(fails)
        self._creating[key] = (self.clock() + self.create_seconds, fails)
        operation_id = f"op-{next(self._ids)}"
        self._operations[operation_id] = key
        self._advance(key)
        operation = f"{self.url}/operations/{operation_id}?api-version=2023-05-01"
        return Reply(group, 200 if existing else 201, {"Azure-AsyncOperation": operation, "Retry-After": "0"})

    def _advance(self, key: str) -> None:
        """A group whose create has had its time is Succeeded (or Failed, as it was set to)."""
        if key not in self._creating or key not in self.state.groups:
            return
        done_at, fails = self._creating[key]
        if self.clock() < done_at:
            return
        del self._creating[key]
        group = self.state.groups[key]
        group["properties"]["provisioningState"] = "Failed" if fails else "Succeeded"
        if fails:
            view = group["properties"]["containers"][0]["properties"]["instanceView"]
            view["events"] = [{"name": "Failed", "type": "Warning", "count": 1, "message":
                               "The requested resource is not available in the location at this moment."}]
            group["properties"]["instanceView"] = {"state": "Failed"}

    def get_async_operation(self, operation_id: str, *_: Any) -> dict[str, Any]:
        key = self._operations.get(operation_id, "")
        self._advance(key)
        group = self.state.groups.get(key)
        state = (group or {}).get("properties", {}).get("provisioningState", "Succeeded")
        status = {"Creating": "InProgress", "Failed": "Failed"}.get(state, "Succeeded")
        return {"id": operation_id, "status": status}

    def get_group(self, resource_id: str, *_: Any) -> dict[str, Any]:
        self._advance(resource_id.lower())
        return self._group(resource_id)

    def list_groups(self, scope: str, *_: Any) -> dict[str, Any]:
        prefix = scope.lower() + "/"
        return {"value": [g for key, g in self.state.groups.items() if key.startswith(prefix)]}

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


class FakeEntraCredential:
    """A service principal's ClientSecretCredential, with the fake standing in for Microsoft Entra."""

    def __init__(self, api: FakeAzureApi, tenant: str, client_id: str, secret: str) -> None:
        self.api, self.tenant, self.client_id, self.secret = api, tenant, client_id, secret

    def get_token(self, *scopes: str, **_: Any) -> Any:
        from azure.core.credentials import AccessToken

        return AccessToken(self.api.issue_token(self.tenant, self.client_id, self.secret), 4102444800)


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


SUB = r"/subscriptions/[^/]+"
RG = rf"{SUB}/resourcegroups/[^/]+"
RG_PROVIDERS = rf"{SUB}/resourceGroups/[^/]+/providers"


class FakeAzureApi(FakeArmApi):
    """Resource Manager for what ``--provision-infra`` creates (resource groups, registries, identities,
    role assignments) and Microsoft Graph (applications, service principals, secrets) on one port.

    It also stands in for Microsoft Entra's token endpoint (:class:`FakeEntraCredential`): a service principal
    gets a token of its own only from the subscription's real tenant (``organizations`` and ``common`` are refused
    for the client-credential flow, as Entra refuses them) with a secret its app has; Resource Manager then lets that
    principal at container groups only once a Contributor assignment on their resource group has propagated
    (``propagation_seconds``; Azure documents up to minutes), answering 403 AuthorizationFailed before."""

    ROUTES = FakeArmApi.ROUTES + [
        ("GET", r"/subscriptions/([^/]+)", "get_subscription"),
        ("HEAD", rf"({RG})", "head_resource_group"),
        ("GET", rf"({RG})", "get_resource_group"),
        ("PUT", rf"({RG})", "put_resource_group"),
        ("DELETE", rf"({RG})", "delete_resource_group"),
        ("PUT", rf"({RG_PROVIDERS}/Microsoft\.ContainerRegistry/registries/[^/]+)", "put_registry"),
        ("GET", rf"({RG_PROVIDERS}/Microsoft\.ContainerRegistry/registries/[^/]+)", "get_resource"),
        ("PUT", rf"({RG_PROVIDERS}/Microsoft\.ManagedIdentity/userAssignedIdentities/[^/]+)", "put_identity"),
        ("GET", rf"({RG_PROVIDERS}/Microsoft\.ManagedIdentity/userAssignedIdentities/[^/]+)", "get_resource"),
        ("PUT", rf"({SUB}/.*/providers/Microsoft\.Authorization/roleAssignments/[^/]+)", "put_role_assignment"),
        ("GET", rf"({SUB}/.*/providers/Microsoft\.Authorization/roleAssignments/[^/]+)", "get_resource"),
        ("GET", r"/v1\.0/(applications)", "list_graph"),
        ("POST", r"/v1\.0/(applications)", "post_application"),
        ("POST", r"/v1\.0/applications/([^/]+)/addPassword", "add_password"),
        ("DELETE", r"/v1\.0/applications/([^/]+)", "delete_application"),
        ("GET", r"/v1\.0/(servicePrincipals)", "list_graph"),
        ("POST", r"/v1\.0/(servicePrincipals)", "post_service_principal"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.resources: dict[str, dict[str, Any]] = {}   # resource id (lower case) → resource
        self.graph: dict[str, dict[str, dict[str, Any]]] = {"applications": {}, "servicePrincipals": {}}
        self.secrets: list[str] = []
        self.propagation_seconds = 1.0
        self._secret_apps: dict[str, str] = {}  # secret → the app object id it belongs to
        self.refused: list[str] = []  # why tokens and calls were refused, for tests

    # ------------------------------------------------------------------ identities
    def issue_token(self, tenant: str, client_id: str, secret: str) -> str:
        """Microsoft Entra's client-credential flow, as the fake sees it (FakeEntraCredential calls it)."""
        from azure.core.exceptions import ClientAuthenticationError

        if tenant.lower() in SHARED_TENANTS:
            self.refused.append(f"tenant {tenant}")
            raise ClientAuthenticationError(f"AADSTS50194: Application '{client_id}' is not configured as a "
                                            "multi-tenant application. Usage of the /common or /organizations "
                                            "endpoint is not supported. Use a tenant-specific endpoint.")
        app = self.graph["applications"].get(self._secret_apps.get(secret, ""), {})
        if tenant != TENANT or app.get("appId") != client_id:
            self.refused.append(f"credentials of {client_id}")
            raise ClientAuthenticationError("AADSTS7000215: Invalid client secret provided.")
        return f"sp:{client_id}"

    def authenticate(self, path: str, headers: Any) -> Reply | None:
        token = (headers.get("Authorization") or "").removeprefix("Bearer ")
        if not token.startswith("sp:"):
            return super().authenticate(path, headers)
        if "/providers/microsoft.containerinstance/" in path.lower() and not self._may_use_groups(token[3:], path):
            self.refused.append(f"{token[3:]} on {path}")
            raise ApiError(403, f"The client '{token[3:]}' does not have authorization to perform action "
                           "'Microsoft.ContainerInstance/containerGroups/read' over scope. If access was recently "
                           "granted, please refresh your credentials.", "AuthorizationFailed")
        return None

    def _may_use_groups(self, client_id: str, path: str) -> bool:
        principals = {sp["id"] for sp in self.graph["servicePrincipals"].values() if sp["appId"] == client_id}
        scope = path.lower().split("/providers/microsoft.containerinstance/")[0]
        return any(r.get("type") == "Microsoft.Authorization/roleAssignments"
                   and r["properties"]["principalId"] in principals
                   and scope.startswith(r["id"].lower().split("/providers/microsoft.authorization/")[0])
                   and self.clock() - r.get("assignedAt", 0.0) >= self.propagation_seconds
                   for r in self.resources.values())

    def get_subscription(self, subscription: str, *_: Any) -> dict[str, Any]:
        return {"id": f"/subscriptions/{subscription}", "subscriptionId": subscription, "tenantId": TENANT,
                "displayName": "pushpool fake subscription", "state": "Enabled"}

    def _get(self, resource_id: str) -> dict[str, Any]:
        found = self.resources.get(resource_id.lower())
        if found is None:
            raise ApiError(404, f"Resource {resource_id} not found", "ResourceNotFound")
        return found

    def get_resource(self, resource_id: str, *_: Any) -> dict[str, Any]:
        return self._get(resource_id)

    def _put(self, resource_id: str, body: dict[str, Any], **extra: Any) -> Reply:
        existing = resource_id.lower() in self.resources
        resource = {**self.resources.get(resource_id.lower(), {}), **body, "id": resource_id,
                    "name": resource_id.rsplit("/", 1)[1], **extra}
        self.resources[resource_id.lower()] = resource
        return Reply(resource, 200 if existing else 201)

    # ------------------------------------------------------------------ Resource Manager
    def head_resource_group(self, resource_id: str, *_: Any) -> Reply:
        return Reply({}, 204 if resource_id.lower() in self.resources else 404)

    def get_resource_group(self, resource_id: str, *_: Any) -> dict[str, Any]:
        return self._get(resource_id)

    def put_resource_group(self, resource_id: str, _: Any, body: dict[str, Any]) -> Reply:
        name = resource_id.rsplit("/", 1)[1]
        if not re.fullmatch(r"[\w.()-]{1,90}", name) or name.endswith("."):
            raise ApiError(400, f"Resource group '{name}' is invalid: 1-90 letters, digits, '.', '_', '-', '(', ')', "
                           "not ending in '.'", "InvalidResourceGroup")
        return self._put(resource_id, body, properties={"provisioningState": "Succeeded"})

    def delete_resource_group(self, resource_id: str, *_: Any) -> Reply:
        """Deletes the group and everything in it (its registries, identities, role assignments)."""
        self._get(resource_id)
        prefix = resource_id.lower()
        for key in [k for k in self.resources if k == prefix or k.startswith(prefix + "/")]:
            del self.resources[key]
        return Reply({}, 200)

    def put_registry(self, resource_id: str, _: Any, body: dict[str, Any]) -> Reply:
        name = resource_id.rsplit("/", 1)[1]
        reply = self._put(resource_id, body, properties={"loginServer": f"{name.lower()}.azurecr.io",
                                                         "provisioningState": "Succeeded",
                                                         "adminUserEnabled": False})
        reply.headers = {"Azure-AsyncOperation": f"{self.url}/operations/reg-{name}?api-version=x",
                         "Retry-After": "0"}
        return reply

    def put_identity(self, resource_id: str, _: Any, body: dict[str, Any]) -> Reply:
        name = resource_id.rsplit("/", 1)[1]
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]{2,127}", name):
            raise ApiError(400, f"The resource name '{name}' is invalid: 3-128 letters, digits, '-' and '_', starting "
                           "with a letter or digit", "InvalidResourceName")
        existing = self.resources.get(resource_id.lower())
        principal = existing["properties"]["principalId"] if existing else f"pr-{len(self.resources) + 1:04d}"
        return self._put(resource_id, body, properties={"principalId": principal, "clientId": f"cl-{principal}",
                                                        "tenantId": "tenant"})

    def put_role_assignment(self, resource_id: str, _: Any, body: dict[str, Any]) -> Reply:
        assigned_at = self.resources.get(resource_id.lower(), {}).get("assignedAt", self.clock())
        return self._put(resource_id, body, type="Microsoft.Authorization/roleAssignments", assignedAt=assigned_at)

    def role_assignments(self) -> list[tuple[str, str]]:
        """(role definition guid, principal id) of every assignment."""
        return sorted((r["properties"]["roleDefinitionId"].rsplit("/", 1)[1], r["properties"]["principalId"])
                      for r in self.resources.values() if r.get("type") == "Microsoft.Authorization/roleAssignments")

    # ------------------------------------------------------------------ Microsoft Graph
    def list_graph(self, kind: str, query: dict[str, list[str]], _: Any) -> dict[str, Any]:
        wanted = (query.get("$filter") or [""])[0]
        field_name, _, value = wanted.partition(" eq ")
        items = [o for o in self.graph[kind].values()
                 if not wanted or str(o.get(field_name.strip())) == value.strip().strip("'")]
        return {"value": items}

    def post_application(self, _: str, __: Any, body: dict[str, Any]) -> Reply:
        object_id = str(uuid.uuid4())
        app = {"id": object_id, "appId": str(uuid.uuid4()),
               "displayName": body.get("displayName")}
        self.graph["applications"][object_id] = app
        return Reply(app, 201)

    def add_password(self, object_id: str, _: Any, body: dict[str, Any]) -> dict[str, Any]:
        if object_id not in self.graph["applications"]:
            raise ApiError(404, f"Resource '{object_id}' does not exist", "Request_ResourceNotFound")
        secret = f"secret-{len(self.secrets) + 1}"
        self.secrets.append(secret)
        self._secret_apps[secret] = object_id
        return {"keyId": str(uuid.uuid4()), "secretText": secret,
                "displayName": body.get("passwordCredential", {}).get("displayName")}

    def delete_application(self, object_id: str, *_: Any) -> Reply:
        app = self.graph["applications"].pop(object_id, None)
        if app is None:
            raise ApiError(404, f"Resource '{object_id}' does not exist", "Request_ResourceNotFound")
        for key in [k for k, sp in self.graph["servicePrincipals"].items() if sp["appId"] == app["appId"]]:
            del self.graph["servicePrincipals"][key]
        return Reply({}, 204)

    def post_service_principal(self, _: str, __: Any, body: dict[str, Any]) -> Reply:
        object_id = str(uuid.uuid4())
        sp = {"id": object_id, "appId": body.get("appId")}
        self.graph["servicePrincipals"][object_id] = sp
        return Reply(sp, 201)

    def snapshot(self) -> dict[str, Any]:
        return {"resources": sorted(self.resources), "applications": sorted(self.graph["applications"]),
                "servicePrincipals": sorted(self.graph["servicePrincipals"]), "secrets": list(self.secrets)}
