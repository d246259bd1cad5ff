"""A fake Modal API: a gRPC server on 127.0.0.1 built on the stubs the installed ``modal`` package ships.

The real ``modal`` client talks to it unchanged (``MODAL_SERVER_URL=http://127.0.0.1:PORT``). It answers
what the ``modal:push`` pusher and provisioner use: ClientHello, WorkspaceNameLookup, AuthTokenGet,
AppGetOrCreate, EnvironmentGetOrCreate, ImageGetOrCreate, SecretGetOrCreate and the sandbox calls of both
backends (V2 by default, V1 for GPU sandboxes): create, wait/poll, terminate, list by tags, get by name.
Every call must carry a known token (as Modal's server checks), and each sandbox remembers the token that
created it. ``fail_next`` injects gRPC errors; :class:`ModalSimulator` runs what a sandbox would run.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import string
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from grpclib import GRPCError, Status
from grpclib.server import Server, Stream
from modal_proto import api_pb2
from modal_proto.api_grpc import ModalClientBase

from tests.fakes.containers import run_as_container

Result = api_pb2.GenericResult
V1_ALPHABET = string.ascii_letters + string.digits


@dataclass
class FakeSandbox:
    sandbox_id: str
    app_id: str
    name: str
    tags: dict[str, str]
    definition: api_pb2.Sandbox
    env: dict[str, str]
    token_id: str
    created_at: float
    result: api_pb2.GenericResult | None = None

    @property
    def finished(self) -> bool:
        return self.result is not None

    @property
    def command(self) -> list[str]:
        return list(self.definition.entrypoint_args)


@dataclass
class ModalState:
    tokens: dict[str, str] = field(default_factory=dict)
    workspace: str = "acme"
    apps: dict[tuple[str, str], str] = field(default_factory=dict)
    images: dict[str, str] = field(default_factory=dict)          # image id → its Dockerfile commands
    #: Registry tag → the build's exception message: the build is streamed (ImageJoinStreaming) and fails.
    image_failures: dict[str, str] = field(default_factory=dict)
    #: Registry tags whose build is streamed (ImageJoinStreaming) instead of answered at once.
    streamed_images: set[str] = field(default_factory=set)
    secrets: dict[str, dict[str, str]] = field(default_factory=dict)
    named_secrets: dict[tuple[str, str], str] = field(default_factory=dict)
    sandboxes: dict[str, FakeSandbox] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)
    failures: dict[str, list[GRPCError]] = field(default_factory=dict)


def _jwt(exp: float) -> str:
    def part(data: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")
    return f"{part({'alg': 'none'})}.{part({'exp': int(exp)})}.unsigned"


class _Handlers:
    """The implemented calls; every other call of ``ModalClientBase`` answers UNIMPLEMENTED."""

    def __init__(self, state: ModalState) -> None:
        self.s = state
        self._ids = itertools.count(1)

    def _new_id(self, prefix: str) -> str:
        return f"{prefix}-{next(self._ids):06d}"

    async def _begin(self, stream: Stream, name: str) -> Any:
        self.s.calls.append(name)
        token_id = stream.metadata.get("x-modal-token-id")
        if self.s.tokens.get(token_id) != stream.metadata.get("x-modal-token-secret"):
            raise GRPCError(Status.UNAUTHENTICATED, "Token ID or secret is incorrect (fake Modal)")
        queued = self.s.failures.get(name)
        if queued:
            raise queued.pop(0)
        return await stream.recv_message()

    # ------------------------------------------------------------------ session
    async def ClientHello(self, stream: Stream) -> None:
        await self._begin(stream, "ClientHello")
        await stream.send_message(api_pb2.ClientHelloResponse(image_builder_version="2025.06"))

    async def WorkspaceNameLookup(self, stream: Stream) -> None:
        await self._begin(stream, "WorkspaceNameLookup")
        await stream.send_message(api_pb2.WorkspaceNameLookupResponse(workspace_name=self.s.workspace,
                                                                      username="someone"))

    async def AuthTokenGet(self, stream: Stream) -> None:
        await self._begin(stream, "AuthTokenGet")
        await stream.send_message(api_pb2.AuthTokenGetResponse(token=_jwt(time.time() + 3600)))

    async def EnvironmentGetOrCreate(self, stream: Stream) -> None:
        request = await self._begin(stream, "EnvironmentGetOrCreate")
        settings = api_pb2.EnvironmentSettings(image_builder_version="2025.06")
        await stream.send_message(api_pb2.EnvironmentGetOrCreateResponse(
            environment_id="en-1", metadata=api_pb2.EnvironmentMetadata(name=request.deployment_name or "main",
                                                                       settings=settings)))

    # ------------------------------------------------------------------ objects
    async def AppGetOrCreate(self, stream: Stream) -> None:
        request = await self._begin(stream, "AppGetOrCreate")
        key = (request.environment_name or "main", request.app_name)
        if key not in self.s.apps:
            if request.object_creation_type != api_pb2.OBJECT_CREATION_TYPE_CREATE_IF_MISSING:
                raise GRPCError(Status.NOT_FOUND, f"App '{request.app_name}' not found")
            self.s.apps[key] = self._new_id("ap")
        await stream.send_message(api_pb2.AppGetOrCreateResponse(app_id=self.s.apps[key]))

    async def ImageGetOrCreate(self, stream: Stream) -> None:
        request = await self._begin(stream, "ImageGetOrCreate")
        image_id = self._new_id("im")
        self.s.images[image_id] = " ".join(request.image.dockerfile_commands)
        tag = self._tag(image_id)
        built = tag not in self.s.streamed_images and tag not in self.s.image_failures
        await stream.send_message(api_pb2.ImageGetOrCreateResponse(
            image_id=image_id, result=Result(status=Result.GENERIC_STATUS_SUCCESS) if built else None))

    def _tag(self, image_id: str) -> str:
        return self.s.images[image_id].removeprefix("FROM ").split()[0]

    async def ImageJoinStreaming(self, stream: Stream) -> None:
        request = await self._begin(stream, "ImageJoinStreaming")
        tag = self._tag(request.image_id)
        log = api_pb2.TaskLogs(data=f"pulling {tag}\n", file_descriptor=api_pb2.FILE_DESCRIPTOR_STDOUT)
        await stream.send_message(api_pb2.ImageJoinStreamingResponse(task_logs=[log], entry_id="1"))
        failure = self.s.image_failures.get(tag)
        result = (Result(status=Result.GENERIC_STATUS_FAILURE, exception=failure) if failure
                  else Result(status=Result.GENERIC_STATUS_SUCCESS))
        await stream.send_message(api_pb2.ImageJoinStreamingResponse(result=result, entry_id="2", eof=True))

    async def SecretGetOrCreate(self, stream: Stream) -> None:
        request = await self._begin(stream, "SecretGetOrCreate")
        if request.deployment_name:  # a named secret: looked up (created only when asked to)
            key = (request.environment_name or "main", request.deployment_name)
            if key not in self.s.named_secrets:
                raise GRPCError(Status.NOT_FOUND, f"Secret '{request.deployment_name}' not found")
            secret_id = self.s.named_secrets[key]
        else:  # ephemeral, e.g. Secret.from_dict
            secret_id = self._new_id("st")
            self.s.secrets[secret_id] = dict(request.env_dict)
        metadata = api_pb2.SecretMetadata(keys=sorted(self.s.secrets[secret_id]))
        await stream.send_message(api_pb2.SecretGetOrCreateResponse(secret_id=secret_id, metadata=metadata))

    # ------------------------------------------------------------------ sandboxes
    def _create(self, stream: Stream, request: Any, v1: bool, inline: dict[str, str]) -> FakeSandbox:
        definition = request.definition
        app_id = request.app_id
        if definition.name and any(sb.app_id == app_id and sb.name == definition.name and not sb.finished
                                   for sb in self.s.sandboxes.values()):
            raise GRPCError(Status.ALREADY_EXISTS, f"Sandbox with name '{definition.name}' already exists")
        missing = [i for i in definition.secret_ids if i not in self.s.secrets]
        if missing:
            raise GRPCError(Status.NOT_FOUND, f"Secret {missing[0]} not found")
        env: dict[str, str] = {}
        for secret_id in definition.secret_ids:
            env.update(self.s.secrets[secret_id])
        env.update(inline)
        suffix = "".join(V1_ALPHABET[(next(self._ids) * 7 + i) % len(V1_ALPHABET)] for i in range(22))
        sandbox_id = f"sb-{suffix}" if v1 else f"sb-v2-{next(self._ids):06d}"
        sandbox = FakeSandbox(sandbox_id, app_id, definition.name, {t.tag_name: t.tag_value for t in request.tags},
                              definition, env, stream.metadata.get("x-modal-token-id", ""), time.time())
        self.s.sandboxes[sandbox_id] = sandbox
        return sandbox

    async def SandboxCreateV2(self, stream: Stream) -> None:
        request = await self._begin(stream, "SandboxCreateV2")
        inline: dict[str, str] = {}
        for source in request.secret_sources:
            if source.secret_id:
                inline.update(self.s.secrets.get(source.secret_id, {}))
            inline.update(dict(source.env.contents))
        sandbox = self._create(stream, request, v1=False, inline=inline)
        await stream.send_message(api_pb2.SandboxCreateV2Response(sandbox_id=sandbox.sandbox_id, task_id="ta-1"))

    async def SandboxCreate(self, stream: Stream) -> None:
        request = await self._begin(stream, "SandboxCreate")
        sandbox = self._create(stream, request, v1=True, inline={})
        await stream.send_message(api_pb2.SandboxCreateResponse(sandbox_id=sandbox.sandbox_id))

    async def SandboxGetTaskId(self, stream: Stream) -> None:
        request = await self._begin(stream, "SandboxGetTaskId")
        sandbox = self._sandbox(request.sandbox_id)
        await stream.send_message(api_pb2.SandboxGetTaskIdResponse(task_id="ta-1", task_result=sandbox.result))

    def _sandbox(self, sandbox_id: str) -> FakeSandbox:
        sandbox = self.s.sandboxes.get(sandbox_id)
        if sandbox is None:
            raise GRPCError(Status.NOT_FOUND, f"Sandbox {sandbox_id} not found")
        return sandbox

    async def _wait(self, stream: Stream, name: str) -> None:
        request = await self._begin(stream, name)
        sandbox = self._sandbox(request.sandbox_id)
        deadline = time.monotonic() + min(request.timeout, 1.0)
        while sandbox.result is None and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await stream.send_message(api_pb2.SandboxWaitResponse(
            result=sandbox.result or Result(), metadata=api_pb2.SandboxHandleMetadata(app_id=sandbox.app_id)))

    async def SandboxWait(self, stream: Stream) -> None:
        await self._wait(stream, "SandboxWait")

    async def SandboxWaitV2(self, stream: Stream) -> None:
        await self._wait(stream, "SandboxWaitV2")

    async def _terminate(self, stream: Stream, name: str) -> None:
        request = await self._begin(stream, name)
        sandbox = self._sandbox(request.sandbox_id)
        existing = sandbox.result
        if sandbox.result is None:
            sandbox.result = Result(status=Result.GENERIC_STATUS_TERMINATED, exception="Sandbox terminated")
        await stream.send_message(api_pb2.SandboxTerminateResponse(existing_result=existing))

    async def SandboxTerminate(self, stream: Stream) -> None:
        await self._terminate(stream, "SandboxTerminate")

    async def SandboxTerminateV2(self, stream: Stream) -> None:
        await self._terminate(stream, "SandboxTerminateV2")

    async def _list(self, stream: Stream, name: str) -> None:
        request = await self._begin(stream, name)
        wanted = {t.tag_name: t.tag_value for t in request.tags}
        found = sorted((sb for sb in self.s.sandboxes.values()
                        if (not request.app_id or sb.app_id == request.app_id)
                        and (request.include_finished or not sb.finished)
                        and (not request.before_timestamp or sb.created_at < request.before_timestamp)
                        and all(sb.tags.get(k) == v for k, v in wanted.items())),
                       key=lambda sb: -sb.created_at)
        infos = [api_pb2.SandboxInfo(id=sb.sandbox_id, created_at=sb.created_at, app_id=sb.app_id, name=sb.name,
                                     tags=[api_pb2.SandboxTag(tag_name=k, tag_value=v) for k, v in sb.tags.items()],
                                     task_info=api_pb2.TaskInfo(result=sb.result))
                 for sb in found]
        await stream.send_message(api_pb2.SandboxListResponse(sandboxes=infos))

    async def SandboxList(self, stream: Stream) -> None:
        await self._list(stream, "SandboxList")

    async def SandboxListV2(self, stream: Stream) -> None:
        await self._list(stream, "SandboxListV2")

    async def _from_name(self, stream: Stream, name: str) -> None:
        request = await self._begin(stream, name)
        app_id = self.s.apps.get((request.environment_name or "main", request.app_name))
        matches = sorted((sb for sb in self.s.sandboxes.values() if sb.app_id == app_id
                          and sb.name == request.sandbox_name and (request.include_terminated or not sb.finished)),
                         key=lambda sb: -sb.created_at)
        if not matches:
            raise GRPCError(Status.NOT_FOUND, f"Sandbox '{request.sandbox_name}' not found")
        await stream.send_message(api_pb2.SandboxGetFromNameResponse(sandbox_id=matches[0].sandbox_id))

    async def SandboxGetFromName(self, stream: Stream) -> None:
        await self._from_name(stream, "SandboxGetFromName")

    async def SandboxGetFromNameV2(self, stream: Stream) -> None:
        await self._from_name(stream, "SandboxGetFromNameV2")


def _service(state: ModalState) -> ModalClientBase:
    handlers = _Handlers(state)

    def unimplemented(method: str) -> Callable[..., Any]:
        async def answer(self: Any, stream: Stream) -> None:
            state.calls.append(method)
            raise GRPCError(Status.UNIMPLEMENTED, f"the fake Modal API does not implement {method}")
        return answer

    methods = {name: (lambda f: lambda self, stream: f(stream))(getattr(handlers, name))
               if hasattr(handlers, name) else unimplemented(name)
               for name in ModalClientBase.__abstractmethods__}
    return type("FakeModalService", (ModalClientBase,), methods)()


class FakeModalApi:
    """The server in a thread of its own; ``url`` is what ``MODAL_SERVER_URL`` must be."""

    def __init__(self) -> None:
        self.state = ModalState()
        self._loop = asyncio.new_event_loop()
        self._server: Server | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, name="fake-modal", daemon=True)
        self.port = 0

    def start(self) -> FakeModalApi:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    async def _start(self) -> None:
        self._server = Server([_service(self.state)])
        await self._server.start("127.0.0.1", 0)
        self.port = self._server._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    def stop(self) -> None:
        async def close() -> None:
            assert self._server is not None
            self._server.close()
            await self._server.wait_closed()
        asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # ------------------------------------------------------------------ test controls
    def add_token(self, token_id: str, token_secret: str) -> None:
        self.state.tokens[token_id] = token_secret

    def add_named_secret(self, name: str, env: dict[str, str], environment: str = "main") -> None:
        secret_id = f"st-named-{len(self.state.named_secrets) + 1}"
        self.state.secrets[secret_id] = env
        self.state.named_secrets[(environment, name)] = secret_id

    def fail_next(self, method: str, status: Status, message: str, count: int = 1) -> None:
        self.state.failures.setdefault(method, []).extend(GRPCError(status, message) for _ in range(count))

    def sandbox(self, sandbox_id: str) -> FakeSandbox:
        return self.state.sandboxes[sandbox_id]

    def sandboxes_of_run(self, run_id: str) -> list[FakeSandbox]:
        return [sb for sb in self.state.sandboxes.values() if sb.tags.get("pushpool.flow-run-id") == run_id]

    def finish(self, sandbox_id: str, exit_code: int = 0, *, status: int | None = None, message: str = "") -> None:
        if status is None:
            status = Result.GENERIC_STATUS_SUCCESS if exit_code == 0 else Result.GENERIC_STATUS_FAILURE
        self.sandbox(sandbox_id).result = Result(status=status, exitcode=exit_code, exception=message)


class ModalSimulator:
    """Runs what a sandbox would run: its entrypoint and environment as the fake recorded them."""

    def __init__(self, api: FakeModalApi, workdir: Path) -> None:
        self.api, self.workdir = api, workdir
        self.output = ""

    def run(self, sandbox_id: str, timeout: float = 60) -> int:
        sandbox = self.api.sandbox(sandbox_id)
        code, self.output = run_as_container(sandbox.command, sandbox.env, self.workdir, timeout)
        self.api.finish(sandbox_id, code)
        return code
