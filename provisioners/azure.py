"""``--provision-infra`` for ``azure-container-instance:push`` pools: plan → apply → destroy, idempotent.

Runs on the user's machine with their own Azure login (``DefaultAzureCredential``: ``az login``, a
service principal in the environment, ...) through the Azure SDKs only: azure-mgmt-resource,
-containerregistry, -authorization, -msi and Microsoft Graph (msgraph-sdk) for the app registration.
Subscription from ``--subscription`` or ``AZURE_SUBSCRIPTION_ID``; location from ``--region``
(default eastus). Creates only what is missing, and fails loudly on any error:

* the resource group ``pushpool-<pool>``;
* an app registration ``pushpool-<pool>`` + its service principal + a client secret, only when the
  pool has no credentials block yet; ``Contributor`` on the resource group for that principal;
* an Azure Container Registry with a name derived from the subscription and pool (recorded, never
  guessed from a prefix), and a user-assigned identity with ``AcrPull`` on it.

Role assignments get deterministic names (uuid5 of scope, role and principal): creating one again is
the same PUT. ``destroy`` deletes the resource group (registry, identity and assignments with it) and
the app registration, if this provisioner created them.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import uuid
from typing import Any
from urllib.parse import urlparse

from pushpool.provisioners.base import (
    Plan,
    PlanStep,
    Progress,
    ProvisioningError,
    ProvisionResult,
    StepAction,
    wait_until_it_works,
)
from pushpool.pushers.naming import fitted

#: Built-in role definition ids (the same in every tenant).
CONTRIBUTOR = "b24988ac-6180-42a0-ab88-20f7382dd24c"
ACR_PULL = "7f951dda-4ed3-4680-a7ca-43fe172d538d"
DEFAULT_LOCATION = "eastus"
GRAPH_SCOPE = "https://graph.microsoft.com/.default"
TAG = "pushpool-pool"


def names(pool: str, subscription: str) -> dict[str, str]:
    """Azure names of one pool's resources, each in its rule: a resource group 1–90 of letters, digits and
    ``._-()`` (not ending in ``.``); an app registration's display name up to 120; a user-assigned identity 3–128
    of letters, digits, ``-`` and ``_``; a registry 5–50 alphanumerics, unique in Azure (so derived from the
    subscription and pool)."""
    digest = hashlib.sha256(f"{subscription}/{pool}".encode()).hexdigest()[:12]
    return {"group": fitted("pushpool-", pool, "", limit=90, allowed="A-Za-z0-9._()-").rstrip("."),
            "app": fitted("pushpool-", pool, "", limit=120, allowed="A-Za-z0-9._-"),
            "identity": fitted("pushpool-", pool, "-pull", limit=128, allowed="A-Za-z0-9_-"),
            "registry": f"pushpool{digest}"}


def assignment_name(scope: str, role: str, principal: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{scope.lower()}|{role}|{principal}"))


def user_credential() -> Any:
    from azure.identity import DefaultAzureCredential

    return DefaultAzureCredential()


def step(action: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
    """One Azure call; every failure is an error naming the call (never swallowed)."""
    try:
        return fn(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001
        code = getattr(exc, "status_code", None)
        if code in (401, 403):
            raise ProvisioningError(f"missing permission for {action}: your Azure identity may not do it ({exc}); "
                                    "an Owner of the subscription can") from exc
        raise ProvisioningError(f"{action} failed: {exc}") from exc


class AzureProvisioner:
    def __init__(self) -> None:
        self._credential: Any = None
        self._clients: dict[str, Any] = {}

    # ------------------------------------------------------------------ clients
    def credential(self) -> Any:
        if self._credential is None:
            self._credential = user_credential()
        return self._credential

    def arm(self, kind: str, subscription: str) -> Any:
        if kind not in self._clients:
            from azure.mgmt.authorization import AuthorizationManagementClient
            from azure.mgmt.containerregistry import ContainerRegistryManagementClient
            from azure.mgmt.msi import ManagedServiceIdentityClient
            from azure.mgmt.resource.resources import ResourceManagementClient

            from pushpool.pushers.aci import ENDPOINT_ENV, arm_client_options

            classes = {"resource": ResourceManagementClient, "registry": ContainerRegistryManagementClient,
                       "authorization": AuthorizationManagementClient, "msi": ManagedServiceIdentityClient}
            options = arm_client_options(self.credential(), os.environ.get(ENDPOINT_ENV))
            self._clients[kind] = classes[kind](self.credential(), subscription, **options)
        return self._clients[kind]

    def graph(self, call: Any) -> Any:
        """Run one Microsoft Graph call (the SDK is asynchronous) and return its result."""
        from kiota_abstractions.authentication import (
            AccessTokenProvider,
            AllowedHostsValidator,
            BaseBearerTokenAuthenticationProvider,
        )
        from msgraph import GraphServiceClient
        from msgraph.graph_request_adapter import GraphRequestAdapter

        credential = self.credential()
        endpoint = os.environ.get("PUSHPOOL_GRAPH_ENDPOINT")
        host = urlparse(endpoint).hostname if endpoint else "graph.microsoft.com"

        class Tokens(AccessTokenProvider):
            async def get_authorization_token(self, uri: str, additional: Any = None) -> str:
                return credential.get_token(GRAPH_SCOPE).token

            def get_allowed_hosts_validator(self) -> AllowedHostsValidator:
                return AllowedHostsValidator([host])

        async def run() -> Any:
            adapter = GraphRequestAdapter(BaseBearerTokenAuthenticationProvider(Tokens()))
            if endpoint:
                adapter.base_url = f"{endpoint.rstrip('/')}/v1.0"
            return await call(GraphServiceClient(request_adapter=adapter))

        return asyncio.run(run())

    # ------------------------------------------------------------------ plan
    def plan(self, pool_name: str, options: dict[str, Any]) -> Plan:
        subscription = options.get("subscription") or os.environ.get("AZURE_SUBSCRIPTION_ID")
        if not subscription:
            raise ProvisioningError("--subscription: no Azure subscription given or in AZURE_SUBSCRIPTION_ID")
        location = options.get("region") or DEFAULT_LOCATION
        n = names(pool_name, subscription)
        resources = self.arm("resource", subscription)
        group_exists = step("resourceGroups.checkExistence", resources.resource_groups.check_existence, n["group"])
        steps = [PlanStep(f"resource group {n['group']} ({location})",
                          StepAction.EXISTS if group_exists else StepAction.CREATE, "holds everything below", "group")]
        app = self._application(n["app"])
        if options.get("has_credentials"):
            steps.append(PlanStep("app registration secret", StepAction.SKIP, "the pool's credentials block has one",
                                  "app"))
        else:
            steps.append(PlanStep(f"app registration {n['app']} + service principal + secret",
                                  StepAction.CREATE, "the control plane's identity; the secret goes into an "
                                  "encrypted credentials block" + (" (app exists: new secret)" if app else ""), "app"))
        if options.get("has_credentials"):
            steps.append(PlanStep(f"Contributor on {n['group']}", StepAction.SKIP, "given with the secret",
                                  "contributor"))
        else:  # a deterministic PUT: creating it again is a no-op
            steps.append(PlanStep(f"Contributor on {n['group']}", StepAction.CREATE,
                                  "for the app's service principal", "contributor"))
        registry_exists = group_exists and self._exists(
            "registries.get", self.arm("registry", subscription).registries.get, n["group"], n["registry"])
        steps.append(PlanStep(f"container registry {n['registry']}", StepAction.EXISTS if registry_exists
                              else StepAction.CREATE, "Basic SKU; the pool's images", "registry"))
        identity_exists = group_exists and self._exists(
            "userAssignedIdentities.get", self.arm("msi", subscription).user_assigned_identities.get, n["group"],
            n["identity"])
        steps.append(PlanStep(f"managed identity {n['identity']}", StepAction.EXISTS if identity_exists
                              else StepAction.CREATE, "pulls the images (AcrPull on the registry)", "identity"))
        steps.append(PlanStep(f"AcrPull on {n['registry']}", StepAction.CREATE, "for the identity", "acr_pull"))
        tenant = os.environ.get("AZURE_TENANT_ID") or self.tenant_of(subscription)
        if not options.get("has_credentials"):
            steps.append(PlanStep("the app's secret works", StepAction.CHECK, f"waits until tenant {tenant} issues "
                                  "it a token and its Contributor role has propagated", "verify"))
        return Plan(pool_name=pool_name, steps=steps, options={
            **options, "subscription": subscription, "region": location, "account": subscription, "names": n,
            "group_existed": group_exists, "app": app, "tenant": tenant})

    def tenant_of(self, subscription: str) -> str:
        """The tenant a subscription belongs to: where its service principals get their tokens (a plain
        'az login' sets no AZURE_TENANT_ID, and 'organizations' is refused for a secret)."""
        from azure.core.rest import HttpRequest

        request = HttpRequest("GET", f"/subscriptions/{subscription}", params={"api-version": "2022-12-01"})

        def get() -> str:  # (Subscriptions.Get has left azure-mgmt-resource: the call itself, through its client)
            response = self.arm("resource", subscription).send_request(request)
            response.raise_for_status()
            return response.json()["tenantId"]

        return step("subscriptions.get", get)

    @staticmethod
    def _exists(action: str, fn: Any, *args: Any) -> bool:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            fn(*args)
            return True
        except ResourceNotFoundError:
            return False
        except Exception as exc:  # noqa: BLE001
            raise ProvisioningError(f"{action} failed: {exc}") from exc

    def _application(self, display_name: str) -> dict[str, str] | None:
        from msgraph.generated.applications.applications_request_builder import ApplicationsRequestBuilder

        async def find(graph: Any) -> Any:
            query = ApplicationsRequestBuilder.ApplicationsRequestBuilderGetQueryParameters(
                filter=f"displayName eq '{display_name}'")
            config = ApplicationsRequestBuilder.ApplicationsRequestBuilderGetRequestConfiguration(
                query_parameters=query)
            return await graph.applications.get(request_configuration=config)

        found = step("graph applications.list", self.graph, find)
        apps = list(found.value or []) if found is not None else []
        return {"id": apps[0].id, "app_id": apps[0].app_id} if apps else None

    # ------------------------------------------------------------------ apply
    def apply(self, plan: Plan, progress: Progress) -> ProvisionResult:
        result = ProvisionResult(created={})
        state: dict[str, Any] = {}
        for index, planned in enumerate(plan.steps, start=1):
            if planned.action in (StepAction.CREATE, StepAction.CHECK):
                getattr(self, f"_do_{planned.key}")(plan, result, state)
            elif planned.key == "identity":
                state["identity"] = step("userAssignedIdentities.get", self.arm(
                    "msi", plan.options["subscription"]).user_assigned_identities.get, plan.options["names"]["group"],
                    plan.options["names"]["identity"])
            elif planned.key == "registry":
                state["registry"] = step("registries.get", self.arm("registry", plan.options["subscription"])
                                         .registries.get, plan.options["names"]["group"],
                                         plan.options["names"]["registry"])
            progress(planned, index, len(plan.steps))
        o, n = plan.options, plan.options["names"]
        login_server = state["registry"].login_server
        identity_id = state["identity"].id
        result.job_variable_defaults = {
            "subscription_id": o["subscription"], "resource_group_name": n["group"], "location": o["region"],
            "image_registry": {"server": login_server, "identity": identity_id}, "identities": [identity_id]}
        result.registry_namespace = login_server
        result.summary = (f"its container groups go to {n['group']} in {o['region']} and pull from {login_server} "
                          f"with the identity {n['identity']}; images go to {login_server}.")
        return result

    def _scope(self, plan: Plan, *parts: str) -> str:
        base = f"/subscriptions/{plan.options['subscription']}/resourceGroups/{plan.options['names']['group']}"
        return "/".join([base, *parts]) if parts else base

    def _do_group(self, plan: Plan, result: ProvisionResult, _: dict[str, Any]) -> None:
        step("resourceGroups.createOrUpdate", self.arm("resource", plan.options["subscription"]).resource_groups
             .create_or_update, plan.options["names"]["group"],
             {"location": plan.options["region"], "tags": {TAG: plan.pool_name}})
        result.created["resource_group"] = self._scope(plan)

    def _do_app(self, plan: Plan, result: ProvisionResult, state: dict[str, Any]) -> None:
        from msgraph.generated.applications.item.add_password.add_password_post_request_body import (
            AddPasswordPostRequestBody,
        )
        from msgraph.generated.models.application import Application
        from msgraph.generated.models.password_credential import PasswordCredential
        from msgraph.generated.models.service_principal import ServicePrincipal

        app = plan.options.get("app")
        if app is None:
            made = step("graph applications.create", self.graph,
                        lambda graph: graph.applications.post(Application(display_name=plan.options["names"]["app"])))
            app = {"id": made.id, "app_id": made.app_id}
            result.created["application"] = app["id"]
        principal = step("graph servicePrincipals.create", self.graph, lambda graph: graph.service_principals.post(
            ServicePrincipal(app_id=app["app_id"])))
        body = AddPasswordPostRequestBody(password_credential=PasswordCredential(display_name="pushpool"))
        secret = step("graph applications.addPassword", self.graph,
                      lambda graph: graph.applications.by_application_id(app["id"]).add_password.post(body))
        result.credentials_block = {"type": "azure-credentials", "data": {
            "tenant_id": plan.options["tenant"], "client_id": app["app_id"], "client_secret": secret.secret_text,
            "subscription_id": plan.options["subscription"]}}
        state["principal"] = principal.id

    def _do_contributor(self, plan: Plan, result: ProvisionResult, state: dict[str, Any]) -> None:
        self._assign(plan, self._scope(plan), CONTRIBUTOR, state["principal"], "ServicePrincipal")

    def _do_registry(self, plan: Plan, result: ProvisionResult, state: dict[str, Any]) -> None:
        from azure.mgmt.containerregistry.models import Registry, Sku

        registries = self.arm("registry", plan.options["subscription"]).registries
        registry = Registry(location=plan.options["region"], sku=Sku(name="Basic"), admin_user_enabled=False,
                            tags={TAG: plan.pool_name})
        poller = step("registries.create", registries.begin_create, plan.options["names"]["group"],
                      plan.options["names"]["registry"], registry)
        state["registry"] = step("registries.create (waiting)", poller.result, 600)
        result.created["registry"] = state["registry"].id

    def _do_identity(self, plan: Plan, result: ProvisionResult, state: dict[str, Any]) -> None:
        identities = self.arm("msi", plan.options["subscription"]).user_assigned_identities
        state["identity"] = step("userAssignedIdentities.createOrUpdate", identities.create_or_update,
                                 plan.options["names"]["group"], plan.options["names"]["identity"],
                                 {"location": plan.options["region"], "tags": {TAG: plan.pool_name}})
        result.created["identity"] = state["identity"].id

    def _do_acr_pull(self, plan: Plan, result: ProvisionResult, state: dict[str, Any]) -> None:
        self._assign(plan, state["registry"].id, ACR_PULL, state["identity"].principal_id, "ServicePrincipal")

    def _do_verify(self, plan: Plan, result: ProvisionResult, _: dict[str, Any]) -> None:
        """Wait until the new secret gets a token from the tenant and the principal may list the resource group's
        container groups (role assignments take up to minutes to propagate): the first run does not crash."""
        from azure.core.exceptions import ClientAuthenticationError, HttpResponseError
        from azure.mgmt.containerinstance import ContainerInstanceManagementClient

        from pushpool.pushers.aci import ENDPOINT_ENV, arm_client_options, client_secret_credential

        data = (result.credentials_block or {}).get("data")
        if not data:
            return
        credential = client_secret_credential(data["tenant_id"], data["client_id"], data["client_secret"])
        client = ContainerInstanceManagementClient(credential, data["subscription_id"],
                                                   **arm_client_options(credential, os.environ.get(ENDPOINT_ENV)))

        def check() -> None:
            next(iter(client.container_groups.list_by_resource_group(plan.options["names"]["group"])), None)

        wait_until_it_works("using the pool's new service principal", check, lambda exc: isinstance(
            exc, ClientAuthenticationError) or (isinstance(exc, HttpResponseError) and exc.status_code == 403))

    def _assign(self, plan: Plan, scope: str, role: str, principal: str, principal_type: str) -> None:
        subscription = plan.options["subscription"]
        role_id = f"/subscriptions/{subscription}/providers/Microsoft.Authorization/roleDefinitions/{role}"
        body = {"properties": {"roleDefinitionId": role_id, "principalId": principal, "principalType": principal_type}}
        step("roleAssignments.create", self.arm("authorization", subscription).role_assignments.create,
             scope, assignment_name(scope, role, principal), body)

    # ------------------------------------------------------------------ destroy
    def destroy(self, pool_name: str, provisioning: dict[str, Any], progress: Progress) -> None:
        created = provisioning.get("created") or {}
        subscription = provisioning.get("account")
        steps = [k for k in ("resource_group", "application") if created.get(k)]
        for index, key in enumerate(steps, start=1):
            if key == "resource_group":
                group = created["resource_group"].rsplit("/", 1)[1]
                poller = step("resourceGroups.delete", self.arm("resource", subscription).resource_groups.begin_delete,
                              group)
                step("resourceGroups.delete (waiting)", poller.result, 900)
            else:
                step("graph applications.delete", self.graph,
                     lambda graph: graph.applications.by_application_id(created["application"]).delete())
            progress(PlanStep(key, StepAction.EXISTS, "deleted", key), index, len(steps))
