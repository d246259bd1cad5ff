"""``azure-container-instance:push``: each flow run is one Azure container group (``restartPolicy: Never``).

* ``azure-mgmt-containerinstance`` with ``azure-identity`` (a client secret from the pool's
  azure-credentials block, else ``DefaultAzureCredential``: managed identity in Azure), imported lazily.
* The group is named ``pushpool-<run id>``. A resubmission first looks the group up and adopts it, so
  a run never gets two groups and a running one is never redeployed with a new run token — unless the
  group failed to deploy (a capacity shortage, say): then it is deleted and made again by a later attempt.
* ``submit`` returns once Azure accepted the create (its first answer); the deployment itself, image pull
  included, can take minutes and is watched by the reconciler (a group still ``Creating`` is pending), so a
  slow create never holds up a tick. ``cancel`` and ``cleanup`` start the deletion and do not wait either.
* ``status`` reads the instance view (container state, exit code, events such as image pull errors);
  ``cancel`` stops, then deletes the group; ``cleanup`` deletes it unless ``keep_container_group``.
* ``PUSHPOOL_AZURE_ENDPOINT`` points the client at another Resource Manager endpoint (the tests' fake);
  plain HTTP is accepted for loopback addresses only, production stays on HTTPS.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from pushpool.pushers.aci_template import VARIABLES
from pushpool.pushers.base import (
    ClientCache,
    InfraState,
    InfraStatus,
    Job,
    LogPage,
    PermanentPusherError,
    PusherContext,
    PusherError,
    Submission,
    ThrottledPusherError,
    TransientPusherError,
    classify_exit_code,
    job_image,
)
from pushpool.pushers.templates import job_template

RUNNER_COMMAND = ["pushpool-runner"]
CONTAINER = "pushpool"
ENDPOINT_ENV = "PUSHPOOL_AZURE_ENDPOINT"
ARM_SCOPE = "https://management.azure.com/.default"
#: Provisioning states of a group that must not be adopted: it failed to deploy, or is going away.
NOT_ADOPTABLE = frozenset({"Failed", "Deleting"})
TRANSIENT_CODES = {408, 409, 429, 500, 502, 503, 504}
PROVIDER = "providers/Microsoft.ContainerInstance/containerGroups"


def group_name(run_id: str) -> str:
    return f"pushpool-{run_id.lower()}"


@dataclass(frozen=True)
class GroupRef:
    subscription: str
    resource_group: str
    name: str

    @property
    def resource_id(self) -> str:
        return f"/subscriptions/{self.subscription}/resourceGroups/{self.resource_group}/{PROVIDER}/{self.name}"

    @classmethod
    def parse(cls, resource_id: str) -> GroupRef:
        parts = resource_id.strip("/").split("/")
        if len(parts) != 8 or parts[0] != "subscriptions" or parts[2] != "resourceGroups":
            raise PermanentPusherError(f"not a container group resource id: {resource_id!r}")
        return cls(parts[1], parts[3], parts[7])


def portal_url(resource_id: str) -> str:
    return f"https://portal.azure.com/#@/resource{resource_id}/overview"


#: Tenants that are not a tenant: Microsoft Entra refuses them for a single-tenant app's client-credential flow.
SHARED_TENANTS = frozenset({"organizations", "common", "consumers"})


def credential_for(block: dict[str, Any] | None) -> Any:
    """The Azure credential of the pool: its block's client secret, else the environment's identity."""
    from azure.identity import DefaultAzureCredential

    if block and block.get("client_secret"):
        missing = [f for f in ("tenant_id", "client_id") if not block.get(f)]
        if missing:
            raise PermanentPusherError(f"the pool's azure-credentials block lacks {', '.join(missing)}")
        if block["tenant_id"].lower() in SHARED_TENANTS:
            raise PermanentPusherError(
                f"the pool's azure-credentials block has tenant_id {block['tenant_id']!r}, which Microsoft Entra "
                "refuses for a service principal's secret: set it to your tenant's id (az account show --query "
                "tenantId), or run 'pushpool work-pool provision-infra POOL' again, which looks it up")
        return client_secret_credential(block["tenant_id"], block["client_id"], block["client_secret"])
    return DefaultAzureCredential()


def client_secret_credential(tenant_id: str, client_id: str, secret: str) -> Any:
    """A service principal's credential (Microsoft Entra's client-credential flow, in its own tenant)."""
    from azure.identity import ClientSecretCredential

    return ClientSecretCredential(tenant_id, client_id, secret)


def subscription_of(config: dict[str, Any]) -> str:
    block = config.get("aci_credentials")
    subscription = config.get("subscription_id") or (block.get("subscription_id") if isinstance(block, dict) else None)
    if not subscription:
        raise PermanentPusherError("no Azure subscription: set the pool's 'subscription_id' variable")
    return subscription


def translate(exc: BaseException, action: str) -> PusherError:
    """A pusher error for a failed Azure call, by its HTTP status (Retry-After is honoured by the SDK)."""
    if isinstance(exc, PusherError):
        return exc
    code = getattr(exc, "status_code", None)
    error = getattr(exc, "error", None)
    error_code = getattr(error, "code", None) or ""
    message = " ".join(str(getattr(exc, "message", None) or exc).split())
    text = f"Azure {action} failed ({code or type(exc).__name__}{' ' + error_code if error_code else ''}: {message})"
    if error_code in ("ContainerGroupQuotaReached", "ServiceUnavailable") or "quota" in error_code.lower():
        return TransientPusherError(f"{text}: waiting for Azure Container Instances capacity (about 100 creates "
                                    "per 5 minutes per region)")
    if code == 429:
        return ThrottledPusherError(text)
    if (isinstance(code, int) and code in TRANSIENT_CODES) or type(exc).__name__ in ("ServiceRequestError",
                                                                                       "TimeoutError"):
        return TransientPusherError(text)
    if code in (401, 403):
        return PermanentPusherError(f"{text}: the pool's identity needs Contributor on the resource group "
                                    "(provision-infra grants it)")
    if code == 404:
        return PermanentPusherError(f"{text}: check the pool's subscription, resource group and location")
    return PermanentPusherError(text)


class AciPusher:
    def __init__(self, context: PusherContext) -> None:
        self.context = context
        self._clients = ClientCache()

    @classmethod
    def default_job_template(cls) -> dict[str, Any]:
        return job_template(VARIABLES)

    # ------------------------------------------------------------------ clients
    def client(self, config: dict[str, Any], subscription: str | None = None) -> Any:
        block = config.get("aci_credentials")
        if block is not None and not isinstance(block, dict):
            raise PermanentPusherError("aci_credentials must reference an azure-credentials block, "
                                       "e.g. \"{{ pushpool.blocks.my-azure }}\"")
        subscription = subscription or subscription_of(config)
        endpoint = os.environ.get(ENDPOINT_ENV)
        return self._clients.get([block, subscription, endpoint],
                                 lambda: self._make_client(block, subscription, endpoint))

    @staticmethod
    def _make_client(block: dict[str, Any] | None, subscription: str, endpoint: str | None) -> Any:
        try:
            from azure.mgmt.containerinstance import ContainerInstanceManagementClient
        except ModuleNotFoundError as exc:  # pragma: no cover - the extra is missing
            raise PermanentPusherError("azure-container-instance:push needs the 'azure' extra: "
                                       "pip install 'pushpool[azure]'") from exc
        credential = credential_for(block)
        return ContainerInstanceManagementClient(credential, subscription, **arm_client_options(credential, endpoint))

    # ------------------------------------------------------------------ submit
    def submit(self, job: Job) -> Submission:
        from azure.core.exceptions import ResourceNotFoundError

        config = job.configuration
        image = job_image(job)
        resource_group = config.get("resource_group_name")
        if not resource_group:
            raise PermanentPusherError("no resource group: set the pool's 'resource_group_name' variable")
        client = self.client(config)
        name = group_name(job.idempotency_key)
        ref = GroupRef(subscription_of(config), resource_group, name)
        try:
            existing = client.container_groups.get(resource_group, name)
        except ResourceNotFoundError:
            existing = None
        except Exception as exc:  # noqa: BLE001
            raise translate(exc, "containerGroups.get") from exc
        if existing is not None:
            state = existing.provisioning_state or ""
            if state not in NOT_ADOPTABLE:
                return self._submission(existing.id)  # an earlier attempt created it: adopt it, never redeploy
            if state == "Failed":  # a failed deployment is not this run's infrastructure: make it again
                self._start_delete(client, ref)
            raise TransientPusherError(f"the container group {name} of an earlier attempt {state.lower()} and is "
                                       "being deleted; the run is submitted again once it is gone")
        try:  # polling=False: Azure's first answer is the acceptance; the reconciler watches the deployment
            client.container_groups.begin_create_or_update(resource_group, name, self._group(job, image),
                                                           polling=False)
        except Exception as exc:  # noqa: BLE001
            raise translate(exc, f"containerGroups.createOrUpdate (image {image!r})") from exc
        return self._submission(ref.resource_id)

    @staticmethod
    def _start_delete(client: Any, ref: GroupRef) -> None:
        """Ask Azure to delete a group, without waiting for it to be gone (a tick has other work)."""
        from azure.core.exceptions import ResourceNotFoundError

        try:
            client.container_groups.begin_delete(ref.resource_group, ref.name, polling=False)
        except ResourceNotFoundError:
            return
        except Exception as exc:  # noqa: BLE001
            raise translate(exc, "containerGroups.delete") from exc

    @staticmethod
    def _group(job: Job, image: str) -> Any:
        from azure.mgmt.containerinstance import models as m

        config = job.configuration
        env = [m.EnvironmentVariable(name=k, value=v) for k, v in sorted((config.get("env") or {}).items())]
        env += [m.EnvironmentVariable(name=k, secure_value=v) for k, v in sorted(job.env.items())
                if k not in (config.get("env") or {})]  # the run token and run context: secure values
        requests = m.ResourceRequests(cpu=float(config.get("cpu") or 1),
                                      memory_in_gb=float(config.get("memory") or 1.5))
        if config.get("gpu_count"):
            if not config.get("gpu_sku"):
                raise PermanentPusherError("gpu_count needs gpu_sku (K80, P100 or V100)")
            requests.gpu = m.GpuResource(count=int(config["gpu_count"]), sku=config["gpu_sku"])
        container = m.Container(name=CONTAINER, image=image, command=job.command or RUNNER_COMMAND,
                                environment_variables=env, resources=m.ResourceRequirements(requests=requests))
        group = m.ContainerGroup(location=config.get("location") or "eastus", containers=[container], os_type="Linux",
                                 restart_policy="Never", tags={k[:512]: v[:256] for k, v in sorted(job.labels.items())})
        registry = config.get("image_registry")
        if registry:
            group.image_registry_credentials = [m.ImageRegistryCredential(
                server=registry["server"], username=registry.get("username"), password=registry.get("password"),
                identity=registry.get("identity"))]
        if config.get("identities"):
            identities = {i: m.UserAssignedIdentities() for i in config["identities"]}
            group.identity = m.ContainerGroupIdentity(type="UserAssigned", user_assigned_identities=identities)
        if config.get("subnet_ids"):
            group.subnet_ids = [m.ContainerGroupSubnetId(id=s) for s in config["subnet_ids"]]
        if config.get("dns_servers"):
            group.dns_config = m.DnsConfiguration(name_servers=list(config["dns_servers"]))
        return group

    @staticmethod
    def _submission(resource_id: str) -> Submission:
        return Submission(infra_id=resource_id, console_url=portal_url(resource_id))

    # ------------------------------------------------------------------ watch, stop, logs
    def status(self, infra_ids: list[str]) -> dict[str, InfraStatus]:
        from azure.core.exceptions import ResourceNotFoundError

        out: dict[str, InfraStatus] = {}
        for resource_id in infra_ids:
            ref = GroupRef.parse(resource_id)
            try:
                group = self.client(self.context.pool_config, ref.subscription).container_groups.get(
                    ref.resource_group, ref.name)
            except ResourceNotFoundError:
                out[resource_id] = InfraStatus(InfraState.MISSING, reason="the container group no longer exists")
                continue
            except Exception as exc:  # noqa: BLE001
                raise translate(exc, "containerGroups.get") from exc
            out[resource_id] = classify(group)
        return out

    def cancel(self, infra_id: str) -> None:
        from azure.core.exceptions import ResourceNotFoundError

        ref = GroupRef.parse(infra_id)
        client = self.client(self.context.pool_config, ref.subscription)
        try:
            client.container_groups.stop(ref.resource_group, ref.name)
        except ResourceNotFoundError:
            return
        except Exception as exc:  # noqa: BLE001
            raise translate(exc, "containerGroups.stop") from exc
        self._start_delete(client, ref)

    def cleanup(self, infra_id: str) -> None:

        if self.context.pool_config.get("keep_container_group"):
            return
        ref = GroupRef.parse(infra_id)
        self._start_delete(self.client(self.context.pool_config, ref.subscription), ref)

    def logs(self, infra_id: str, tail: int | None = None, cursor: str | None = None) -> LogPage:
        """The container's output while its group exists (ACI keeps no logs after deletion)."""
        from azure.core.exceptions import ResourceNotFoundError

        ref = GroupRef.parse(infra_id)
        try:
            found = self.client(self.context.pool_config, ref.subscription).containers.list_logs(
                ref.resource_group, ref.name, CONTAINER, tail=tail)
        except ResourceNotFoundError:
            return LogPage(lines=[], cursor=cursor)
        except Exception as exc:  # noqa: BLE001
            raise translate(exc, "containers.listLogs") from exc
        lines = (found.content or "").splitlines()
        seen = int(cursor or 0)  # ACI answers the whole output: the cursor is how many lines were shown
        return LogPage(lines=lines[seen:] if cursor else lines, cursor=str(len(lines)) if not tail else None)


