"""``--provision-infra`` for ``coiled:push`` pools: the user's Coiled token, verified, into a credentials block.

Coiled creates the VMs, networks and roles in the user's cloud account itself, once the account is connected
to a Coiled workspace (``coiled setup aws|gcp|azure``). So a pool needs the token of a workspace that is
connected. The plan reads the token the way the ``coiled`` client does (``coiled login`` saves it in dask's
configuration, ``~/.config/dask/coiled.yaml``; ``DASK_COILED__TOKEN`` overrides it), checks it with
Coiled's API, names the user and workspace, and checks the workspace has a cloud — when not, it says to run
``coiled setup`` and writes nothing. Apply returns the token and workspace as the pool's
coiled-credentials block; running it again stores the current token again and creates nothing else;
``deprovision`` removes the block (a run's cluster stops on its own when its job ends).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from pushpool.provisioners.base import Plan, PlanStep, Progress, ProvisioningError, ProvisionResult, StepAction
from pushpool.pushers.base import PusherError

NO_TOKEN = "no Coiled token found: run `coiled login` (or set DASK_COILED__TOKEN), then run this again"


@dataclass(frozen=True)
class CoiledLogin:
    token: str
    server: str
    workspace: str | None
    source: str


def read_login() -> CoiledLogin:
    """The token, server and workspace the ``coiled`` client would use on this machine."""
    try:
        import dask.config
    except ModuleNotFoundError:  # pragma: no cover - the extra is missing
        raise ProvisioningError("coiled:push needs the 'coiled' extra: pip install 'pushpool[coiled]'") from None
    # the files and DASK_* variables as they are now (dask fixed its list of directories when first imported)
    own = os.environ.get("DASK_CONFIG") or os.path.join(os.path.expanduser("~"), ".config", "dask")
    dask.config.refresh(paths=[*(p for p in dask.config.paths if p != dask.config.PATH), own])
    token = dask.config.get("coiled.token", None)
    if not token:
        raise ProvisioningError(NO_TOKEN)
    from pushpool.pushers.coiled import DEFAULT_SERVER

    server = str(dask.config.get("coiled.server", None) or DEFAULT_SERVER).rstrip("/")
    workspace = dask.config.get("coiled.workspace", None) or dask.config.get("coiled.account", None)
    source = ("environment (DASK_COILED__TOKEN)" if os.environ.get("DASK_COILED__TOKEN")
              else "`coiled login` (dask configuration)")
    return CoiledLogin(str(token).strip(), server, str(workspace) if workspace else None, source)


def cloud_of(login: CoiledLogin, workspace: str) -> str:
    """The cloud the workspace is connected to ("aws", "gcp", "azure"), or "" when ``coiled setup`` never ran."""
    import httpx

    from pushpool.pushers.coiled import auth_header

    try:
        answer = httpx.get(f"{login.server}/api/v1/{workspace}/backend_options/",
                           headers=auth_header(login.token), timeout=30)
        answer.raise_for_status()
    except httpx.HTTPError as exc:
        raise ProvisioningError(f"cannot read the Coiled workspace {workspace!r}'s cloud set-up at {login.server} "
                                f"({type(exc).__name__}: {exc})") from None
    options = answer.json() or {}
    backend = str(options.get("backend") or "")
    return str((options.get("options") or {}).get("provider_name") or backend.removeprefix("vm_").removeprefix("vm"))


class CoiledProvisioner:
    def plan(self, pool_name: str, options: dict[str, Any]) -> Plan:
        from pushpool.pushers.coiled import verify_token

        login = read_login()
        wanted = options.get("coiled_workspace") or login.workspace
        try:
            account = verify_token(login.token, wanted, login.server)
        except PusherError as exc:
            raise ProvisioningError(f"{exc} (token from {login.source})") from None
        cloud = cloud_of(login, account.workspace)
        if not cloud:
            raise ProvisioningError(
                f"the Coiled workspace {account.workspace!r} is not connected to a cloud account yet: run "
                "`coiled setup aws` (or `coiled setup gcp`, `coiled setup azure`) once, then run this again")
        server_note = "" if login.server == _control_plane_server() else (
            f"; your login is for {login.server}: start the control plane with PUSHPOOL_COILED_SERVER={login.server}")
        steps = [
            PlanStep(f"Coiled token of {account.username}", StepAction.EXISTS,
                     f"from {login.source}; workspace {account.workspace}{server_note}", "token"),
            PlanStep(f"Coiled workspace {account.workspace}", StepAction.EXISTS,
                     f"connected to {cloud.upper()} (`coiled setup`)", "cloud"),
            PlanStep(f"credentials block {pool_name}-coiled",
                     StepAction.EXISTS if options.get("has_credentials") else StepAction.CREATE,
                     "the token and workspace, encrypted; the pool's coiled_credentials", "block"),
            PlanStep("Coiled clusters", StepAction.SKIP, "one per run, made by Coiled; each stops with its job",
                     "clusters"),
        ]
        return Plan(pool_name=pool_name, steps=steps, options={
            **options, "workspace": account.workspace, "account": account.workspace, "cloud": cloud,
            "login": login})

    def apply(self, plan: Plan, progress: Progress) -> ProvisionResult:
        login: CoiledLogin = plan.options["login"]
        for index, step in enumerate(plan.steps, start=1):
            progress(step, index, len(plan.steps))
        workspace = plan.options["workspace"]
        return ProvisionResult(
            credentials_block={"type": "coiled-credentials", "data": {"token": login.token, "workspace": workspace}},
            summary=f"its runs are Coiled batch jobs in the workspace {workspace} "
                    f"({plan.options['cloud'].upper()}), with the stored token.")

    def destroy(self, pool_name: str, provisioning: dict[str, Any], progress: Progress) -> None:
        """Nothing in Coiled to remove: the CLI deletes the credentials block; clusters stop with their jobs."""
        progress(PlanStep(f"credentials block {pool_name}-coiled", StepAction.EXISTS, "deleted", "block"), 1, 1)


def _control_plane_server() -> str:
    from pushpool.pushers.coiled import coiled_server

    return coiled_server()
