"""Provisioning from the CLI: plan shown first, then apply with progress, then the results written
back (credentials block, job-template defaults, the provisioning record, the build namespace)."""

from __future__ import annotations

import contextlib
import copy
from typing import Any

from rich.progress import BarColumn, Progress, TextColumn

from pushpool import profiles
from pushpool.cli.common import confirm, console, table
from pushpool.client import PushpoolClient
from pushpool.control_plane.errors import InvalidInput, NotFound
from pushpool.provisioners.base import (
    CREDENTIALS,
    NOTHING_TO_PROVISION,
    Plan,
    PlanStep,
    StepAction,
    credentials_block_name,
    provisioner_for,
)
from pushpool.settings import selected_profile_name

#: Options a provisioning run records in the pool, so the next run (and deprovision) uses them again.
REMEMBERED_OPTIONS = ("region", "profile", "project", "subscription")


def _provisioner(pool_type: str) -> Any:
    provisioner = provisioner_for(pool_type)
    if provisioner is None:
        raise InvalidInput(f"--provision-infra: no provisioner for {pool_type!r} in this release yet; create the "
                           "infrastructure yourself and set it in the pool's job template")
    return provisioner


def show_plan(plan: Plan) -> None:
    colours = {StepAction.CREATE: "green", StepAction.EXISTS: "cyan", StepAction.SKIP: "dim",
               StepAction.CHECK: "yellow"}
    where = f" in {plan.options['region']}" if plan.options.get("region") else ""
    console.print(table(f"Plan for work pool {plan.pool_name!r}{where}",
                        ["resource", "action", "detail"],
                        [(s.resource, f"[{colours[s.action]}]{s.action.value}[/]", s.detail) for s in plan.steps]))


def _progress(total: int, *, teardown: bool = False) -> tuple[Progress, Any]:
    progress = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                        console=console)
    task = progress.add_task("Tearing down" if teardown else "Provisioning", total=total)

    def step_done(step: PlanStep, index: int, _: int) -> None:
        progress.update(task, completed=index)
        what = "deleted" if teardown else step.action.value
        progress.console.print(f"  [green]✓[/] {step.resource} ({what})", highlight=False)

    return progress, step_done


def plan_for(pool_name: str, pool_type: str, options: dict[str, Any]) -> Plan:
    with console.status("Reading what already exists ..."):
        return _provisioner(pool_type).plan(pool_name, options)


def provision(client: PushpoolClient, pool: dict[str, Any], options: dict[str, Any], *, yes: bool,
              dry_run: bool) -> None:
    if pool["type"] in NOTHING_TO_PROVISION:
        console.print(f"Work pool type {pool['type']} runs on this machine; there is no infrastructure to provision.")
        return
    record = pool.get("provisioning") or {}
    name = credentials_block_name(pool["name"], pool["type"])
    try:
        client.request("GET", client.ws(f"/blocks/{name}"))
        has_block = True
    except NotFound:
        has_block = False
    options = {**{k: record.get(k) for k in REMEMBERED_OPTIONS}, **{k: v for k, v in options.items() if v is not None},
               "has_credentials": has_block}
    provisioner = _provisioner(pool["type"])
    plan = plan_for(pool["name"], pool["type"], options)
    show_plan(plan)
    if dry_run:
        console.print("Dry run: nothing was changed.")
        return
    confirm(f"Apply this plan ({len(plan.changes)} to create)?", yes)
    progress, step_done = _progress(len(plan.steps))
    with progress:
        result = provisioner.apply(plan, step_done)
    if result.credentials_block:
        body = {"name": name, "type": result.credentials_block["type"], "data": result.credentials_block["data"]}
        if has_block:
            client.request("PUT", client.ws(f"/blocks/{name}"), json={"data": body["data"]})
        else:
            client.request("POST", client.ws("/blocks"), json=body)
        has_block = True
    defaults = dict(result.job_variable_defaults)
    if has_block:
        defaults[CREDENTIALS[pool["type"]][1]] = f"{{{{ pushpool.blocks.{name} }}}}"
    template = copy.deepcopy(pool["base_job_template"])
    properties = template["variables"].setdefault("properties", {})
    for key, value in defaults.items():
        if key in properties:
            properties[key]["default"] = value
    created = _merge(record.get("created") or {}, result.created)
    new_record = {**record, **{k: plan.options.get(k) for k in REMEMBERED_OPTIONS},
                  "account": plan.options.get("account"), "created": created,
                  "credentials_block": name if has_block else None}
    client.request("PATCH", client.ws(f"/work_pools/{pool['name']}"),
                   json={"base_job_template": template, "provisioning": new_record})
    if result.registry_namespace:
        profiles.update_profile(selected_profile_name(), {"PUSHPOOL_BUILD_NAMESPACE": result.registry_namespace},
                                activate=False)
    summary = result.summary or "its job template now uses what was provisioned."
    console.print(f"Work pool {pool['name']!r} is ready: {summary}", highlight=False)


def _merge(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    merged = dict(old)
    for key, value in new.items():
        if isinstance(value, list):
            merged[key] = sorted(set(merged.get(key, [])) | set(value))
        else:
            merged[key] = value
    return merged


def deprovision(client: PushpoolClient, pool: dict[str, Any], *, yes: bool) -> None:
    record = pool.get("provisioning") or {}
    created = record.get("created") or {}
    if not created and not record.get("credentials_block"):
        console.print(f"Work pool {pool['name']!r} has nothing provisioned by pushpool; nothing to remove.")
        return
    console.print(table(f"pushpool created these for {pool['name']!r}", ["resource", "id"],
                        [(k, v) for k, v in sorted(created.items())]))
    confirm("Delete them (resources that existed before are left alone)?", yes)
    progress, step_done = _progress(max(1, len(created)), teardown=True)
    with progress:
        _provisioner(pool["type"]).destroy(pool["name"], record, step_done)
    if record.get("credentials_block"):
        with contextlib.suppress(NotFound):  # already gone
            client.request("DELETE", client.ws(f"/blocks/{record['credentials_block']}"))
    default = client.request("GET", f"/api/pool_types/{pool['type']}/base_job_template")
    client.request("PATCH", client.ws(f"/work_pools/{pool['name']}"),
                   json={"base_job_template": default, "provisioning": {}})
    console.print(f"Removed what pushpool created for {pool['name']!r}; its job template is back to the default.")
