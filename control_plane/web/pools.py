"""The dashboard's work-pool pages: every pool with its health (paused, at its limit, runs active), and a
pool's page: settings, queues, the base job template's variables, a preview of the job a run of one of its
deployments would get, what a provisioner created for it, and pause/resume.

The preview renders the template as the dispatcher does, but never resolves a block: a reference to one
stays as the ``{{ pushpool.blocks.… }}`` text it is, and environment values named like a secret are masked,
so a viewer sees the job's shape and no credential.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from pushpool.control_plane.api import work_pools as pool_routes
from pushpool.control_plane.api.deps import Access
from pushpool.control_plane.api.schemas import WorkPoolUpdate
from pushpool.control_plane.errors import PushpoolError
from pushpool.control_plane.models import Deployment, WorkPool
from pushpool.control_plane.services.templating import render_job_configuration
from pushpool.control_plane.web.common import act, masked, page, ws_path

#: Deployments offered for the preview (a pool may have many; the first ones by name).
PREVIEW_CHOICES = 200
router = APIRouter(include_in_schema=False)


def pool_load(access: Access, pool: WorkPool) -> dict[str, Any]:
    """How busy a pool is: its active runs and whether they fill its concurrency limit."""
    active = access.ctx.store.count_active_runs(pool.id)
    limit = pool.concurrency_limit
    return {"active": active, "at_limit": limit is not None and active >= limit}


def job_preview(pool: WorkPool, deployment: Deployment | None) -> dict[str, Any]:
    """The job configuration a run of ``deployment`` (or of none: the pool's defaults) would get, blocks
    unresolved and secrets masked; or the reason it cannot be rendered."""
    properties = pool.base_job_template.get("variables", {}).get("properties", {})
    layers: list[dict[str, Any]] = []
    if deployment is not None:
        layers = [{"image": deployment.image} if deployment.image and "image" in properties else {},
                  deployment.job_variables]
    try:
        job = masked(render_job_configuration(pool.base_job_template, *layers, require=False))
        return {"job": json.dumps(job, indent=2, ensure_ascii=False), "error": None}
    except PushpoolError as exc:
        return {"job": None, "error": exc.message}


@router.get("/w/{workspace}/pools")
def pools_page(request: Request, workspace: str) -> Response:
    def build(access: Access) -> tuple[str, dict]:
        store = access.ctx.store
        pools = sorted(store.list_work_pools(access.workspace_id), key=lambda p: p.name)
        queues = {p.id: store.list_work_queues(access.workspace_id, p.id) for p in pools}
        return "pools.html", {"pools": pools, "queues": queues, "load": {p.id: pool_load(access, p) for p in pools}}

    return page(request, workspace, build)


@router.get("/w/{workspace}/pools/{name}")
def pool_page(request: Request, workspace: str, name: str,
              deployment: str | None = Query(default=None, max_length=64)) -> Response:
    def build(access: Access) -> tuple[str, dict]:
        store = access.ctx.store
        pool = pool_routes.load_pool(access.ctx, access, name)
        users = [d for d in store.list_deployment_summaries(access.workspace_id) if d.pool_id == pool.id]
        chosen = store.get_deployment(access.workspace_id, deployment) if deployment else None
        chosen = chosen if chosen is not None and chosen.pool_id == pool.id else None
        variables = pool.base_job_template.get("variables", {})
        required = set(variables.get("required", []))
        return "pool.html", {
            "pool": pool, "load": pool_load(access, pool), "queues": store.list_work_queues(access.workspace_id,
                                                                                            pool.id),
            "variables": [{"name": key, "required": key in required, "type": spec.get("type") or "",
                           "has_default": "default" in spec, "default": spec.get("default"),
                           "description": spec.get("description") or ""}
                          for key, spec in sorted(variables.get("properties", {}).items()) if isinstance(spec, dict)],
            "deployments": [(d.id, d.full_name) for d in users[:PREVIEW_CHOICES]], "deployment_count": len(users),
            "chosen": chosen,
            "preview": job_preview(pool, chosen), "provisioning": pool.provisioning}

    return page(request, workspace, build)


def _pool_paused(paused: bool):
    async def route(request: Request, workspace: str, name: str) -> Response:
        def change(access: Access, _: dict[str, str]) -> str:
            pool_routes.update_work_pool(name, WorkPoolUpdate(paused=paused), access)
            return ws_path(access, "pools")

        return await act(request, workspace, change)

    return route


router.add_api_route("/w/{workspace}/pools/{name}/pause", _pool_paused(True), methods=["POST"])
router.add_api_route("/w/{workspace}/pools/{name}/resume", _pool_paused(False), methods=["POST"])
