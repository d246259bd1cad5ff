"""Answers that skip FastAPI's second validation of records the services already validated.

A ``def`` route that returns a model is validated again against its ``response_model`` in
the thread pool (one more hop) and then serialised; returning the JSON directly costs a
third of that. Only for records that are their own response model, so nothing that a
response model would filter out can leak (the type check enforces it). The route keeps
``response_model`` for the OpenAPI document.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

from fastapi import Response
from pydantic import BaseModel

M = TypeVar("M", bound=BaseModel)


def record_json(model: type[M], record: M, status_code: int = 200) -> Response:
    if type(record) is not model:
        raise TypeError(f"expected a {model.__name__}, got {type(record).__name__}")
    return Response(record.model_dump_json(), status_code=status_code, media_type="application/json")


def records_json(model: type[M], records: Sequence[M]) -> Response:
    if any(type(r) is not model for r in records):
        raise TypeError(f"expected only {model.__name__} records")
    body = "[" + ",".join(r.model_dump_json() for r in records) + "]"
    return Response(body, media_type="application/json")
