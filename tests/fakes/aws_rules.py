"""What AWS enforces and moto lets through, checked on the wire in front of moto.

Every request of every test that talks to moto passes this WSGI layer first (``StrictMotoServer`` wraps moto's
app with it), so a pusher or provisioner that would be refused by AWS is refused here too. The rules come from
the services' documentation and botocore's service models:

* **ECS RunTask**: ``startedBy`` is at most 36 of ``[A-Za-z0-9_/-]``; ``clientToken`` is idempotent (the same
  token with the same request answers the same tasks, with another request ``ConflictException`` naming the
  task in ``resourceIds``); container overrides are at most 8,192 characters; ``assignPublicIp`` is for
  Fargate only; tag keys and values follow the model's patterns and sizes and ``aws:`` is reserved; a role of
  the task definition that IAM has not propagated yet cannot be assumed (``ClientException``); a token bucket
  throttles it (``ThrottlingException``), and a cluster takes at most ``provisioning_limit`` tasks that have not
  started yet (``ClientException``).
* **ECS RegisterTaskDefinition**: a token bucket of 20 at 1 a second; two registrations of one family at once
  are refused (``ClientException: Too many concurrent attempts to create a new revision``); Fargate's
  cpu/memory pairs.
* **ECS ListTasks**: ``startedBy`` must be the only filter. **CreateCluster** with capacity providers needs the
  ECS service-linked role, propagated.
* **IAM propagation**: a role, user key or service-linked role created less than ``propagation_seconds`` ago
  does not work yet (AssumeRole is denied, a request signed with the new key is not recognised).
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

ECS_TARGET = "AmazonEC2ContainerServiceV20141113."
STARTED_BY = re.compile(r"[A-Za-z0-9_/-]{1,36}")
# The Tag shape's pattern in botocore's ECS model: ([\p{L}\p{Z}\p{N}_.:/=+\-@]*) (letters, spaces, digits, ...)
TAG_TEXT = re.compile(r"[\w\s.:/=+\-@]*")
FAMILY = re.compile(r"[A-Za-z0-9_-]{1,255}")
MAX_OVERRIDES_CHARS = 8192
#: Fargate's task sizes: cpu units → the memory (MiB) each allows.
FARGATE_SIZES: dict[int, range | tuple[int, ...]] = {
    256: (512, 1024, 2048), 512: range(1024, 4097, 1024), 1024: range(2048, 8193, 1024),
    2048: range(4096, 16385, 1024), 4096: range(8192, 30721, 1024), 8192: range(16384, 61441, 4096),
    16384: range(32768, 122881, 8192),
}
ECS_SERVICE_ROLE = "AWSServiceRoleForECS"


class AwsError(Exception):
    def __init__(self, code: str, message: str, status: int = 400, **extra: Any) -> None:
        super().__init__(message)
        self.code, self.message, self.status, self.extra = code, message, status, extra


@dataclass
class TokenBucket:
    capacity: float
    per_second: float
    clock: Callable[[], float] = time.monotonic
    tokens: float = -1.0
    at: float = 0.0

    def take(self) -> bool:
        now = self.clock()
        if self.tokens < 0:
            self.tokens, self.at = self.capacity, now
        self.tokens = min(self.capacity, self.tokens + (now - self.at) * self.per_second)
        self.at = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


@dataclass
class AwsRules:
    """The rules' settings and what they remember (client tokens, creation times); reset between tests."""

    propagation_seconds: float = 1.0
    run_task_per_second: float = 20.0
    run_task_burst: float = 100.0
    register_per_second: float = 1.0
    register_burst: float = 20.0
    #: How long the fake takes to register a revision (another registration of the family meanwhile is refused).
    register_seconds: float = 0.05
    #: Tasks of a cluster that have not reached RUNNING (ECS's per-cluster PROVISIONING quota is 500).
    provisioning_limit: int = 500
    clock: Callable[[], float] = time.monotonic
    log: list[tuple[str, str]] = field(default_factory=list)  # (operation, error code or "ok"), for tests
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _state: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._defaults = {name: getattr(self, name) for name in SETTINGS}

    def configure(self, **settings: Any) -> None:
        """Change settings for good (a benchmark's limits): they survive reset()."""
        self._defaults.update(settings)
        self.reset()

    def reset(self) -> None:
        """Forget what was remembered and put back the settings a test changed."""
        with self._lock:
            for name, value in self._defaults.items():
                setattr(self, name, value)
            self._state = {"tokens": {}, "created": {}, "registering": {},
                           "run_task": TokenBucket(self.run_task_burst, self.run_task_per_second, self.clock),
                           "register": TokenBucket(self.register_burst, self.register_per_second, self.clock)}
            self.log.clear()

    def counts(self, operation: str) -> dict[str, int]:
        out: dict[str, int] = {}
        for op, outcome in list(self.log):
            if op == operation:
                out[outcome] = out.get(outcome, 0) + 1
        return out

    # ------------------------------------------------------------------ propagation
    def created(self, key: str) -> None:
        with self._lock:
            self._state["created"][key] = self.clock()

    def propagated(self, key: str) -> bool:
        """Whether what ``key`` names (``role:ARN``, ``key:ACCESS KEY ID``) works yet; unknown names always do."""
        at = self._state["created"].get(key)
        return at is None or self.clock() - at >= self.propagation_seconds


