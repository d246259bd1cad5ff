"""The Google Cloud APIs ``--provision-infra`` for Cloud Run uses, faked on top of the Cloud Run fake:
Service Usage (services get/batchEnable), IAM (service accounts and keys), Resource Manager (project
IAM policy with etags: a stale etag answers 409 ABORTED, as Google does) and Artifact Registry
(docker repositories). Paths and JSON follow the real REST APIs.

IAM is eventually consistent, as Google documents: a service account created less than
``propagation_seconds`` ago "does not exist" for a project policy that names it (400 INVALID_ARGUMENT), and a
service account this fake made may call Cloud Run only once a role that allows it (run.developer or run.admin)
has been bound to it for ``propagation_seconds`` (403 PERMISSION_DENIED before).
"""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass, field
from typing import Any

from tests.fakes.cloud_run_api import FakeCloudRunApi
from tests.fakes.json_api import ApiError


@dataclass
class GcpState:
    enabled: set[str] = field(default_factory=set)              # "project/service"
    service_accounts: dict[str, dict[str, Any]] = field(default_factory=dict)  # email → account
    keys: dict[str, list[str]] = field(default_factory=dict)    # email → key names
    policy: dict[str, Any] = field(default_factory=lambda: {"version": 1, "bindings": [], "etag": "BwE="})
    policy_version: int = 1
    repositories: dict[str, dict[str, Any]] = field(default_factory=dict)
    stale_etag_once: bool = False


