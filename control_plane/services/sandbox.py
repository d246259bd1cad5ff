"""Jinja2 templates written by users (webhooks, automation actions), rendered in a sandbox.

* ``jinja2.sandbox.ImmutableSandboxedEnvironment``: no attributes starting with ``_``, no
  Python internals, no mutation of the values passed in; the only globals are ``range``
  (the sandbox's, at most 100,000 items) and ``now()``. The context holds plain JSON values
  (dicts, lists, strings, numbers) — never settings, stores or environment variables.
* Bombs are stopped: ``*`` and ``**`` are checked before they are computed (no
  ``'x' * 10**9``, no ``10**10**10``), and so is every other operation that can make text
  longer than its inputs (string methods, filters, ``+``, ``%``, ``~``, buffered blocks: see
  :mod:`control_plane.services.sandbox_limits`), so memory stays bounded, not only time.
  Output is capped at ``MAX_OUTPUT`` characters, and rendering is stopped after
  ``TIME_LIMIT`` seconds — checked on every line the compiled template executes, so a loop
  that prints nothing is stopped too. Deep recursion and running out of memory end in a
  :class:`TemplateFailed`, not a crash.
* Filters: Jinja's own, ``tojson`` (compact, sorted keys), and ``from_cloud_event(headers)``.
"""

from __future__ import annotations

import json
import operator
import sys
import threading
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from pushpool.control_plane.services.sandbox_limits import (
    MAX_OUTPUT,
    BoundedBuffer,
    TemplateFailed,
    bounded_filters,
    check_binop,
    check_values,
    checked_call,
    checked_concat,
)

__all__ = ["MAX_OUTPUT", "TemplateFailed", "from_cloud_event", "render", "render_value", "syntax_error"]

TIME_LIMIT = 2.0
MAX_TEMPLATE = 50_000
MAX_PRODUCT = 100_000  # the longest sequence or largest power a template may compute


class _Deadline(Exception):  # noqa: N818 - internal signal turned into TemplateFailed
    pass


_environment: Any = None
_lock = threading.Lock()


def environment() -> Any:
    global _environment
    with _lock:
        if _environment is None:
            _environment = _build()
    return _environment


def _build() -> Any:
    from jinja2.compiler import CodeGenerator
    from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError, safe_range

    class BoundedCodeGenerator(CodeGenerator):
        def buffer(self, frame: Any) -> None:
            """Buffered blocks collect into a :class:`BoundedBuffer` (Jinja writes a plain list)."""
            frame.buffer = self.temporary_identifier()
            self.writeline(f"{frame.buffer} = environment.bounded_buffer()")

        def visit_Concat(self, node: Any, frame: Any) -> None:  # noqa: N802 - Jinja's visitor name
            """``a ~ b`` goes through :func:`checked_concat` (Jinja writes a plain join)."""
            self.write("environment.checked_concat((")
            for arg in node.nodes:
                self.visit(arg, frame)
                self.write(", ")
            self.write("))")

    class Sandbox(ImmutableSandboxedEnvironment):
        intercepted_binops = frozenset({"*", "**", "+", "%"})
        code_generator_class = BoundedCodeGenerator
        checked_concat = staticmethod(checked_concat)
        bounded_buffer = BoundedBuffer
        concat = staticmethod(checked_concat)  # every buffered block ({% set %}, {% filter %}, macros)

        def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
            if not __self.is_safe_callable(__obj):
                raise SecurityError(f"{__obj!r} is not safely callable")
            args, kwargs = checked_call(__obj, args, kwargs)
            return __context.call(__obj, *args, **kwargs)

        def unsafe_undefined(self, obj: Any, attribute: str) -> Any:
            raise SecurityError(f"access to attribute {attribute!r} of {type(obj).__name__!r} is not allowed")

        def call_binop(self, context: Any, op: str, left: Any, right: Any) -> Any:
            if op == "**":
                if isinstance(left, int | float) and isinstance(right, int | float) and \
                        (abs(right) > 64 or abs(left) > MAX_PRODUCT):
                    raise TemplateFailed(f"template: {left} ** {right} is too large")
                return operator.pow(left, right)
            if op == "*":
                for seq, times in ((left, right), (right, left)):
                    too_long = isinstance(seq, str | list | tuple) and isinstance(times, int) and \
                        len(seq) * times > MAX_PRODUCT
                    if too_long:
                        raise TemplateFailed("template: a repeated sequence would be too long")
            check_binop(op, left, right)
            if op == "+":
                return operator.add(left, right)
            if op == "%":
                return operator.mod(left, right)
            return operator.mul(left, right)

    env = Sandbox(autoescape=False, undefined=_lenient_undefined(), keep_trailing_newline=False,
                  finalize=_checked_value)
    env.globals.clear()
    env.globals.update(range=safe_range, now=lambda: datetime.now(UTC).isoformat())
    env.policies["json.dumps_kwargs"] = {"sort_keys": True, "separators": (",", ":")}
    env.filters["from_cloud_event"] = from_cloud_event
    env.filters = bounded_filters(env.filters)
    return env


def _checked_value(value: Any) -> Any:
    """Every ``{{ expression }}``'s value, checked for size before it becomes text."""
    check_values("an expression's value", value)
    return value