SETTINGS = ("propagation_seconds", "run_task_per_second", "run_task_burst", "register_per_second", "register_burst",
            "register_seconds", "provisioning_limit")


class StrictAws:
    """The WSGI layer: checks a request against :class:`AwsRules`, answers AWS's error or passes it to moto."""

    def __init__(self, app: Callable, rules: AwsRules) -> None:
        self.app, self.rules = app, rules
        rules.reset()

    def __call__(self, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        environ["wsgi.input"] = _Replay(body)
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        operation = target[len(ECS_TARGET):] if target.startswith(ECS_TARGET) else _query_action(body)
        try:
            self._check_signer(environ)
            if target.startswith(ECS_TARGET):
                answer = EcsRules(self, environ).handle(operation, json.loads(body or b"{}"))
                if answer is not None:
                    return _reply(start_response, 200, answer)
            elif operation == "AssumeRole":
                self._check_assume_role(body)
        except AwsError as exc:
            self.rules.log.append((operation, exc.code))
            if target:
                return _reply(start_response, exc.status, {"__type": exc.code, "message": exc.message, **exc.extra})
            return _xml_error(start_response, exc)
        self.rules.log.append((operation, "ok"))
        status_headers: list[Any] = []
        chunks = self.app(environ, lambda status, headers, exc_info=None: status_headers.extend((status, headers))
                          or (lambda data: None))
        data = b"".join(chunks)
        if hasattr(chunks, "close"):
            chunks.close()
        status, headers = status_headers
        if status.startswith("200"):
            self._remember(operation, target, body, data, environ)
            if target.startswith(ECS_TARGET) and operation == "ListTasks":
                data = EcsRules(self, environ).running_only(json.loads(body or b"{}"), data)
                headers = [(k, str(len(data)) if k.lower() == "content-length" else v) for k, v in headers]
        start_response(status, headers)
        return [data]

    # ------------------------------------------------------------------ what a success creates
    def _remember(self, operation: str, target: str, body: bytes, answer: bytes, environ: dict[str, Any]) -> None:
        if operation == "CreateRole":
            found = re.search(rb"<Arn>([^<]+)</Arn>", answer)
            if found:
                self.rules.created(f"role:{found.group(1).decode()}")
        elif operation == "CreateServiceLinkedRole":
            self.rules.created(f"role-name:{ECS_SERVICE_ROLE}")
        elif operation == "CreateAccessKey":
            found = re.search(rb"<AccessKeyId>([^<]+)</AccessKeyId>", answer)
            if found:
                self.rules.created(f"key:{found.group(1).decode()}")
        elif target.startswith(ECS_TARGET) and operation == "RunTask":
            EcsRules(self, environ).remember_run(json.loads(body or b"{}"), json.loads(answer))

    def _check_signer(self, environ: dict[str, Any]) -> None:
        found = re.search(r"Credential=([A-Z0-9]+)/", environ.get("HTTP_AUTHORIZATION", ""))
        if found and not self.rules.propagated(f"key:{found.group(1)}"):
            raise AwsError("InvalidClientTokenId" if not environ.get("HTTP_X_AMZ_TARGET") else
                           "UnrecognizedClientException", "The security token included in the request is invalid.",
                           status=403)

    def _check_assume_role(self, body: bytes) -> None:
        arn = parse_qs(body.decode()).get("RoleArn", [""])[0]
        if not self.rules.propagated(f"role:{arn}"):
            raise AwsError("AccessDenied", f"User is not authorized to perform: sts:AssumeRole on resource: {arn}",
                           status=403)


class EcsRules:
    """ECS's rules for one request (``handle`` answers a request itself, raises AWS's error, or passes)."""

    def __init__(self, strict: StrictAws, environ: dict[str, Any]) -> None:
        self.rules = strict.rules
        found = re.search(r"Credential=[^/]+/[^/]+/([^/]+)/", environ.get("HTTP_AUTHORIZATION", ""))
        self.region = found.group(1) if found else ""

    def handle(self, operation: str, request: dict[str, Any]) -> dict[str, Any] | None:
        check = getattr(self, f"_{_snake(operation)}", None)
        return check(request) if check else None

    # ------------------------------------------------------------------ RunTask
    def _run_task(self, request: dict[str, Any]) -> dict[str, Any] | None:
        token = request.get("clientToken")
        if token:
            seen = self.rules._state["tokens"].get((self.region, token))
            if seen is not None:
                fingerprint, answer = seen
                if fingerprint != _fingerprint(request):
                    raise AwsError("ConflictException", "The specified client token has already been used in a "
                                   "request with different parameters.",
                                   resourceIds=[t["taskArn"] for t in answer.get("tasks", [])])
                return answer
            if len(token) > 64:
                raise AwsError("InvalidParameterException", "clientToken can have at most 64 characters.")
        started_by = request.get("startedBy")
        if started_by is not None and not STARTED_BY.fullmatch(started_by):
            raise AwsError("InvalidParameterException", "startedBy: up to 36 letters (uppercase and lowercase), "
                           "numbers, hyphens (-), forward slash (/), and underscores (_) are allowed.")
        overrides = request.get("overrides") or {}
        if len(json.dumps(overrides.get("containerOverrides") or [], separators=(",", ":"))) > MAX_OVERRIDES_CHARS:
            raise AwsError("InvalidParameterException", "Container Overrides length must be at most 8192")
        _check_tags(request.get("tags") or [])
        awsvpc = (request.get("networkConfiguration") or {}).get("awsvpcConfiguration") or {}
        if awsvpc.get("assignPublicIp") == "ENABLED" and not _on_fargate(request):
            raise AwsError("InvalidParameterException", "Assign public IP is not supported for this launch type.")
        self._check_roles_propagated(request.get("taskDefinition", ""))
        self._check_provisioning(request.get("cluster") or "default")
        if not self.rules._state["run_task"].take():
            raise AwsError("ThrottlingException", "Rate exceeded")
        return None

    def remember_run(self, request: dict[str, Any], answer: dict[str, Any]) -> None:
        token = request.get("clientToken")
        if token and answer.get("tasks"):
            self.rules._state["tokens"][(self.region, token)] = (_fingerprint(request), answer)

    def _check_roles_propagated(self, task_definition: str) -> None:
        from moto.ecs.models import ecs_backends

        from tests.fakes.aws import ACCOUNT

        try:
            definition = ecs_backends[ACCOUNT][self.region].describe_task_definition(task_definition)
        except Exception:  # noqa: BLE001 - moto answers for an unknown definition itself
            return
        for arn in (getattr(definition, "execution_role_arn", None), getattr(definition, "task_role_arn", None)):
            if arn and not self.rules.propagated(f"role:{arn}"):
                raise AwsError("ClientException", f"ECS was unable to assume the role '{arn}' that was provided for "
                               "this task. Please verify that the role being passed has the proper trust "
                               "relationship and permissions and that your IAM user has permissions to pass this role.")

    def _check_provisioning(self, cluster: str) -> None:
        from moto.ecs.models import ecs_backends

        from tests.fakes.aws import ACCOUNT

        name = cluster.rsplit("/", 1)[-1]
        tasks = ecs_backends[ACCOUNT][self.region].tasks.get(name, {}).values() if self.region else []
        waiting = sum(1 for t in tasks if t.last_status in ("PROVISIONING", "PENDING", "ACTIVATING"))
        if waiting >= self.rules.provisioning_limit:
            raise AwsError("ClientException", "Tasks provisioning capacity limit exceeded.")

    # ------------------------------------------------------------------ task definitions, tasks, clusters
    def _register_task_definition(self, request: dict[str, Any]) -> None:
        family = request.get("family", "")
        if not FAMILY.fullmatch(family):
            raise AwsError("ClientException", "Family contains invalid characters or is longer than 255 characters.")
        _check_tags(request.get("tags") or [])
        if "FARGATE" in (request.get("requiresCompatibilities") or []):
            cpu, memory = int(request.get("cpu") or 0), int(request.get("memory") or 0)
            if memory not in FARGATE_SIZES.get(cpu, ()):
                raise AwsError("ClientException", f"No Fargate configuration exists for given values: {cpu} CPU, "
                               f"{memory} memory. See the Amazon ECS documentation for the valid values.")
        state, now = self.rules._state, self.rules.clock()
        with self.rules._lock:
            if state["registering"].get((self.region, family), 0) > now:
                raise AwsError("ClientException", "Too many concurrent attempts to create a new revision of the "
                               "specified family.")
            if not state["register"].take():
                raise AwsError("ThrottlingException", "Rate exceeded")
            state["registering"][(self.region, family)] = now + self.rules.register_seconds
        if self.rules.register_seconds:
            time.sleep(self.rules.register_seconds)

    @staticmethod
    def _list_tasks(request: dict[str, Any]) -> None:
        others = {"family", "containerInstance", "serviceName", "desiredStatus", "launchType"} & set(request)
        if request.get("startedBy") and others:
            raise AwsError("InvalidParameterException", "When you specify startedBy as the filter, it must be the "
                           f"only filter that you use (also given: {', '.join(sorted(others))}).")

    def running_only(self, request: dict[str, Any], answer: bytes) -> bytes:
        """ListTasks without ``desiredStatus`` lists the tasks whose desired status is RUNNING (ECS's default
        filter; moto lists them all)."""
        if request.get("desiredStatus"):
            return answer
        from moto.ecs.models import ecs_backends

        from tests.fakes.aws import ACCOUNT

        cluster = (request.get("cluster") or "default").rsplit("/", 1)[-1]
        tasks = ecs_backends[ACCOUNT][self.region].tasks.get(cluster, {})
        listed = json.loads(answer)
        listed["taskArns"] = [arn for arn in listed.get("taskArns", [])
                              if arn not in tasks or tasks[arn].desired_status == "RUNNING"]
        return json.dumps(listed).encode()

    def _create_cluster(self, request: dict[str, Any]) -> None:
        if not request.get("capacityProviders"):
            return
        from moto.iam.models import iam_backends

        from tests.fakes.aws import ACCOUNT

        roles = iam_backends[ACCOUNT]["aws"].roles.values()
        exists = any(role.path == "/aws-service-role/ecs.amazonaws.com/" for role in roles)
        if not exists or not self.rules.propagated(f"role-name:{ECS_SERVICE_ROLE}"):
            raise AwsError("InvalidParameterException", "Unable to assume the service linked role. Please verify "
                           "that the ECS service linked role exists.")


def _on_fargate(request: dict[str, Any]) -> bool:
    strategy = request.get("capacityProviderStrategy")
    if strategy:
        return all(item.get("capacityProvider") in ("FARGATE", "FARGATE_SPOT") for item in strategy)
    return request.get("launchType", "FARGATE") == "FARGATE"


def _check_tags(tags: list[dict[str, str]]) -> None:
    if len(tags) > 50:
        raise AwsError("InvalidParameterException", "A resource can have at most 50 tags.")
    for tag in tags:
        key, value = tag.get("key", ""), tag.get("value", "")
        if not 1 <= len(key) <= 128 or len(value) > 256 or not TAG_TEXT.fullmatch(key) or \
                not TAG_TEXT.fullmatch(value):
            raise AwsError("InvalidParameterException", f"Invalid tag {key!r}: keys are 1-128 and values up to 256 "
                           "letters, spaces, digits and _.:/=+-@")
        if key.lower().startswith("aws:"):
            raise AwsError("InvalidParameterException", "Tag keys starting with 'aws:' are reserved.")


def _fingerprint(request: dict[str, Any]) -> str:
    return json.dumps({k: v for k, v in request.items() if k != "clientToken"}, sort_keys=True)


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _query_action(body: bytes) -> str:
    found = re.search(rb"(?:^|&)Action=([A-Za-z]+)", body)
    return found.group(1).decode() if found else ""


def _reply(start_response: Callable, status: int, payload: dict[str, Any]) -> list[bytes]:
    data = json.dumps(payload).encode()
    start_response(f"{status} {'OK' if status == 200 else 'Error'}",
                   [("Content-Type", "application/x-amz-json-1.1"), ("Content-Length", str(len(data)))])
    return [data]


def _xml_error(start_response: Callable, exc: AwsError) -> list[bytes]:
    data = (f"<ErrorResponse><Error><Type>Sender</Type><Code>{exc.code}</Code><Message>{exc.message}</Message>"
            f"</Error><RequestId>strict-aws</RequestId></ErrorResponse>").encode()
    start_response(f"{exc.status} Error", [("Content-Type", "text/xml"), ("Content-Length", str(len(data)))])
    return [data]


class _Replay:
    """The request body, read again by moto."""

    def __init__(self, data: bytes) -> None:
        self._data, self._at = data, 0

    def read(self, size: int = -1) -> bytes:
        end = len(self._data) if size is None or size < 0 else self._at + size
        chunk, self._at = self._data[self._at:end], min(end, len(self._data))
        return chunk

    def readline(self, size: int = -1) -> bytes:
        end = self._data.find(b"\n", self._at)
        return self.read((end + 1 - self._at) if end >= 0 else -1)
