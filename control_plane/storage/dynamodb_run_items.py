"""The items a flow run is stored as on DynamoDB, and the transaction actions that write them.

A run is one item (``RUN#id`` / ``RUN``, packed document, a ``ver`` counter for optimistic concurrency, the
sparse index keys its state puts it in), a history item per state (``STATE#version``), and it holds slots in
the ``SLOTS#pool|queue|deployment#id`` counters while active. :mod:`.dynamodb_runs` reads and writes them.
"""

from __future__ import annotations

from typing import Any

from pushpool.control_plane.models import ACTIVE_STATES, FINAL_STATES, FlowRun, State, StateType, run_position
from pushpool.control_plane.storage.dynamodb_packing import packed_doc, read_doc
from pushpool.control_plane.storage.dynamodb_schema import LOWEST, to_attrs
from pushpool.control_plane.storage.dynamodb_table import Item
from pushpool.control_plane.storage.records import ts


def run_item(run: FlowRun, version: int) -> Item:
    """The stored item of ``run``: the document plus the sparse index keys its state puts it in."""
    kind = run.state.type
    sk = run_position(run)
    plain: dict[str, Any] = {
        "PK": f"RUN#{run.id}", "SK": "RUN", "ver": version, "st": kind.value,
        "G2PK": f"WSRUNS#{run.workspace_id}", "G2SK": sk, "G3PK": f"DEPRUNS#{run.deployment_id}", "G3SK": sk,
    }
    if kind is StateType.SCHEDULED:
        plain.update(G1PK=f"DUE#{run.pool_id}", G1SK=sk)
    if run.auto_scheduled:
        plain.update(G4PK=f"DEPAUTO#{run.deployment_id}", G4SK=sk)
    if kind is StateType.PENDING and run.infra_id is None:
        waits = [t for t in (run.lease_until, run.next_attempt_at) if t is not None]
        plain.update(G5PK="SUBMIT", G5SK=f"{ts(max(waits)) if waits else LOWEST}#{run.id}")
    elif run.infra_id is not None and (kind in ACTIVE_STATES or (kind in FINAL_STATES and not run.cleaned_up)):
        plain.update(G5PK="RECONCILE", G5SK=sk)
    return {**to_attrs(plain), **packed_doc(run)}


def stored_run(item: Item) -> FlowRun:
    return read_doc(FlowRun, item)


def version_of(item: Item) -> int:
    return int(item["ver"]["N"])


def put_run(run: FlowRun, version: int, expected_version: int | None) -> dict[str, Any]:
    body: dict[str, Any] = {"Item": run_item(run, version)}
    if expected_version is None:
        body["ConditionExpression"] = "attribute_not_exists(PK)"
    else:
        body["ConditionExpression"] = "ver = :v"
        body["ExpressionAttributeValues"] = {":v": {"N": str(expected_version)}}
    return {"Put": body}


def put_state(run_id: str, version: int, state: State) -> dict[str, Any]:
    return {"Put": {"Item": to_attrs({"PK": f"RUN#{run_id}", "SK": f"STATE#{version:010d}",
                                      "doc": state.model_dump_json()})}}


def slot(kind: str, ident: str, delta: int, limit: int | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "Key": {"PK": {"S": f"SLOTS#{kind}#{ident}"}, "SK": {"S": "SLOTS"}},
        "UpdateExpression": "ADD active :d",
        "ExpressionAttributeValues": {":d": {"N": str(delta)}},
    }
    if limit is not None and delta > 0:
        body["ConditionExpression"] = "attribute_not_exists(active) OR active < :limit"
        body["ExpressionAttributeValues"][":limit"] = {"N": str(limit)}
    return {"Update": body}


def slots(run: FlowRun, delta: int) -> list[dict[str, Any]]:
    return [slot("pool", run.pool_id, delta), slot("queue", run.queue_id, delta),
            slot("deployment", run.deployment_id, delta)]


def slot_delta(before: StateType | None, after: StateType) -> int:
    return int(after in ACTIVE_STATES) - int(before in ACTIVE_STATES)