def classify(group: Any) -> InfraStatus:
    """An InfraStatus, with a reason a person can act on, for a container group."""
    containers = group.containers or []
    view = containers[0].instance_view if containers else None
    current = view.current_state if view is not None else None
    events = list(view.events or []) if view is not None else []
    pull_failure = next((e for e in events if (e.name or "") in ("Failed", "Pulling") and e.message
                         and ("pull" in e.message.lower() or "image" in e.message.lower())
                         and (e.type or "Warning") == "Warning"), None)
    if pull_failure is not None:
        image = containers[0].image
        return InfraStatus(InfraState.EXITED, 1, f"image pull failed for {image!r}: {pull_failure.message}")
    if current is None or current.state in (None, "Waiting", "Pending"):
        if (group.provisioning_state or "") == "Failed":
            why = next((e.message for e in events if e.message), "")
            return InfraStatus(InfraState.EXITED, 1, "the container group failed to deploy" + (f": {why}" if why
                                                                                               else ""))
        return InfraStatus(InfraState.PENDING)
    if current.state == "Running":
        return InfraStatus(InfraState.RUNNING)
    code = current.exit_code if current.exit_code is not None else 1
    if code == 0:
        return InfraStatus(InfraState.EXITED, 0)
    detail = current.detail_status or ""
    reason = classify_exit_code(code)
    return InfraStatus(InfraState.EXITED, code, f"{reason} ({detail})" if detail else reason)


def arm_client_options(credential: Any, endpoint: str | None) -> dict[str, Any]:
    """Keyword arguments for an Azure management client: another endpoint when one is set (an emulator, the
    tests' fake), and for a loopback endpoint only, a bearer policy that allows plain HTTP."""
    if not endpoint:
        return {}
    options: dict[str, Any] = {"base_url": endpoint}
    if urlparse(endpoint).hostname in ("127.0.0.1", "localhost", "::1"):
        options["authentication_policy"] = _loopback_bearer_policy(credential)
    return options


def _loopback_bearer_policy(credential: Any) -> Any:
    """Bearer tokens over plain HTTP, for a loopback endpoint only (the SDK's policy refuses non-TLS)."""
    from azure.core.pipeline.policies import SansIOHTTPPolicy

    class LoopbackBearer(SansIOHTTPPolicy):
        def on_request(self, request: Any) -> None:
            token = credential.get_token(ARM_SCOPE).token
            request.http_request.headers["Authorization"] = f"Bearer {token}"

    return LoopbackBearer()
