"""The DynamoDB table design of :mod:`control_plane.storage.dynamodb` (one table, five sparse GSIs).

Every record is kept whole as JSON in ``doc`` (runs, events and log chunks: packed in ``docz``, see
:mod:`control_plane.storage.dynamodb_packing`); the key attributes say where it lives.

=====================  ==========================  ==========================================
item                   PK / SK                     indexes (PK → SK)
=====================  ==========================  ==========================================
workspace              WS#id / WS                  lists: WORKSPACES → name
workspace name guard   WSNAME#name / WSNAME
actor                  ACTOR#id / ACTOR            lists: SA#workspace → id (service accounts)
                                                   | USERS → id (users)
membership             ACTOR#actor / MEMBER#ws     lists: MEMBERS#ws → actor
API key                KEY#id / KEY                lists: KEYS#actor → id
API key by hash        KEYHASH#hash / KEYHASH
pool (by name)         WS#ws / POOL#name
pool (by id)           POOL#id / POOL              lists: POOLS → ws#name
queue (by name)        POOL#pool / QUEUE#name
queue (by id)          QUEUE#id / QUEUE
block (by name)        WS#ws / BLOCK#name
block (by id)          BLOCK#id / BLOCK
variable               WS#ws / VAR#name
tag concurrency limit  WS#ws / TAGLIMIT#tag        ``ver`` for conditional writes (holders inside)
deployment (by name)   WS#ws / DEP#<len>#flow#name
deployment (by id)     DEPLOY#id / DEPLOY          lists: SCHEDULED_DEPLOYMENTS → id (sparse)
flow run               RUN#id / RUN                due: DUE#pool → time#id (only SCHEDULED)
                                                   workspace: WSRUNS#ws → time#id
                                                   deployment: DEPRUNS#dep → time#id
                                                   auto: DEPAUTO#dep → time#id (auto-scheduled)
                                                   lists: SUBMIT → eligible#id | RECONCILE → time#id
state history          RUN#id / STATE#version
task run               RUN#run / TASK#id
child run link         RUN#parent / CHILD#child    (``child``: the child's id)
task-run report count  RUN#run / TASKREPORTS       (``reports`` counter: the per-run cap)
log chunk              RUN#run / LOG#seq           ``expires`` (epoch seconds): DynamoDB's TTL
log byte count         RUN#run / LOGBYTES          (``bytes`` counter: the per-run cap)
run token              RUN#id / TOKEN
idempotency guard      DEPRUNKEY#dep / key
concurrency slots      SLOTS#pool|queue|deployment#id / SLOTS  (``active`` counter)
meta (last tick, ...)  META#key / META
=====================  ==========================  ==========================================

The same definition creates the table in tests and in ``infra/pushpool.yaml``; a
test checks the two agree.
"""

from __future__ import annotations

from typing import Any

#: GSI name → (partition key attribute, sort key attribute).
INDEXES: dict[str, tuple[str, str]] = {
    "due": ("G1PK", "G1SK"),
    "workspace": ("G2PK", "G2SK"),
    "deployment": ("G3PK", "G3SK"),
    "auto": ("G4PK", "G4SK"),
    "lists": ("G5PK", "G5SK"),
}

#: Sorts after every character used in ids and timestamps: ``time + HIGH`` bounds "at or before time".
HIGH = "~"
#: Sorts before every timestamp (DynamoDB refuses an empty string as a key bound).
LOWEST = "0"


def table_definition(table_name: str) -> dict[str, Any]:
    """Keyword arguments for ``CreateTable`` (on-demand billing)."""
    attributes = ["PK", "SK"] + [name for pair in INDEXES.values() for name in pair]
    return {
        "TableName": table_name,
        "BillingMode": "PAY_PER_REQUEST",
        "AttributeDefinitions": [{"AttributeName": a, "AttributeType": "S"} for a in attributes],
        "KeySchema": [{"AttributeName": "PK", "KeyType": "HASH"}, {"AttributeName": "SK", "KeyType": "RANGE"}],
        "GlobalSecondaryIndexes": [
            {
                "IndexName": name,
                "KeySchema": [{"AttributeName": pk, "KeyType": "HASH"}, {"AttributeName": sk, "KeyType": "RANGE"}],
                "Projection": {"ProjectionType": "ALL"},
            }
            for name, (pk, sk) in INDEXES.items()
        ],
    }


def to_attrs(plain: dict[str, Any]) -> dict[str, dict[str, str]]:
    """A flat dict of str/int/bool values as DynamoDB attribute values (``None`` values are left out)."""
    out: dict[str, dict[str, str]] = {}
    for key, value in plain.items():
        if value is None:
            continue
        if isinstance(value, bool):
            out[key] = {"BOOL": value}  # type: ignore[dict-item]
        elif isinstance(value, int):
            out[key] = {"N": str(value)}
        else:
            out[key] = {"S": str(value)}
    return out


def from_attrs(item: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The inverse of :func:`to_attrs`."""
    out: dict[str, Any] = {}
    for key, value in item.items():
        if "S" in value:
            out[key] = value["S"]
        elif "N" in value:
            out[key] = int(value["N"])
        elif "BOOL" in value:
            out[key] = value["BOOL"]
    return out


def doc_item(record: Any, pk: str, sk: str, **extra: Any) -> dict[str, Any]:
    """The item keeping ``record`` whole as JSON under ``pk``/``sk``, with ``extra`` attributes."""
    return to_attrs({"PK": pk, "SK": sk, "doc": record.model_dump_json(), **extra})


def put_action(item: dict[str, Any], condition: str | None = None) -> dict[str, Any]:
    """A ``Put`` of a ``TransactWriteItems``."""
    body: dict[str, Any] = {"Item": item}
    if condition:
        body["ConditionExpression"] = condition
    return {"Put": body}


def delete_action(pk: str, sk: str) -> dict[str, Any]:
    """A ``Delete`` of a ``TransactWriteItems``."""
    return {"Delete": {"Key": {"PK": {"S": pk}, "SK": {"S": sk}}}}


def key(pk: str, sk: str) -> dict[str, dict[str, str]]:
    return {"PK": {"S": pk}, "SK": {"S": sk}}


def deployment_sort_key(flow_name: str, name: str) -> str:
    """Unambiguous for any names: the flow name's length comes first."""
    return f"DEP#{len(flow_name)}#{flow_name}#{name}"
