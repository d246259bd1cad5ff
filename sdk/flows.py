"""The ``@flow`` decorator: a function plus the metadata pushpool needs to run it.

The decorated function still runs when called directly. Its parameter schema is
derived from its signature with pydantic.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

from pydantic import ConfigDict, create_model


class Flow:
    def __init__(self, fn: Callable[..., Any], name: str | None = None, description: str | None = None,
                 log_prints: bool = False, retries: int = 0, retry_delay_seconds: float = 0) -> None:
        self.fn = fn
        self.name = name or fn.__name__.replace("_", "-")
        self.description = description or inspect.getdoc(fn)
        self.log_prints = log_prints
        self.retries = retries
        self.retry_delay_seconds = retry_delay_seconds
        functools.update_wrapper(self, fn)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)

    def parameter_schema(self) -> dict[str, Any]:
        """A JSON schema of the function's parameters (from its signature and type hints)."""
        fields: dict[str, Any] = {}
        for param in inspect.signature(self.fn).parameters.values():
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                continue
            annotation = Any if param.annotation is inspect.Parameter.empty else param.annotation
            default = ... if param.default is inspect.Parameter.empty else param.default
            fields[param.name] = (annotation, default)
        model = create_model(f"{self.fn.__name__}_parameters", __config__=ConfigDict(extra="forbid"), **fields)
        schema = model.model_json_schema()
        schema.pop("title", None)
        return schema


def flow(fn: Callable[..., Any] | None = None, *, name: str | None = None, description: str | None = None,
         log_prints: bool = False, retries: int = 0, retry_delay_seconds: float = 0) -> Any:
    """Mark a function as a flow; usable as ``@flow`` or ``@flow(name=...)``."""
    def decorate(f: Callable[..., Any]) -> Flow:
        return Flow(f, name=name, description=description, log_prints=log_prints, retries=retries,
                    retry_delay_seconds=retry_delay_seconds)
    return decorate(fn) if fn is not None else decorate
