"""Dashboard sessions: an API key exchanged for a signed cookie, and the CSRF token of each form.

The cookie holds no secret: ``pps1.<key hash>.<expiry>.<signature>``, signed with a key derived
from the server's encryption key (the same on every Lambda container). Every request looks the
key up again, so revoking the key (or its expiry) ends every session made with it at once, and
the caller's role is read fresh each time. Nothing is stored server-side: sign-out clears the
cookie; a stolen cookie is as good as its key until the session or the key expires.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from pushpool.control_plane.api.deps import Caller, caller_for_key_hash
from pushpool.control_plane.errors import Unauthorized
from pushpool.control_plane.models import ApiKey
from pushpool.control_plane.services.context import ServiceContext

COOKIE = "pushpool_session"
PREFIX = "pps1"
#: How long a session lasts (never longer than its key).
SESSION_SECONDS = 12 * 3600


def _mac(ctx: ServiceContext, purpose: str, text: str) -> str:
    digest = hmac.new(ctx.cipher.derive_key(purpose), text.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def new_session(ctx: ServiceContext, key: ApiKey) -> tuple[str, int]:
    """The cookie's value for a signed-in ``key`` and how many seconds it lasts."""
    now = ctx.clock.now()
    seconds = SESSION_SECONDS
    if key.expires_at is not None:
        seconds = min(seconds, int((key.expires_at - now).total_seconds()))
    expires = int(now.timestamp()) + max(seconds, 0)
    body = f"{PREFIX}.{key.key_hash}.{expires}"
    return f"{body}.{_mac(ctx, 'web-session', body)}", max(seconds, 0)


def caller_of(ctx: ServiceContext, cookie: str | None) -> Caller:
    """The caller a session cookie stands for; 401 when it is missing, forged, expired, or its key is no more."""
    if not cookie:
        raise Unauthorized("missing")
    parts = cookie.split(".")
    if len(parts) != 4 or parts[0] != PREFIX or not parts[2].isdigit():
        raise Unauthorized("malformed")
    body = ".".join(parts[:3])
    if not hmac.compare_digest(parts[3], _mac(ctx, "web-session", body)):
        raise Unauthorized("unknown")
    if int(parts[2]) <= ctx.clock.now().timestamp():
        raise Unauthorized("expired")
    caller = caller_for_key_hash(ctx, parts[1])
    if caller.actor is None:
        raise Unauthorized("unknown")
    return caller


def csrf_token(ctx: ServiceContext, cookie: str) -> str:
    """The token every form of this session carries (a forged cross-site form cannot know it)."""
    return _mac(ctx, "web-csrf", cookie)


def csrf_ok(ctx: ServiceContext, cookie: str | None, sent: str | None) -> bool:
    return bool(cookie and sent) and hmac.compare_digest(csrf_token(ctx, cookie or ""), sent or "")