def _lenient_undefined() -> Any:
    from jinja2 import ChainableUndefined
    from jinja2.sandbox import SecurityError

    class Missing(ChainableUndefined):
        """``{{ body.missing.deeper }}`` renders empty rather than failing — but an undefined name is no way
        around the sandbox either: ``{{ request.__globals__ }}`` is refused like on any other value."""

        __slots__ = ()

        def __getattr__(self, name: str) -> Any:
            if name.startswith("_"):
                raise SecurityError(f"access to attribute {name!r} is not allowed")
            return self

        def __getitem__(self, key: Any) -> Any:
            if isinstance(key, str) and key.startswith("_"):
                raise SecurityError(f"access to attribute {key!r} is not allowed")
            return self

    return Missing


def syntax_error(source: str) -> str | None:
    """Why ``source`` does not parse as a template (with the line), or None: checked when a webhook or an
    automation is saved, so a typo is a 422 then rather than a failure event later."""
    from jinja2 import TemplateSyntaxError

    try:
        environment().from_string(source)
    except TemplateSyntaxError as exc:
        return f"{exc.message} (line {exc.lineno})"
    return None


def render(source: str, context: Mapping[str, Any], *, time_limit: float = TIME_LIMIT) -> str:
    """``source`` rendered with ``context``; raises :class:`TemplateFailed` with the reason."""
    from jinja2 import TemplateError
    from jinja2.sandbox import SecurityError

    if len(source) > MAX_TEMPLATE:
        raise TemplateFailed(f"template: longer than {MAX_TEMPLATE} characters")
    env = environment()
    try:
        template = env.from_string(source)
    except TemplateError as exc:
        raise TemplateFailed(f"template: {exc}") from None
    deadline = time.monotonic() + time_limit
    code = template.root_render_func.__code__.co_filename

    def tracer(frame: Any, event: str, arg: Any) -> Any:
        if frame.f_code.co_filename != code:
            return None  # only the template's own lines are checked (cheap)
        if time.monotonic() > deadline:
            raise _Deadline
        return tracer

    previous = sys.gettrace()
    parts: list[str] = []
    size = 0
    sys.settrace(tracer)
    try:
        for chunk in template.generate(**context):
            size += len(chunk)
            if size > MAX_OUTPUT:
                raise TemplateFailed(f"template: output longer than {MAX_OUTPUT} characters")
            if time.monotonic() > deadline:
                raise _Deadline
            parts.append(chunk)
    except _Deadline:
        raise TemplateFailed(f"template: rendering took longer than {time_limit:g} s") from None
    except SecurityError as exc:
        raise TemplateFailed(f"template: not allowed ({exc})") from None
    except RecursionError:
        raise TemplateFailed("template: recursion too deep") from None
    except MemoryError:
        raise TemplateFailed("template: ran out of memory") from None
    except TemplateFailed:
        raise
    except TemplateError as exc:
        raise TemplateFailed(f"template: {exc}") from None
    except (ArithmeticError, TypeError, ValueError, LookupError, AttributeError, OverflowError) as exc:
        raise TemplateFailed(f"template: {type(exc).__name__}: {exc}") from None
    finally:
        sys.settrace(previous)
    return "".join(parts)


def render_value(value: Any, context: Mapping[str, Any]) -> Any:
    """Render every string inside ``value`` (dicts and lists walked); a string that is exactly one
    ``{{ expression }}`` keeps the expression's JSON type (``{{ flow_run.parameters.n }}`` stays a number)."""
    if isinstance(value, str):
        if "{{" not in value and "{%" not in value:
            return value
        stripped = value.strip()
        if stripped.startswith("{{") and stripped.endswith("}}") and stripped.count("{{") == 1:
            rendered = render("{{ (" + stripped[2:-2] + ")|tojson }}", context)
            try:
                return json.loads(rendered)
            except ValueError:
                return rendered
        return render(value, context)
    if isinstance(value, dict):
        return {k: render_value(v, context) for k, v in value.items()}
    if isinstance(value, list):
        return [render_value(v, context) for v in value]
    return value


def from_cloud_event(body: Any, headers: Mapping[str, str]) -> str:
    """A CloudEvent (structured: the JSON body; binary: ``ce-*`` headers and the body as data) as
    the JSON of a pushpool event: type → event, subject (else source) → resource, data → payload.data."""
    lowered = {str(k).lower(): v for k, v in dict(headers).items()}
    if isinstance(body, dict) and "specversion" in body:
        fields, data = body, body.get("data")
    else:
        fields = {k[3:]: v for k, v in lowered.items() if k.startswith("ce-")}
        data = body
    if not fields.get("type"):
        raise TemplateFailed("from_cloud_event: no CloudEvent type (a 'type' field or a ce-type header)")
    source = str(fields.get("source") or "")
    resource = {"pushpool.resource.id": str(fields.get("subject") or source or "cloudevent"),
                "cloudevents.source": source}
    event = {"event": str(fields["type"]), "resource": resource, "payload": {"data": data}}
    if fields.get("id"):
        event["id"] = str(fields["id"])
    if fields.get("time"):
        event["occurred"] = str(fields["time"])
    return json.dumps(event, sort_keys=True)