class FakeGcpApi(FakeCloudRunApi):
    ROUTES = FakeCloudRunApi.ROUTES + [
        ("GET", r"/v1/(projects/[^/]+/services/[^/]+)", "get_service"),
        ("POST", r"/v1/(projects/[^/]+)/services:batchEnable", "batch_enable"),
        ("GET", r"/v1/(operations/[^/]+)", "get_plain_operation"),
        ("GET", r"/v1/(projects/[^/]+/locations/[^/]+/operations/[^/]+)", "get_plain_operation"),
        ("POST", r"/v1/(projects/[^/]+/serviceAccounts/[^/]+)/keys", "create_key"),
        ("GET", r"/v1/(projects/[^/]+/serviceAccounts/[^/]+)", "get_service_account"),
        ("DELETE", r"/v1/(projects/[^/]+/serviceAccounts/[^/]+)", "delete_service_account"),
        ("POST", r"/v1/(projects/[^/]+)/serviceAccounts", "create_service_account"),
        ("POST", r"/v3/(projects/[^/:]+):getIamPolicy", "get_iam_policy"),
        ("POST", r"/v3/(projects/[^/:]+):setIamPolicy", "set_iam_policy"),
        ("GET", r"/v1/(projects/[^/]+/locations/[^/]+/repositories/[^/]+)", "get_repository"),
        ("DELETE", r"/v1/(projects/[^/]+/locations/[^/]+/repositories/[^/]+)", "delete_repository"),
        ("POST", r"/v1/(projects/[^/]+/locations/[^/]+)/repositories", "create_repository"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.gcp = GcpState()
        self.clock = time.monotonic
        self.propagation_seconds = 1.0
        self._made_at: dict[str, float] = {}   # service account email → when it was created
        self._bound_at: dict[tuple[str, str], float] = {}  # (role, member) → when it was bound
        self.refused: list[str] = []

    def authenticate(self, path: str, headers: Any) -> Any:
        early = super().authenticate(path, headers)
        caller = self.state.callers[-1] if self.state.callers and early is None else None
        if caller in self.gcp.service_accounts and path.startswith("/v2/projects/") and "/jobs" in path:
            member = f"serviceAccount:{caller}"
            if not any(self.clock() - self._bound_at.get((role, member), float("inf")) >= self.propagation_seconds
                       for role in ("roles/run.developer", "roles/run.admin")):
                self.refused.append(f"{caller} on {path}")
                raise ApiError(403, "Permission 'run.jobs.list' denied on resource (or it may not exist).")
        return early

    def _done(self, parent: str, response: dict[str, Any]) -> dict[str, Any]:
        return self._operation(parent, done=True, response=response)

    def get_plain_operation(self, name: str, *_: Any) -> dict[str, Any]:
        operation = self.get_operation(name)
        operation["done"] = True
        return operation

    # ------------------------------------------------------------------ Service Usage
    def get_service(self, name: str, *_: Any) -> dict[str, Any]:
        project, service = name.split("/")[1], name.split("/")[3]
        state = "ENABLED" if f"{project}/{service}" in self.gcp.enabled else "DISABLED"
        return {"name": name, "state": state, "parent": f"projects/{project}"}

    def batch_enable(self, parent: str, _: Any, body: dict[str, Any]) -> dict[str, Any]:
        project = parent.split("/")[1]
        self.gcp.enabled.update(f"{project}/{s}" for s in body.get("serviceIds", []))
        # Enabling takes a while at Google: the operation is done when first polled.
        return self._operation("", done=False, response={
            "@type": "type.googleapis.com/google.api.serviceusage.v1.BatchEnableServicesResponse"})

    # ------------------------------------------------------------------ IAM
    def _account(self, name: str) -> dict[str, Any]:
        email = name.rsplit("/", 1)[1]
        if email not in self.gcp.service_accounts:
            raise ApiError(404, f"Unknown service account {email}")
        return self.gcp.service_accounts[email]

    def get_service_account(self, name: str, *_: Any) -> dict[str, Any]:
        return self._account(name)

    def create_service_account(self, parent: str, _: Any, body: dict[str, Any]) -> dict[str, Any]:
        project = parent.split("/")[1]
        account_id = body.get("accountId", "")
        if not 6 <= len(account_id) <= 30:
            raise ApiError(400, f"accountId {account_id!r} must be 6-30 characters")
        email = f"{account_id}@{project}.iam.gserviceaccount.com"
        if email in self.gcp.service_accounts:
            raise ApiError(409, f"Service account {account_id} already exists within project {parent}.")
        account = {"name": f"{parent}/serviceAccounts/{email}", "email": email, "projectId": project,
                   "displayName": body.get("serviceAccount", {}).get("displayName", "")}
        self.gcp.service_accounts[email] = account
        self._made_at[email] = self.clock()
        return account

    def delete_service_account(self, name: str, *_: Any) -> dict[str, Any]:
        account = self._account(name)
        del self.gcp.service_accounts[account["email"]]
        self.gcp.keys.pop(account["email"], None)
        return {}

    def create_key(self, name: str, *_: Any) -> dict[str, Any]:
        from tests.gcp_fixtures import service_account_info

        account = self._account(name)
        key_name = f"{account['name']}/keys/k{len(self.gcp.keys.get(account['email'], [])) + 1}"
        self.gcp.keys.setdefault(account["email"], []).append(key_name)
        info = {**service_account_info(f"{self.url}/token"), "client_email": account["email"],
                "project_id": account["projectId"], "private_key_id": key_name.rsplit("/", 1)[1]}
        self.trust(info)
        return {"name": key_name, "privateKeyType": "TYPE_GOOGLE_CREDENTIALS_FILE",
                "privateKeyData": base64.b64encode(json.dumps(info).encode()).decode()}

    # ------------------------------------------------------------------ Resource Manager
    def get_iam_policy(self, *_: Any) -> dict[str, Any]:
        return json.loads(json.dumps(self.gcp.policy))

    def set_iam_policy(self, _: str, __: Any, body: dict[str, Any]) -> dict[str, Any]:
        policy = body.get("policy", {})
        if self.gcp.stale_etag_once:  # someone else changed the policy between the read and this write
            self.gcp.stale_etag_once = False
            self._bump_policy()
        if policy.get("etag") != self.gcp.policy["etag"]:
            raise ApiError(409, "There were concurrent policy changes. Please retry the whole read-modify-write.")
        for binding in policy.get("bindings", []):
            for member in binding.get("members", []):
                email = member.removeprefix("serviceAccount:")
                if self.clock() - self._made_at.get(email, float("-inf")) < self.propagation_seconds:
                    self.refused.append(f"policy naming {email}")
                    raise ApiError(400, f"Service account {email} does not exist.")
                self._bound_at.setdefault((binding["role"], member), self.clock())
        self.gcp.policy = {**policy}
        self._bump_policy()
        return self.get_iam_policy()

    def _bump_policy(self) -> None:
        self.gcp.policy_version += 1
        self.gcp.policy["etag"] = base64.b64encode(f"v{self.gcp.policy_version}".encode()).decode()

    def members_of(self, role: str) -> list[str]:
        return next((b["members"] for b in self.gcp.policy["bindings"] if b["role"] == role), [])

    # ------------------------------------------------------------------ Artifact Registry
    def get_repository(self, name: str, *_: Any) -> dict[str, Any]:
        if name not in self.gcp.repositories:
            raise ApiError(404, f"Requested entity was not found: {name}")
        return self.gcp.repositories[name]

    def create_repository(self, parent: str, query: dict[str, list[str]], body: dict[str, Any]) -> dict[str, Any]:
        name = f"{parent}/repositories/{(query.get('repositoryId') or [''])[0]}"
        if name in self.gcp.repositories:
            raise ApiError(409, f"the repository already exists: {name}")
        self.gcp.repositories[name] = {**body, "name": name}
        return self._done(parent, {"@type": "type.googleapis.com/google.devtools.artifactregistry.v1.Repository",
                                   **self.gcp.repositories[name]})

    def delete_repository(self, name: str, *_: Any) -> dict[str, Any]:
        self.get_repository(name)
        del self.gcp.repositories[name]
        return self._done("/".join(name.split("/")[:4]), {})

    def snapshot(self) -> dict[str, Any]:
        """What the project holds, to prove a step created nothing or teardown removed everything."""
        return {"accounts": sorted(self.gcp.service_accounts), "keys": sorted(k for ks in self.gcp.keys.values()
                                                                           for k in ks),
                "bindings": sorted((b["role"], m) for b in self.gcp.policy["bindings"] for m in b["members"]),
                "repositories": sorted(self.gcp.repositories), "enabled": sorted(self.gcp.enabled)}
