"""Calls the control plane makes to URLs a tenant chose (notification blocks), made safe to make.

* **Where**: the URL's host is resolved at send time and every address it resolves to must be a
  public one — not loopback, private, link-local (the cloud metadata address 169.254.169.254 is
  link-local), shared, multicast or reserved — unless the operator lists it in
  ``PUSHPOOL_OUTBOUND_ALLOW`` (CIDRs or host names). The connection goes to the address that was
  checked, so a second DNS answer cannot point it elsewhere. Only http and https.
* **How**: no proxy from the environment, no redirects followed, the response body not read, and
  the whole call closed after ``PUSHPOOL_OUTBOUND_TIMEOUT_SECONDS`` however slowly the peer answers.
* **What the tenant learns**: the status code of a public peer, or that it could not be reached or
  did not answer in time — never an errno, an address or a port's state.
* **When**: :class:`OutboundQueue` runs the calls on their own threads, at most
  ``PER_WORKSPACE`` at a time for one workspace and ``MAX_QUEUED`` waiting, so one tenant's slow
  URL never holds up the event flush, another tenant's notifications or dispatch.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import urlsplit

from pushpool.control_plane.errors import InvalidInput

log = logging.getLogger("pushpool.outbound")

PER_WORKSPACE = 2
MAX_QUEUED = 50
MAX_THREADS = 16


class OutboundRefused(InvalidInput):
    """The URL may not be called from the control plane (its scheme or where its host points)."""


class OutboundFailed(InvalidInput):
    """The URL could not be reached or did not answer in time (no network detail is given)."""


def _allowed_networks(allow: Iterable[str]) -> tuple[list[Any], set[str]]:
    networks, names = [], set()
    for entry in allow:
        try:
            networks.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError:
            names.add(entry.strip().lower())
    return networks, names


def is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def resolve_checked(host: str, port: int, allow: Iterable[str]) -> str:
    """The address to connect to for ``host``; raises :class:`OutboundRefused` unless it may be called."""
    networks, names = _allowed_networks(allow)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise OutboundFailed("the URL's host could not be resolved") from None
    addresses = [info[4][0] for info in infos]
    if not addresses:
        raise OutboundFailed("the URL's host could not be resolved")
    if host.lower() in names:
        return addresses[0]
    for address in addresses:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        if not (is_public(address) or any(ip in network for network in networks)):
            raise OutboundRefused("the URL's host is not a public address; the control plane calls only public "
                                  "hosts (an operator may allow others with PUSHPOOL_OUTBOUND_ALLOW)")
    return addresses[0]


def _guarded_backend(allow: tuple[str, ...]) -> Any:
    import httpcore

    class GuardedBackend(httpcore.NetworkBackend):
        """Connects only to checked addresses and can be closed from another thread (the deadline)."""

        def __init__(self) -> None:
            self.inner = httpcore.SyncBackend()
            self.streams: list[Any] = []
            self.closed = False

        def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                        socket_options: Any = None) -> Any:
            address = resolve_checked(host, port, allow)
            stream = self.inner.connect_tcp(address, port, timeout, local_address, socket_options)
            self.streams.append(stream)
            if self.closed:
                stream.close()
            return stream

        def connect_unix_socket(self, path: str, timeout: float | None = None, socket_options: Any = None) -> Any:
            raise OutboundRefused("unix sockets are not called")

        def sleep(self, seconds: float) -> None:
            self.inner.sleep(seconds)

        def close_all(self) -> None:
            self.closed = True
            for stream in self.streams:
                with contextlib.suppress(OSError, AttributeError):
                    stream.get_extra_info("socket").shutdown(socket.SHUT_RDWR)

    return GuardedBackend()


def post_json(url: str, payload: Any, *, allow: Iterable[str] = (), timeout: float = 5.0) -> int:
    """POST ``payload`` as JSON to ``url``; the status code. Raises :class:`OutboundRefused` or
    :class:`OutboundFailed` with a message that says what, never where or why at the network level."""
    import httpcore

    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise OutboundRefused("the URL must be http:// or https:// with a host")
    backend = _guarded_backend(tuple(allow))
    body = json.dumps(payload).encode()
    headers = [(b"content-type", b"application/json"), (b"user-agent", b"pushpool")]
    limits = {"connect": timeout, "read": timeout, "write": timeout, "pool": timeout}
    deadline = threading.Timer(timeout, backend.close_all)
    deadline.daemon = True
    started = time.monotonic()
    deadline.start()
    try:
        with httpcore.ConnectionPool(network_backend=backend, retries=0) as pool, \
                pool.stream("POST", url, headers=headers, content=body, extensions={"timeout": limits}) as answer:
            return int(answer.status)
    except (OutboundRefused, OutboundFailed):
        raise
    except Exception:  # noqa: BLE001 - every network failure looks the same to the tenant
        if time.monotonic() - started >= timeout * 0.95:
            raise OutboundFailed(f"the URL did not answer within {timeout:g} s") from None
        raise OutboundFailed("the URL could not be reached") from None
    finally:
        deadline.cancel()


class OutboundQueue:
    """Runs outbound calls off the caller's thread, fairly between workspaces."""

    def __init__(self, per_workspace: int = PER_WORKSPACE, max_queued: int = MAX_QUEUED,
                 max_threads: int = MAX_THREADS) -> None:
        self.per_workspace, self.max_queued, self.max_threads = per_workspace, max_queued, max_threads
        self._lock = threading.Condition()
        self._waiting: dict[str, deque[Callable[[], None]]] = {}
        self._running: dict[str, int] = {}

    def submit(self, workspace_id: str, job: Callable[[], None]) -> bool:
        """Queue ``job``; False (not queued) when the workspace already has ``max_queued`` waiting."""
        with self._lock:
            waiting = self._waiting.setdefault(workspace_id, deque())
            if len(waiting) >= self.max_queued:
                return False
            waiting.append(job)
            self._start_workers()
        return True

    def _start_workers(self) -> None:
        for workspace_id, waiting in self._waiting.items():
            running = self._running.get(workspace_id, 0)
            wanted = min(len(waiting), self.per_workspace - running, self.max_threads - sum(self._running.values()))
            for _ in range(max(wanted, 0)):
                self._running[workspace_id] = self._running.get(workspace_id, 0) + 1
                threading.Thread(target=self._work, args=(workspace_id,), name="pushpool-outbound",
                                 daemon=True).start()

    def _work(self, workspace_id: str) -> None:
        while True:
            with self._lock:
                waiting = self._waiting.get(workspace_id)
                if not waiting:
                    self._running[workspace_id] -= 1
                    if not self._running[workspace_id]:
                        del self._running[workspace_id]
                        self._waiting.pop(workspace_id, None)
                    self._start_workers()  # a thread slot is free: another workspace may use it
                    self._lock.notify_all()
                    return
                job = waiting.popleft()
            try:
                job()
            except Exception:  # noqa: BLE001 - a job reports its own failures; this only keeps the worker alive
                log.exception("an outbound call failed unexpectedly")

    def busy(self) -> bool:
        with self._lock:
            return bool(self._running) or any(self._waiting.values())

    def drain(self, timeout: float) -> bool:
        """Wait until nothing is queued or running (Lambda, before the invocation ends); False on timeout."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._running or any(self._waiting.values()):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._lock.wait(left)
        return True
