"""A Lambda Function URL on 127.0.0.1: each HTTP request becomes a payload-2.0 event for a handler.

As AWS does with payload 2.0, a request's ``Cookie`` header arrives as the event's ``cookies`` list
(not among its headers), and a response's ``cookies`` become ``Set-Cookie`` headers.

This is what AWS's Function URL front end does, so the real ``api_handler`` (mangum +
FastAPI) serves real HTTP clients — the SDK, the CLI and the in-container runner —
in tests, in-process.
"""

from __future__ import annotations

import base64
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from tests.fakes.aws import ACCOUNT, REGION

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


class LambdaContext:
    """The parts of Lambda's context object the handlers use."""

    def __init__(self, function_name: str, timeout_seconds: float = 30.0) -> None:
        self.function_name = function_name
        self.invoked_function_arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{function_name}"
        self.aws_request_id = str(uuid.uuid4())
        self.memory_limit_in_mb = 1024
        self._deadline = time.monotonic() + timeout_seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def function_url_event(method: str, target: str, headers: dict[str, str], body: bytes, host: str) -> dict[str, Any]:
    parts = urlsplit(target)
    now = datetime.now(UTC)
    try:
        text, encoded = body.decode(), False
    except UnicodeDecodeError:
        text, encoded = base64.b64encode(body).decode(), True
    event: dict[str, Any] = {
        "version": "2.0", "routeKey": "$default", "rawPath": parts.path, "rawQueryString": parts.query,
        "headers": headers,
        "requestContext": {
            "accountId": "anonymous", "apiId": host.split(".")[0], "domainName": host,
            "domainPrefix": host.split(".")[0], "requestId": str(uuid.uuid4()), "routeKey": "$default",
            "stage": "$default", "time": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "timeEpoch": int(now.timestamp() * 1000),
            "http": {"method": method, "path": parts.path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1",
                     "userAgent": headers.get("user-agent", "")},
        },
        "isBase64Encoded": encoded,
    }
    if "cookie" in headers:
        event["headers"] = {k: v for k, v in headers.items() if k != "cookie"}
        event["cookies"] = [c.strip() for c in headers["cookie"].split(";") if c.strip()]
    if body:
        event["body"] = text
    return event


class FunctionUrl:
    def __init__(self, handler: Handler, function_name: str = "pushpool-api") -> None:
        self.handler, self.function_name = handler, function_name
        self.events: list[dict[str, Any]] = []
        #: One Lambda container: invocations run one at a time, on one thread.
        self.container = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lambda-container")
        bridge = self

        class Request(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                headers: dict[str, str] = {}
                for name, value in self.headers.items():
                    key = name.lower()
                    headers[key] = f"{headers[key]},{value}" if key in headers else value
                event = function_url_event(self.command, self.path, headers, body, headers.get("host", "localhost"))
                bridge.events.append(event)
                answer = bridge.container.submit(bridge.handler, event, LambdaContext(bridge.function_name)).result()
                payload = answer.get("body") or ""
                raw = base64.b64decode(payload) if answer.get("isBase64Encoded") else payload.encode()
                self.send_response(answer["statusCode"])
                for name, value in (answer.get("headers") or {}).items():
                    if name.lower() not in ("content-length", "connection"):
                        self.send_header(name, value)
                for cookie in answer.get("cookies") or []:
                    self.send_header("Set-Cookie", cookie)
                self.send_header("content-length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Request)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FunctionUrl:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.container.shutdown(wait=True)
