"""``--provision-infra`` for ``modal:push`` pools: the user's Modal token, verified, into a credentials block.

Modal needs no networks or roles: a pool needs a token of the Modal workspace its sandboxes run in.
The plan reads the token the way the ``modal`` CLI does (``MODAL_TOKEN_ID``/``MODAL_TOKEN_SECRET``, else
the active profile of ``~/.modal.toml`` or ``--profile``), checks it with Modal's API and names the
workspace; apply returns it as the pool's modal-credentials block. Running it again stores the
current token again (after ``modal token new`` that is the fresh one) and creates nothing else;
``deprovision`` removes the block. The app is created by the pusher on the first run.
"""

from __future__ import annotations

import asyncio
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pushpool.provisioners.base import Plan, PlanStep, Progress, ProvisioningError, ProvisionResult, StepAction

NO_TOKEN = ("no Modal token found: run `modal token new` (or set MODAL_TOKEN_ID and MODAL_TOKEN_SECRET), "
            "then run this again")


@dataclass(frozen=True)
class ModalToken:
    token_id: str
    token_secret: str
    source: str  # "environment" or "profile NAME (PATH)"


def config_path() -> Path:
    return Path(os.environ.get("MODAL_CONFIG_PATH") or Path.home() / ".modal.toml")


def read_token(profile: str | None = None) -> ModalToken:
    """The token the ``modal`` CLI would use (an explicit ``profile`` wins over the environment)."""
    token_id, token_secret = os.environ.get("MODAL_TOKEN_ID"), os.environ.get("MODAL_TOKEN_SECRET")
    if token_id and token_secret and not profile:
        return ModalToken(token_id, token_secret, "environment (MODAL_TOKEN_ID)")
    path = config_path()
    try:
        profiles = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ProvisioningError(NO_TOKEN) from None
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ProvisioningError(f"cannot read the Modal configuration {path}: {exc}") from None
    profiles = {name: values for name, values in profiles.items() if isinstance(values, dict)}
    name = profile or os.environ.get("MODAL_PROFILE") or next(
        (n for n, values in profiles.items() if values.get("active") is True),
        next(iter(profiles)) if len(profiles) == 1 else "default")
    values = profiles.get(name)
    if values is None:
        known = ", ".join(sorted(profiles)) or "none"
        raise ProvisioningError(f"--profile: no Modal profile {name!r} in {path} (profiles: {known})")
    if not values.get("token_id") or not values.get("token_secret"):
        raise ProvisioningError(f"Modal profile {name!r} in {path} has no token_id/token_secret: {NO_TOKEN}")
    return ModalToken(str(values["token_id"]), str(values["token_secret"]), f"profile {name} ({path})")


def verify(token: ModalToken) -> str:
    """The Modal workspace the token belongs to; a refused token is a ProvisioningError."""
    import modal  # lazily: only provisioning needs it here
    from modal.config import config
    from modal.exception import AuthError, ConnectionError

    server_url = config["server_url"]
    try:
        try:
            from modal.config import _lookup_workspace  # names the workspace; internal, so optional
        except ImportError:
            modal.Client.verify(server_url, (token.token_id, token.token_secret))
            return "(name not reported by this modal client)"
        answer = asyncio.run(_lookup_workspace(server_url, token.token_id, token.token_secret))
    except AuthError as exc:
        raise ProvisioningError(f"Modal refused the token from {token.source} ({exc}): create a new one with "
                                "`modal token new`") from None
    except (ConnectionError, OSError) as exc:
        raise ProvisioningError(f"cannot reach Modal at {server_url} ({exc})") from None
    except Exception as exc:  # noqa: BLE001
        raise ProvisioningError(f"checking the Modal token failed ({type(exc).__name__}: {exc}; modal client "
                                f"{modal.__version__})") from None
    return answer.workspace_name or answer.username


class ModalProvisioner:
    def plan(self, pool_name: str, options: dict[str, Any]) -> Plan:
        token = read_token(options.get("profile"))
        workspace = verify(token)
        steps = [
            PlanStep(f"Modal token {token.token_id}", StepAction.EXISTS,
                     f"from {token.source}; workspace {workspace}", "token"),
            PlanStep(f"credentials block {pool_name}-modal",
                     StepAction.EXISTS if options.get("has_credentials") else StepAction.CREATE,
                     "the token, encrypted; the pool's modal_credentials", "block"),
            PlanStep(f"Modal app pushpool-{pool_name}", StepAction.SKIP, "created by the first run", "app"),
        ]
        return Plan(pool_name=pool_name, steps=steps, options={
            **options, "workspace": workspace, "account": workspace, "token": token})

    def apply(self, plan: Plan, progress: Progress) -> ProvisionResult:
        token: ModalToken = plan.options["token"]
        for index, step in enumerate(plan.steps, start=1):
            progress(step, index, len(plan.steps))
        app_name = f"pushpool-{plan.pool_name}"
        return ProvisionResult(
            credentials_block={"type": "modal-credentials",
                               "data": {"token_id": token.token_id, "token_secret": token.token_secret}},
            job_variable_defaults={"app_name": app_name},
            summary=f"its sandboxes run in the Modal workspace {plan.options['workspace']}, app {app_name}, "
                    "with the stored token.")

    def destroy(self, pool_name: str, provisioning: dict[str, Any], progress: Progress) -> None:
        """Nothing in Modal to remove: the CLI deletes the credentials block; sandboxes end on their own."""
        progress(PlanStep(f"credentials block {pool_name}-modal", StepAction.EXISTS, "deleted", "block"), 1, 1)
