"""The dashboard's pages, served by the control plane itself at ``/`` (embedded server and Lambda alike).

Server-rendered from the package's own Jinja2 templates (autoescaped), one stylesheet, no script
and no request to any other host: every page carries ``Content-Security-Policy: default-src
'self'``. Pages act through the same services and permission checks as the API; the caller's
role decides which buttons exist, and the action routes check it again. Every form carries the
session's CSRF token, and a POST whose ``Origin`` is another site is refused before that.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from pushpool.control_plane.api import flow_runs as flow_run_routes
from pushpool.control_plane.api.deps import Access, Caller, access_for, authenticate_token
from pushpool.control_plane.errors import Forbidden, PushpoolError, Unauthorized
from pushpool.control_plane.models import FlowRunFilter, StateType
from pushpool.control_plane.services import run_logs
from pushpool.control_plane.services.context import ServiceContext
from pushpool.control_plane.services.keys import Permission
from pushpool.control_plane.web import sessions

HERE = Path(__file__).parent
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
PAGE_SIZE = 50
LOG_LINES = 500
#: Job-variable keys whose values are not shown (environment variables named like a secret).
SECRET_WORDS = ("secret", "password", "passwd", "token", "key", "credential", "auth")

router = APIRouter(include_in_schema=False)


@functools.cache
def templates() -> Any:
    """The page templates (Jinja2 imported on the first page served, not when the Lambda handler loads)."""
    import jinja2

    environment = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True,
                                     undefined=jinja2.StrictUndefined)
    environment.filters["pretty"] = lambda value: json.dumps(value, indent=2, sort_keys=True, default=str)
    return environment


class SignInNeeded(Exception):
    """The request has no valid session: the page sends the browser to sign in."""


def _ctx(request: Request) -> ServiceContext:
    return request.app.state.ctx


def _caller(request: Request) -> Caller:
    try:
        return sessions.caller_of(_ctx(request), request.cookies.get(sessions.COOKIE))
    except Unauthorized:
        raise SignInNeeded from None


def _render(request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
    cookie = request.cookies.get(sessions.COOKIE)
    context.setdefault("csrf", sessions.csrf_token(_ctx(request), cookie) if cookie else "")
    context.setdefault("access", None)
    return HTMLResponse(templates().get_template(name).render(**context), status_code=status,
                        headers=SECURITY_HEADERS)


def _to_sign_in(request: Request) -> RedirectResponse:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/sign-in?next={quote(target)}", status_code=303, headers=SECURITY_HEADERS)


def _workspaces(ctx: ServiceContext, caller: Caller) -> list[Any]:
    assert caller.actor is not None
    found = (ctx.store.get_workspace(m.workspace_id) for m in ctx.store.list_memberships(caller.actor.id))
    return sorted((w for w in found if w is not None), key=lambda w: w.name)


def _page(request: Request, workspace: str, build: Any) -> Response:
    """Render a workspace page built by ``build(access) -> (template, context)``; sign-in and errors handled."""
    try:
        caller = _caller(request)
        ctx = _ctx(request)
        access = access_for(ctx, caller, workspace)
        access.require(Permission.READ)
        name, context = build(access)
        return _render(request, name, access=access, workspaces=_workspaces(ctx, caller),
                       can_run=Permission.RUN in access.permissions, **context)
    except SignInNeeded:
        return _to_sign_in(request)
    except PushpoolError as exc:
        return _render(request, "error.html", status=exc.http_status, message=exc.message)


async def _form(request: Request) -> dict[str, str]:
    """The posted form, after the checks every state-changing request passes: same origin, CSRF token."""
    origin = request.headers.get("origin")
    if origin and origin != "null" and urlsplit(origin).netloc != request.url.netloc:
        raise Forbidden("This form was posted from another site")
    form = {k: v[0] for k, v in parse_qs((await request.body()).decode("utf-8", "replace")).items()}
    if request.url.path != "/sign-in" and not sessions.csrf_ok(_ctx(request), request.cookies.get(sessions.COOKIE),
                                                             form.get("csrf")):
        raise Forbidden("The form's CSRF token is missing or wrong: reload the page and try again")
    return form


def _safe_next(target: str | None) -> str:
    """Only a path on this site (never ``//host`` or a URL) after signing in."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/"


# ---------------------------------------------------------------------------- sign-in
@router.get("/sign-in")
def sign_in_page(request: Request, next: str | None = None) -> Response:  # noqa: A002 - the query's name
    return _render(request, "sign_in.html", next=_safe_next(next), error=None, workspaces=[])


@router.post("/sign-in")
async def sign_in(request: Request) -> Response:
    try:
        form = await _form(request)
    except PushpoolError as exc:
        return _render(request, "error.html", status=exc.http_status, message=exc.message)
    ctx, target = _ctx(request), _safe_next(form.get("next"))
    try:
        caller = authenticate_token(ctx, form.get("key", "").strip())
        if caller.actor is None or caller.key is None:
            raise Unauthorized("run-token")
    except Unauthorized as exc:
        reason = {"expired": "This key has expired.", "revoked": "This key has been revoked.",
                  "run-token": "A run token cannot sign in: use your own API key."}.get(
                      exc.reason, "This is not a valid API key.")
        return _render(request, "sign_in.html", status=401, next=target, error=reason, workspaces=[])
    value, seconds = sessions.new_session(ctx, caller.key)
    response = RedirectResponse(target, status_code=303, headers=SECURITY_HEADERS)
    response.set_cookie(sessions.COOKIE, value, max_age=seconds, httponly=True, samesite="strict",
                        secure=request.url.scheme == "https", path="/")
    return response


@router.post("/sign-out")
async def sign_out(request: Request) -> Response:
    try:
        await _form(request)
    except PushpoolError as exc:
        return _render(request, "error.html", status=exc.http_status, message=exc.message)
    response = RedirectResponse("/sign-in", status_code=303, headers=SECURITY_HEADERS)
    response.delete_cookie(sessions.COOKIE, path="/", httponly=True, samesite="strict")
    return response


@router.get("/")
def home(request: Request) -> Response:
    try:
        caller = _caller(request)
    except SignInNeeded:
        return RedirectResponse("/sign-in", status_code=303, headers=SECURITY_HEADERS)
    workspaces = _workspaces(_ctx(request), caller)
    if not workspaces:
        return _render(request, "error.html", status=404, message="You are not a member of any workspace yet.")
    return RedirectResponse(f"/w/{quote(workspaces[0].name)}/runs", status_code=303, headers=SECURITY_HEADERS)


@router.get("/static/app.css")
def stylesheet() -> Response:
    return Response((HERE / "static" / "app.css").read_bytes(), media_type="text/css",
                    headers={**SECURITY_HEADERS, "Cache-Control": "max-age=3600"})


# ---------------------------------------------------------------------------- runs
@router.get("/w/{workspace}/runs")
def runs_page(request: Request, workspace: str, state: StateType | None = None,
              offset: int = Query(default=0, ge=0, le=10**9)) -> Response:
    def build(access: Access) -> tuple[str, dict]:
        flt = FlowRunFilter(states=[state] if state else None, sort="scheduled_desc")
        found = access.ctx.store.list_flow_runs(access.workspace_id, flt, limit=PAGE_SIZE + 1,
                                                offset=max(offset, 0))
        return "runs.html", {"runs": found[:PAGE_SIZE], "state": state, "states": list(StateType),
                             "offset": max(offset, 0), "more": len(found) > PAGE_SIZE, "page_size": PAGE_SIZE}

    return _page(request, workspace, build)


def masked(variables: dict[str, Any]) -> dict[str, Any]:
    """Job variables as shown: values of environment variables named like a secret are replaced."""
    shown = dict(variables)
    env = shown.get("env")
    if isinstance(env, dict):
        shown["env"] = {k: "••••••" if any(w in k.lower() for w in SECRET_WORDS) else v for k, v in env.items()}
    return shown


@router.get("/w/{workspace}/runs/{run_id}")
def run_page(request: Request, workspace: str, run_id: str) -> Response:
    def build(access: Access) -> tuple[str, dict]:
        ctx = access.ctx
        run = flow_run_routes.load_run(ctx, access, run_id)
        logs = run_logs.read_page(ctx, run, tail=LOG_LINES, cursor=None)["lines"]
        return "run.html", {"run": run, "states": ctx.store.get_state_history(run.id),
                            "task_runs": ctx.store.list_task_runs(run.id, limit=1000), "logs": logs,
                            "job_variables": masked(run.job_variables),
                            "children": ctx.store.list_child_runs(run.id, limit=100)}

    return _page(request, workspace, build)


async def _act(request: Request, workspace: str, run_id: str, action: Any) -> Response:
    try:
        await _form(request)
        caller = _caller(request)
        access = access_for(_ctx(request), caller, workspace)
        answer = await run_in_threadpool(action, run_id, access)
    except SignInNeeded:
        return _to_sign_in(request)
    except PushpoolError as exc:
        return _render(request, "error.html", status=exc.http_status, message=exc.message)
    new_id = json.loads(answer.body)["id"] if hasattr(answer, "body") else run_id
    return RedirectResponse(f"/w/{quote(workspace)}/runs/{quote(new_id)}", status_code=303,
                            headers=SECURITY_HEADERS)


@router.post("/w/{workspace}/runs/{run_id}/cancel")
async def cancel_run(request: Request, workspace: str, run_id: str) -> Response:
    return await _act(request, workspace, run_id, flow_run_routes.cancel_flow_run)


@router.post("/w/{workspace}/runs/{run_id}/retry")
async def retry_run(request: Request, workspace: str, run_id: str) -> Response:
    return await _act(request, workspace, run_id, flow_run_routes.retry_flow_run)
