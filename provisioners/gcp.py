"""``--provision-infra`` for ``cloud-run:push`` pools: plan → apply → destroy, idempotent.

Runs on the user's machine with their own Google login (application default credentials:
``gcloud auth application-default login`` or ``GOOGLE_APPLICATION_CREDENTIALS``), through Google's
API client library (``google-api-python-client``, discovery documents shipped with it; no ``gcloud``
subprocess). Project from ``--project``, ``GOOGLE_CLOUD_PROJECT`` or the credentials; region from
``--region`` (default us-central1). Creates only what is missing:

* the Cloud Run, Artifact Registry, Cloud Logging and IAM APIs (Service Usage);
* the Artifact Registry docker repository ``pushpool``;
* the service account ``pushpool-<pool>`` with ``roles/run.developer`` and
  ``roles/iam.serviceAccountUser`` on the project (IAM policy read-modify-write with its etag);
* a key of that account, only when the pool has no credentials block yet (never an orphaned key).

``destroy`` removes the bindings, the account (its keys go with it) and the repository if this
provisioner created them; enabled APIs stay enabled.
"""

from __future__ import annotations

import base64
import hashlib
import os
from typing import Any

from pushpool.provisioners.base import (
    Plan,
    PlanStep,
    Progress,
    ProvisioningError,
    ProvisionResult,
    StepAction,
    wait_until_it_works,
)

SERVICES = ("run.googleapis.com", "artifactregistry.googleapis.com", "logging.googleapis.com", "iam.googleapis.com")
ROLES = ("roles/run.developer", "roles/iam.serviceAccountUser")
REPOSITORY = "pushpool"
DEFAULT_REGION = "us-central1"
POLICY_ATTEMPTS = 5


def account_id(pool: str) -> str:
    """A service account id for the pool, in IAM's rule (6–30 of ``[a-z0-9-]``, a letter first, no ``-`` last); a
    pool name that had to change (``My.Pool``) or be cut keeps a digest of itself, so two pools never share one."""
    part = "".join(c if c.isascii() and c.isalnum() else "-" for c in pool.lower())
    base = f"pushpool-{part}".rstrip("-")
    if part == pool and len(base) <= 30:
        return base
    return f"{base[:21].rstrip('-')}-{hashlib.sha256(pool.encode()).hexdigest()[:8]}"


def _code(exc: BaseException) -> int | None:
    return getattr(getattr(exc, "resp", None), "status", None)


def call(action: str, request: Any) -> Any:
    """Execute one API request; a missing permission names it."""
    try:
        return request.execute(num_retries=3)
    except Exception as exc:  # noqa: BLE001
        if _code(exc) in (401, 403):
            raise ProvisioningError(f"missing permission for {action}: your Google identity may not call it "
                                    f"({exc}); ask for it or log in as an owner of the project") from exc
        raise ProvisioningError(f"{action} failed: {exc}") from exc


def _missing(action: str, request: Any) -> bool:
    try:
        request.execute(num_retries=3)
        return False
    except Exception as exc:  # noqa: BLE001
        if _code(exc) == 404:
            return True
        raise ProvisioningError(f"{action} failed: {exc}") from exc


