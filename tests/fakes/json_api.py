"""The HTTP side of the clouds' wire-level fakes: a threaded server on 127.0.0.1, routes by method and
path pattern, per-call error injection (before or after the call does its work), and a hook for how
each cloud authenticates a request and spells an error. Subclasses add the routes and the API."""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse


class ApiError(Exception):
    def __init__(self, status: int, message: str, code: str = "", headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.headers = status, message, code, headers or {}


@dataclass
class Injected:
    status: int
    message: str
    after: bool = False  # do the work, then answer the error (an answer lost on the way back)
    code: str = ""
    headers: dict[str, str] | None = None


class Reply(dict):
    """A JSON answer with a status other than 200 and/or extra headers."""

    def __init__(self, body: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None) -> None:
        super().__init__(body)
        self.status, self.headers = status, headers or {}


class LoopbackServer:
    """Starting, stopping and addressing a fake's ``ThreadingHTTPServer`` on 127.0.0.1 (``self._server``,
    served by ``self._thread``)."""

    _server: ThreadingHTTPServer
    _thread: threading.Thread

    def _serve_with(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)

    def start(self) -> Any:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"


class JsonApi(LoopbackServer):
    #: (method, path regex with one group, handler name); the handler gets (group, query, body).
    ROUTES: list[tuple[str, str, str]] = []

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.injected: dict[str, list[Injected]] = {}
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                fake._serve(self, "GET")

            def do_POST(self) -> None:
                fake._serve(self, "POST")

            def do_PUT(self) -> None:
                fake._serve(self, "PUT")

            def do_DELETE(self) -> None:
                fake._serve(self, "DELETE")

            def do_HEAD(self) -> None:
                fake._serve(self, "HEAD")

            def do_PATCH(self) -> None:
                fake._serve(self, "PATCH")

        self._serve_with(Handler)

    # ------------------------------------------------------------------ hooks
    def authenticate(self, path: str, headers: Any) -> Reply | None:
        """Raise ApiError(401) for a request the cloud would refuse; a Reply answers it here (token endpoints)."""
        return None

    def decode_body(self, raw: bytes, headers: Any) -> Any:
        """The request's JSON body ({} when empty); a cloud whose client sends it otherwise overrides this."""
        return json.loads(raw) if raw else {}

    def error_body(self, error: ApiError) -> dict[str, Any]:
        return {"error": {"code": error.status, "message": error.message}}

    # ------------------------------------------------------------------ plumbing
    def _serve(self, request: BaseHTTPRequestHandler, method: str) -> None:
        url = urlparse(request.path)
        length = int(request.headers.get("Content-Length") or 0)
        raw = request.rfile.read(length) if length else b""
        headers: dict[str, str] = {}
        try:
            early = self.authenticate(url.path, request.headers)
            if early is not None:
                status, answer = early.status, early
            else:
                body = self.decode_body(raw, request.headers)
                with self._lock:
                    answer = self._route(method, url.path, parse_qs(url.query), body)
                status = getattr(answer, "status", 200)
            headers = getattr(answer, "headers", {})
        except ApiError as exc:
            status, answer, headers = exc.status, self.error_body(exc), exc.headers
        data = json.dumps(answer).encode() if status != 204 and method != "HEAD" else b""
        request.send_response(status)
        request.send_header("Content-Type", "application/json")
        request.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            request.send_header(name, value)
        request.end_headers()
        request.wfile.write(data)

    def _route(self, method: str, path: str, query: dict[str, list[str]], body: dict[str, Any]) -> dict[str, Any]:
        for verb, pattern, name in self.ROUTES:
            match = re.fullmatch(pattern, path)
            if verb == method and match:
                self.calls.append(name)
                queued = self.injected.get(name)
                injected = queued.pop(0) if queued else None
                if injected and not injected.after:
                    raise ApiError(injected.status, injected.message, injected.code, injected.headers)
                answer = getattr(self, name)(match.group(1), query, body)
                if injected:
                    raise ApiError(injected.status, injected.message, injected.code, injected.headers)
                return answer
        raise ApiError(404, f"no route for {method} {path}")

    def inject(self, call: str, status: int, message: str, *, after: bool = False, count: int = 1, code: str = "",
               headers: dict[str, str] | None = None) -> None:
        """Queue ``count`` HTTP errors for ``call`` (a handler name); ``after``: do the work first."""
        self.injected.setdefault(call, []).extend(Injected(status, message, after, code, headers)
                                                  for _ in range(count))
