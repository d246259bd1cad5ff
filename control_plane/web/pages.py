"""The dashboard's sign-in and flow-run pages (the other views: :mod:`.catalog`), served by the control plane
itself at ``/`` (embedded server and Lambda alike).

Server-rendered from the package's own Jinja2 templates (autoescaped), with one stylesheet and one
small script (``static/app.js``: live refresh; the pages work without it) and no request to any
other host (:mod:`.common` sets the headers). Pages act through the same route functions,
services and permission checks as the API; the caller's role decides which buttons exist, and
the action routes check it again.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import Response

from pushpool.control_plane.api import flow_runs as flow_run_routes
from pushpool.control_plane.api.deps import Access, authenticate_token
from pushpool.control_plane.errors import PushpoolError, Unauthorized
from pushpool.control_plane.event_models import EventFilter
from pushpool.control_plane.models import FlowRun
from pushpool.control_plane.services import run_logs
from pushpool.control_plane.services.context import ServiceContext
from pushpool.control_plane.web import sessions
from pushpool.control_plane.web.automations import describe
from pushpool.control_plane.web.common import (
    HERE,
    SECURITY_HEADERS,
    SignInNeeded,
    act,
    caller_of,
    created_id,
    ctx_of,
    masked,
    page,
    posted_form,
    render,
    see_other,
    workspaces_of,
    ws_path,
)

LOG_LINES = 500
RUN_EVENTS = 50
router = APIRouter(include_in_schema=False)


def _safe_next(target: str | None) -> str:
    """Only a path on this site (never ``//host`` or a URL) after signing in."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/"


# ---------------------------------------------------------------------------- sign-in
@router.get("/sign-in")
def sign_in_page(request: Request, next: str | None = None) -> Response:  # noqa: A002 - the query's name
    return render(request, "sign_in.html", next=_safe_next(next), error=None, workspaces=[])


@router.post("/sign-in")
async def sign_in(request: Request) -> Response:
    try:
        form = await posted_form(request)
    except PushpoolError as exc:
        return render(request, "error.html", status=exc.http_status, message=exc.message)
    ctx, target = ctx_of(request), _safe_next(form.get("next"))
    try:
        caller = authenticate_token(ctx, form.get("key", "").strip())
        if caller.actor is None or caller.key is None:
            raise Unauthorized("run-token")
    except Unauthorized as exc:
        reason = {"expired": "This key has expired.", "revoked": "This key has been revoked.",
                  "run-token": "A run token cannot sign in: use your own API key."}.get(
                      exc.reason, "This is not a valid API key.")
        return render(request, "sign_in.html", status=401, next=target, error=reason, workspaces=[])
    value, seconds = sessions.new_session(ctx, caller.key)
    response = see_other(target)
    response.set_cookie(sessions.COOKIE, value, max_age=seconds, httponly=True, samesite="strict",
                        secure=request.url.scheme == "https", path="/")
    return response


@router.post("/sign-out")
async def sign_out(request: Request) -> Response:
    try:
        await posted_form(request)
    except PushpoolError as exc:
        return render(request, "error.html", status=exc.http_status, message=exc.message)
    response = see_other("/sign-in")
    response.delete_cookie(sessions.COOKIE, path="/", httponly=True, samesite="strict")
    return response


@router.get("/")
def home(request: Request) -> Response:
    try:
        caller = caller_of(request)
    except SignInNeeded:
        return see_other("/sign-in")
    workspaces = workspaces_of(ctx_of(request), caller)
    if not workspaces:
        return render(request, "error.html", status=404, message="You are not a member of any workspace yet.")
    return see_other(f"/w/{quote(workspaces[0].name)}/")


STATIC = {"app.css": "text/css", "app.js": "text/javascript"}


@router.get("/static/{name}")
def static_file(name: str) -> Response:
    """The stylesheet and the one script (nothing else is served from the package's folder)."""
    if name not in STATIC:
        return Response(status_code=404, headers=SECURITY_HEADERS)
    return Response((HERE / "static" / name).read_bytes(), media_type=STATIC[name],
                    headers={**SECURITY_HEADERS, "Cache-Control": "max-age=3600"})


# ---------------------------------------------------------------------------- runs
def run_events(ctx: ServiceContext, run: FlowRun) -> list[dict[str, Any]]:
    """The run's own events and those about it (its infrastructure's), newest first, at most ``RUN_EVENTS``."""
    about = f"pushpool.flow-run.{run.id}"
    found = {e.id: e for flt in (EventFilter(resource_id=about), EventFilter(related_id=about))
             for e in ctx.store.list_events(run.workspace_id, flt, RUN_EVENTS)}
    return [describe(e) for e in sorted(found.values(), key=lambda e: (e.occurred, e.id), reverse=True)[:RUN_EVENTS]]


@router.get("/w/{workspace}/runs/{run_id}")
def run_page(request: Request, workspace: str, run_id: str) -> Response:
    def build(access: Access) -> tuple[str, dict]:
        ctx = access.ctx
        run = flow_run_routes.load_run(ctx, access, run_id)
        logs = run_logs.read_page(ctx, run, tail=LOG_LINES, cursor=None)["lines"]
        return "run.html", {"run": run, "states": ctx.store.get_state_history(run.id),
                            "task_runs": ctx.store.list_task_runs(run.id, limit=1000), "logs": logs,
                            "job_variables": masked(run.job_variables),
                            "children": ctx.store.list_child_runs(run.id, limit=100),
                            "events": run_events(ctx, run)}

    return page(request, workspace, build)


@router.post("/w/{workspace}/runs/{run_id}/cancel")
async def cancel_run(request: Request, workspace: str, run_id: str) -> Response:
    def cancel(access: Access, _: dict[str, str]) -> str:
        flow_run_routes.cancel_flow_run(run_id, access)
        return ws_path(access, "runs", run_id)

    return await act(request, workspace, cancel)


@router.post("/w/{workspace}/runs/{run_id}/retry")
async def retry_run(request: Request, workspace: str, run_id: str) -> Response:
    def retry(access: Access, _: dict[str, str]) -> str:
        return ws_path(access, "runs", created_id(flow_run_routes.retry_flow_run(run_id, access)))

    return await act(request, workspace, retry)
