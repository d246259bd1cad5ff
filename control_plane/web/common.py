"""What every dashboard page shares: templates, security headers, the session's caller and access, the checks of
a posted form, and how a page or an action answers (sign-in redirect, error page)."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from pushpool.control_plane.api.deps import Access, Caller, access_for
from pushpool.control_plane.errors import Forbidden, PushpoolError, Unauthorized
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


@functools.cache
def templates() -> Any:
    """The page templates (Jinja2 imported on the first page served, not when the Lambda handler loads)."""
    import jinja2

    environment = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True,
                                     undefined=jinja2.StrictUndefined)
    environment.filters["pretty"] = lambda value: json.dumps(value, indent=2, sort_keys=True, default=str)
    environment.globals["options"] = select_options
    return environment


def select_options(choices: Iterable[tuple[str, str]], selected: str | None) -> Any:
    """``<option>`` elements for ``(value, label)`` pairs, ``selected`` marked: built here rather than by a
    template loop, which costs ten times as much for the thousand deployments a filter may offer."""
    from markupsafe import Markup, escape

    return Markup("".join(f'<option value="{escape(value)}"{" selected" if value == selected else ""}>'
                          f'{escape(label)}</option>' for value, label in choices))


class SignInNeeded(Exception):
    """The request has no valid session: the page sends the browser to sign in."""


def ctx_of(request: Request) -> ServiceContext:
    return request.app.state.ctx


def caller_of(request: Request) -> Caller:
    try:
        return sessions.caller_of(ctx_of(request), request.cookies.get(sessions.COOKIE))
    except Unauthorized:
        raise SignInNeeded from None


def render(request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
    cookie = request.cookies.get(sessions.COOKIE)
    context.setdefault("csrf", sessions.csrf_token(ctx_of(request), cookie) if cookie else "")
    context.setdefault("access", None)
    return HTMLResponse(templates().get_template(name).render(**context), status_code=status,
                        headers=SECURITY_HEADERS)


def to_sign_in(request: Request) -> RedirectResponse:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return see_other(f"/sign-in?next={quote(target)}")


def see_other(target: str) -> RedirectResponse:
    """Send the browser on to ``target`` (303: it follows with a GET)."""
    return RedirectResponse(target, status_code=303, headers=SECURITY_HEADERS)


def workspaces_of(ctx: ServiceContext, caller: Caller) -> list[Any]:
    assert caller.actor is not None
    found = (ctx.store.get_workspace(m.workspace_id) for m in ctx.store.list_memberships(caller.actor.id))
    return sorted((w for w in found if w is not None), key=lambda w: w.name)


def page(request: Request, workspace: str, build: Any) -> Response:
    """Render a workspace page built by ``build(access) -> (template, context)``; sign-in and errors handled."""
    try:
        caller = caller_of(request)
        ctx = ctx_of(request)
        access = access_for(ctx, caller, workspace)
        access.require(Permission.READ)
        name, context = build(access)
        return render(request, name, access=access, workspaces=workspaces_of(ctx, caller),
                       can_run=Permission.RUN in access.permissions,
                       can_write=Permission.WRITE in access.permissions, **context)
    except SignInNeeded:
        return to_sign_in(request)
    except PushpoolError as exc:
        return render(request, "error.html", status=exc.http_status, message=exc.message)


async def posted_form(request: Request) -> dict[str, str]:
    """The posted form, after the checks every state-changing request passes: same origin, CSRF token."""
    origin = request.headers.get("origin")
    if origin and origin != "null" and urlsplit(origin).netloc != request.url.netloc:
        raise Forbidden("This form was posted from another site")
    form = {k: v[0] for k, v in parse_qs((await request.body()).decode("utf-8", "replace")).items()}
    if request.url.path != "/sign-in" and not sessions.csrf_ok(ctx_of(request), request.cookies.get(sessions.COOKIE),
                                                             form.get("csrf")):
        raise Forbidden("The form's CSRF token is missing or wrong: reload the page and try again")
    return form


async def act(request: Request, workspace: str, action: Callable[[Access, dict[str, str]], str]) -> Response:
    """A posted action: the form's checks, the caller's access, then ``action(access, form)`` (in a worker
    thread; it checks its own permission) answers the path to go to next."""
    try:
        form = await posted_form(request)
        access = access_for(ctx_of(request), caller_of(request), workspace)
        target = await run_in_threadpool(action, access, form)
    except SignInNeeded:
        return to_sign_in(request)
    except PushpoolError as exc:
        return render(request, "error.html", status=exc.http_status, message=exc.message)
    return see_other(target)


def created_id(answer: Response) -> str:
    """The id in an API route's JSON answer."""
    return json.loads(answer.body)["id"]


def ws_path(access: Access, *parts: str) -> str:
    return "/".join([f"/w/{quote(access.workspace.name)}", *(quote(p) for p in parts)])


#: Job-variable keys whose values are not shown (environment variables named like a secret).
SECRET_WORDS = ("secret", "password", "passwd", "token", "key", "credential", "auth")


def masked(variables: dict[str, Any]) -> dict[str, Any]:
    """Job variables (or a rendered job) as shown: values of environment variables named like a secret are
    replaced."""
    shown = dict(variables)
    env = shown.get("env")
    if isinstance(env, dict):
        shown["env"] = {k: "••••••" if any(w in k.lower() for w in SECRET_WORDS) else v for k, v in env.items()}
    return shown