class GcpProvisioner:
    def __init__(self) -> None:
        self._apis: dict[str, Any] = {}
        self._credentials: Any = None
        self._project: str | None = None

    def api(self, name: str, version: str) -> Any:
        if name not in self._apis:
            try:
                from googleapiclient.discovery import build
            except ModuleNotFoundError as exc:  # pragma: no cover - the extra is missing
                raise ProvisioningError("provisioning Cloud Run needs the 'gcp' extra: "
                                        "pip install 'pushpool[gcp]'") from exc
            endpoint = os.environ.get("PUSHPOOL_GCP_ENDPOINT")
            self._apis[name] = build(name, version, credentials=self._login(), static_discovery=True,
                                     cache_discovery=False,
                                     client_options={"api_endpoint": endpoint} if endpoint else None)
        return self._apis[name]

    def _login(self) -> Any:
        if self._credentials is None:
            import google.auth
            from google.auth.exceptions import DefaultCredentialsError

            try:
                self._credentials, self._project = google.auth.default(
                    scopes=["https://www.googleapis.com/auth/cloud-platform"])
            except DefaultCredentialsError as exc:
                raise ProvisioningError("no Google login: run `gcloud auth application-default login` or set "
                                        f"GOOGLE_APPLICATION_CREDENTIALS ({exc})") from None
        return self._credentials

    # ------------------------------------------------------------------ plan
    def plan(self, pool_name: str, options: dict[str, Any]) -> Plan:
        self._login()
        project = options.get("project") or os.environ.get("GOOGLE_CLOUD_PROJECT") or self._project
        if not project:
            raise ProvisioningError("--project: no Google Cloud project given, in GOOGLE_CLOUD_PROJECT or in your "
                                    "login")
        region = options.get("region") or DEFAULT_REGION
        email = f"{account_id(pool_name)}@{project}.iam.gserviceaccount.com"
        usage, iam = self.api("serviceusage", "v1"), self.api("iam", "v1")
        steps: list[PlanStep] = []
        for service in SERVICES:
            state = call("serviceusage.services.get",
                         usage.services().get(name=f"projects/{project}/services/{service}")).get("state")
            steps.append(PlanStep(f"API {service}", StepAction.EXISTS if state == "ENABLED" else StepAction.CREATE,
                                  "enabled" if state == "ENABLED" else "enable", f"service:{service}"))
        repository = f"projects/{project}/locations/{region}/repositories/{REPOSITORY}"
        repo_missing = _api_disabled(steps, "artifactregistry") or _missing(
            "artifactregistry.repositories.get",
            self.api("artifactregistry", "v1").projects().locations().repositories().get(name=repository))
        steps.append(PlanStep(f"Artifact Registry repository {REPOSITORY} ({region})",
                              StepAction.CREATE if repo_missing else StepAction.EXISTS,
                              "docker images of the pool's flows", "repository"))
        account_missing = _api_disabled(steps, "iam") or _missing(
            "iam.serviceAccounts.get", iam.projects().serviceAccounts().get(
                name=f"projects/{project}/serviceAccounts/{email}"))
        steps.append(PlanStep(f"service account {email}", StepAction.CREATE if account_missing else StepAction.EXISTS,
                              "the control plane's identity", "account"))
        policy = call("resourcemanager.projects.getIamPolicy", self.api("cloudresourcemanager", "v3").projects()
                      .getIamPolicy(resource=f"projects/{project}", body={}))
        member = f"serviceAccount:{email}"
        for role in ROLES:
            granted = any(b.get("role") == role and member in b.get("members", [])
                          for b in policy.get("bindings", []))
            action = StepAction.EXISTS if granted else StepAction.CREATE
            steps.append(PlanStep(f"{role} for {account_id(pool_name)}", action, "on the project", f"role:{role}"))
        if options.get("has_credentials"):
            steps.append(PlanStep("service account key", StepAction.SKIP, "the pool's credentials block has one",
                                  "key"))
        else:
            steps.append(PlanStep(f"key of {account_id(pool_name)}", StepAction.CREATE,
                                  "stored encrypted in a credentials block", "key"))
            steps.append(PlanStep("the new key works", StepAction.CHECK, "waits until IAM has propagated the "
                                  "service account's roles, then lists Cloud Run jobs with the key", "verify"))
        return Plan(pool_name=pool_name, steps=steps, options={
            **options, "project": project, "region": region, "account": project, "email": email,
            "repository": repository})

    # ------------------------------------------------------------------ apply
    def apply(self, plan: Plan, progress: Progress) -> ProvisionResult:
        o = plan.options
        result = ProvisionResult(created={})
        to_enable = [s.key.split(":", 1)[1] for s in plan.steps
                     if s.key.startswith("service:") and s.action is StepAction.CREATE]
        if to_enable:  # one batch for all of them
            self._enable(o["project"], to_enable)
        for index, step in enumerate(plan.steps, start=1):
            if step.action in (StepAction.CREATE, StepAction.CHECK) and not step.key.startswith("service:"):
                kind, _, arg = step.key.partition(":")
                getattr(self, f"_create_{kind}")(plan, result, arg)
            progress(step, index, len(plan.steps))
        result.job_variable_defaults = {"project": o["project"], "region": o["region"],
                                        "service_account_name": o["email"]}
        result.registry_namespace = f"{o['region']}-docker.pkg.dev/{o['project']}/{REPOSITORY}"
        result.summary = (f"its job template now defaults to project {o['project']}, region {o['region']} and the "
                          f"service account {o['email']}; images go to {result.registry_namespace}.")
        return result

    def _create_repository(self, plan: Plan, result: ProvisionResult, _: str) -> None:
        repository = plan.options["repository"]
        locations = self.api("artifactregistry", "v1").projects().locations()
        op = call("artifactregistry.repositories.create", locations.repositories().create(
            parent=repository.rsplit("/repositories/", 1)[0], repositoryId=REPOSITORY,
            body={"format": "DOCKER", "description": "pushpool flow images"}))
        self._wait(op, lambda name: locations.operations().get(name=name), "creating the repository")
        result.created["repository"] = repository

    def _create_account(self, plan: Plan, result: ProvisionResult, _: str) -> None:
        o = plan.options
        body = {"accountId": o["email"].split("@")[0],
                "serviceAccount": {"displayName": f"pushpool control plane for pool {plan.pool_name}"}}
        call("iam.serviceAccounts.create",
             self.api("iam", "v1").projects().serviceAccounts().create(name=f"projects/{o['project']}", body=body))
        result.created["service_account"] = o["email"]

    def _create_role(self, plan: Plan, result: ProvisionResult, role: str) -> None:
        o = plan.options

        def bind() -> None:
            self._edit_policy(o["project"], f"serviceAccount:{o['email']}", add=[role])

        if result.created.get("service_account") == o["email"]:  # made a moment ago: IAM may not know it yet
            wait_until_it_works(f"granting {role}", bind, lambda exc: _code(exc.__cause__ or exc) == 400)
        else:
            bind()
        result.created.setdefault("roles", []).append(role)

    def _create_verify(self, plan: Plan, result: ProvisionResult, _: str) -> None:
        """Wait until the new key may use Cloud Run (role bindings take a minute or more to take effect)."""
        from pushpool.pushers.cloud_run import ENDPOINT_ENV, CloudRunPusher

        data = (result.credentials_block or {}).get("data")
        if not data:
            return
        o = plan.options
        clients = CloudRunPusher.make_clients(data, os.environ.get(ENDPOINT_ENV))

        def check() -> None:
            next(iter(clients.jobs.list_jobs(parent=f"projects/{o['project']}/locations/{o['region']}")), None)

        wait_until_it_works("using the pool's new service account key", check,
                            lambda exc: _code(exc) in (401, 403) or getattr(exc, "code", None) in (401, 403))

    def _create_key(self, plan: Plan, result: ProvisionResult, _: str) -> None:
        o = plan.options
        key = call("iam.serviceAccounts.keys.create", self.api("iam", "v1").projects().serviceAccounts().keys()
                   .create(name=f"projects/{o['project']}/serviceAccounts/{o['email']}", body={}))
        info = base64.b64decode(key["privateKeyData"]).decode()
        result.credentials_block = {"type": "gcp-credentials",
                                    "data": {"service_account_info": info, "project": o["project"]}}

    def _enable(self, project: str, services: list[str]) -> None:
        usage = self.api("serviceusage", "v1")
        op = call("serviceusage.services.batchEnable", usage.services().batchEnable(
            parent=f"projects/{project}", body={"serviceIds": services}))
        self._wait(op, lambda name: usage.operations().get(name=name), "enabling APIs")

    @staticmethod
    def _wait(op: dict[str, Any], get: Any, what: str, attempts: int = 120) -> None:
        import time

        for _ in range(attempts):
            if op.get("done"):
                if op.get("error"):
                    raise ProvisioningError(f"{what} failed: {op['error'].get('message')}")
                return
            time.sleep(1)
            op = call(what, get(op["name"]))
        raise ProvisioningError(f"{what}: still not done after {attempts} s; run provision-infra again")

    def _edit_policy(self, project: str, member: str, add: list[str] = (), remove: list[str] = ()) -> None:
        """Read-modify-write of the project's IAM policy, again from the read when the etag went stale."""
        projects = self.api("cloudresourcemanager", "v3").projects()
        for _ in range(POLICY_ATTEMPTS):
            policy = call("resourcemanager.projects.getIamPolicy",
                          projects.getIamPolicy(resource=f"projects/{project}", body={}))
            bindings = policy.setdefault("bindings", [])
            for role in add:
                binding = next((b for b in bindings if b.get("role") == role and not b.get("condition")), None)
                if binding is None:
                    bindings.append({"role": role, "members": [member]})
                elif member not in binding["members"]:
                    binding["members"].append(member)
            for binding in bindings:
                if binding.get("role") in remove and member in binding.get("members", []):
                    binding["members"].remove(member)
            policy["bindings"] = [b for b in bindings if b.get("members")]
            try:
                projects.setIamPolicy(resource=f"projects/{project}", body={"policy": policy}).execute()
                return
            except Exception as exc:  # noqa: BLE001
                if _code(exc) != 409:  # 409 ABORTED: the policy changed since our read
                    raise ProvisioningError(f"resourcemanager.projects.setIamPolicy failed: {exc}") from exc
        raise ProvisioningError(f"the project's IAM policy kept changing under {POLICY_ATTEMPTS} attempts; run again")

    # ------------------------------------------------------------------ destroy
    def destroy(self, pool_name: str, provisioning: dict[str, Any], progress: Progress) -> None:
        created = provisioning.get("created") or {}
        project = provisioning.get("account") or provisioning.get("project")
        steps = [k for k in ("roles", "service_account", "repository") if created.get(k)]
        for index, key in enumerate(steps, start=1):
            if key == "roles":
                email = created.get("service_account") or f"{account_id(pool_name)}@{project}.iam.gserviceaccount.com"
                self._edit_policy(project, f"serviceAccount:{email}", remove=list(created["roles"]))
            elif key == "service_account":
                _missing("iam.serviceAccounts.delete", self.api("iam", "v1").projects().serviceAccounts().delete(
                    name=f"projects/{project}/serviceAccounts/{created['service_account']}"))  # gone is fine
            elif key == "repository":
                _missing("artifactregistry.repositories.delete", self.api("artifactregistry", "v1").projects()
                         .locations().repositories().delete(name=created["repository"]))
            progress(PlanStep(key, StepAction.EXISTS, "deleted", key), index, len(steps))


def _api_disabled(steps: list[PlanStep], api: str) -> bool:
    return any(s.key == f"service:{api}.googleapis.com" and s.action is StepAction.CREATE for s in steps)
