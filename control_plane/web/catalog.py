"""The dashboard's deployment pages: a deployment with its Run form (generated from the flow's parameter
schema), its schedules' next runs, recent runs, triggers and backfills (pause, resume, cancel), pause and
resume. (Pools: :mod:`.pools`.)"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from pushpool.control_plane.api import backfills as backfill_routes
from pushpool.control_plane.api import deployments as deployment_routes
from pushpool.control_plane.api import flow_runs as flow_run_routes
from pushpool.control_plane.api.deps import Access
from pushpool.control_plane.api.schemas import DeploymentUpdate, FlowRunCreate
from pushpool.control_plane.errors import InvalidInput, NotFound
from pushpool.control_plane.event_models import RunDeployment
from pushpool.control_plane.models import Deployment, FlowRunFilter, StateType
from pushpool.control_plane.web.automations import trigger_summary
from pushpool.control_plane.web.common import act, created_id, page, ws_path

RECENT_RUNS = 20
UPCOMING_RUNS = 10
RECENT_BACKFILLS = 10
router = APIRouter(include_in_schema=False)


def triggers_of(access: Access, deployment: Deployment) -> list[dict[str, Any]]:
    """The automations that run this deployment: its own ``triggers`` and any other that names it."""
    names = {deployment.id, deployment.full_name}
    found = []
    for automation in sorted(access.ctx.store.list_automations(access.workspace_id), key=lambda a: a.name):
        runs_it = any(isinstance(action, RunDeployment) and action.deployment in names for action in automation.actions)
        if automation.owner_deployment_id == deployment.id or runs_it:
            found.append({"automation": automation, "when": trigger_summary(automation),
                          "own": automation.owner_deployment_id == deployment.id})
    return found


def _deployment(access: Access, deployment_id: str) -> Deployment:
    deployment = access.ctx.store.get_deployment(access.workspace_id, deployment_id)
    if deployment is None:
        raise NotFound("Deployment not found")
    return deployment


def form_fields(deployment: Deployment) -> list[dict[str, Any]]:
    """One input per parameter of the flow: its name, kind (``text``, ``number``, ``integer``, ``boolean``,
    ``json``), whether it is required, and the value the form starts with (the deployment's, else the default)."""
    schema = deployment.parameter_schema or {}
    required = set(schema.get("required", []))
    fields = []
    for name, spec in (schema.get("properties") or {}).items():
        kind = {"string": "text", "number": "number", "integer": "integer", "boolean": "boolean"}.get(
            spec.get("type"), "json")
        value = deployment.parameters.get(name, spec.get("default"))
        shown = "" if value is None else (json.dumps(value) if kind == "json" else value)
        fields.append({"name": name, "kind": kind, "required": name in required and name not in deployment.parameters,
                       "value": shown, "title": spec.get("title") or name, "description": spec.get("description")})
    return fields


def parameters_from(deployment: Deployment, form: dict[str, str]) -> dict[str, Any]:
    """The posted form as parameters, typed by the schema; an empty field leaves the deployment's value or the
    default. A value that is not of its type is a 422 naming the parameter."""
    out: dict[str, Any] = {}
    for field in form_fields(deployment):
        name, kind = field["name"], field["kind"]
        raw = form.get(f"param.{name}", "")
        if kind == "boolean":
            out[name] = raw == "on"
            continue
        if raw == "":
            continue
        try:
            out[name] = {"text": str, "number": float, "integer": int, "json": json.loads}[kind](raw)
        except ValueError:
            wanted = "JSON" if kind == "json" else f"a {kind}"
            raise InvalidInput(f"parameters.{name}: {raw!r} is not {wanted}") from None
    return out


@router.get("/w/{workspace}/deployments")
def deployments_page(request: Request, workspace: str) -> Response:
    def build(access: Access) -> tuple[str, dict]:
        store = access.ctx.store
        pools = {p.id: p.name for p in store.list_work_pools(access.workspace_id)}
        deployments = store.list_deployment_summaries(access.workspace_id)
        return "deployments.html", {"deployments": deployments, "pools": pools}

    return page(request, workspace, build)


@router.get("/w/{workspace}/deployments/{deployment_id}")
def deployment_page(request: Request, workspace: str, deployment_id: str) -> Response:
    def build(access: Access) -> tuple[str, dict]:
        store, now = access.ctx.store, access.ctx.clock.now()
        deployment = _deployment(access, deployment_id)
        runs = store.list_flow_runs(access.workspace_id, FlowRunFilter(
            deployment_id=deployment.id, scheduled_before=now, sort="scheduled_desc"), limit=RECENT_RUNS)
        upcoming = store.list_flow_runs(access.workspace_id, FlowRunFilter(
            deployment_id=deployment.id, states=[StateType.SCHEDULED], scheduled_after=now, sort="scheduled_asc"),
            limit=UPCOMING_RUNS)
        pool = store.get_work_pool_by_id(access.workspace_id, deployment.pool_id)
        backfills = store.list_backfills(access.workspace_id, deployment.id, limit=RECENT_BACKFILLS)
        return "deployment.html", {"deployment": deployment, "fields": form_fields(deployment), "runs": runs,
                                   "upcoming": upcoming, "pool": pool, "triggers": triggers_of(access, deployment),
                                   "backfills": backfills}

    return page(request, workspace, build)


@router.post("/w/{workspace}/deployments/{deployment_id}/run")
async def run_deployment(request: Request, workspace: str, deployment_id: str) -> Response:
    def start(access: Access, form: dict[str, str]) -> str:
        deployment = _deployment(access, deployment_id)
        overrides = form.get("job_variables", "").strip()
        try:
            job_variables = json.loads(overrides) if overrides else {}
        except ValueError:
            raise InvalidInput("job_variables: not JSON (write an object, e.g. {\"cpu\": 1024})") from None
        if not isinstance(job_variables, dict):
            raise InvalidInput("job_variables: write a JSON object")
        body = FlowRunCreate(parameters=parameters_from(deployment, form), job_variables=job_variables)
        answer = flow_run_routes._create_flow_run(deployment.id, body, access)
        return ws_path(access, "runs", created_id(answer))

    return await act(request, workspace, start)


def _deployment_paused(paused: bool):
    async def route(request: Request, workspace: str, deployment_id: str) -> Response:
        def change(access: Access, _: dict[str, str]) -> str:
            deployment_routes.update_deployment(deployment_id, DeploymentUpdate(paused=paused), access)
            return ws_path(access, "deployments", deployment_id)

        return await act(request, workspace, change)

    return route


router.add_api_route("/w/{workspace}/deployments/{deployment_id}/pause", _deployment_paused(True), methods=["POST"])
router.add_api_route("/w/{workspace}/deployments/{deployment_id}/resume", _deployment_paused(False),
                     methods=["POST"])


def _backfill_action(action: str):
    """Pause, resume or cancel one of the deployment's backfills (the API's rules: the ``run`` permission)."""
    async def route(request: Request, workspace: str, deployment_id: str, backfill_id: str) -> Response:
        def change(access: Access, _: dict[str, str]) -> str:
            getattr(backfill_routes, f"{action}_backfill")(backfill_id, access)
            return ws_path(access, "deployments", deployment_id)

        return await act(request, workspace, change)

    return route


for _action in ("pause", "resume", "cancel"):
    router.add_api_route(f"/w/{{workspace}}/deployments/{{deployment_id}}/backfills/{{backfill_id}}/{_action}",
                         _backfill_action(_action), methods=["POST"])
