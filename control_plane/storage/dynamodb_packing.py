"""How the DynamoDB store packs the records written on every run's transitions (runs, events, log chunks).

DynamoDB bills a write per started KiB of the item, and again per KiB of each index copy of it; reads per 4 KiB.
A run's JSON is 1.0–1.5 KiB (a submitted ECS run: ids, times, the task's ARN and its console and log links), and its
index keys add about 0.4 KiB, so written plain every transition of a run cost two units per copy. Packed — zlib
with a preset dictionary of the JSON's field names and the strings runs and events repeat — the same run is about
0.35 KiB, and the item with its keys fits in one unit.

A packed document is a binary ``docz`` attribute: one byte naming the dictionary, then the zlib stream. A
dictionary, once released, is never changed (items written with it must stay readable): a better one is added
under the next number and :data:`CURRENT` moves to it. ``docz`` values that begin with zlib's own header byte
(``0x78``) are log chunks of releases before dictionaries; items without ``docz`` keep plain JSON in ``doc``.
"""

from __future__ import annotations

import zlib
from typing import Any, TypeVar

from pydantic import BaseModel

from pushpool.control_plane.storage.dynamodb_schema import to_attrs

M = TypeVar("M", bound=BaseModel)

#: zlib's level: these documents are small, so the best compression costs microseconds.
LEVEL = 9
#: A zlib stream's first byte (deflate, 32 KiB window): a ``docz`` written without a dictionary.
_ZLIB_HEADER = 0x78

# Dictionary 1. Frozen: never edit it (add a dictionary 2 instead). zlib finds its matches anywhere in the
# dictionary, and the nearer the end, the cheaper: the strings every run carries come last.
_DICTIONARY_1 = (
    b'arn:aws:ecs:task/https://console.cloud.google.com/run/jobs/executions/details/https://portal.azure.com/#'
    b'@/resource/subscriptions/resourceGroups/providers/Microsoft.ContainerInstance/containerGroups/'
    b'https://modal.com/apps/https://cloud.coiled.io/clusters/'
    b'.console.aws.amazon.com/cloudwatch/home?region=#logsV2:log-groups/log-group/log-events/$252F'
    b'.console.aws.amazon.com/ecs/v2/clusters//tasks//configuration?region='
    b'{"pushpool.resource.id":"pushpool.deployment.","pushpool.resource.name":"","pushpool.resource.role":'
    b'"deployment"},{"pushpool.resource.id":"pushpool.flow.","pushpool.resource.role":"flow"},'
    b'{"pushpool.resource.id":"pushpool.work-pool.","pushpool.resource.role":"work-pool"},'
    b'{"pushpool.resource.id":"pushpool.work-queue.","pushpool.resource.role":"work-queue"},'
    b'{"pushpool.resource.id":"pushpool.tag.","pushpool.resource.role":"tag"}],"payload":{"intended":'
    b'{"from":"SCHEDULED","to":"PENDING"},"validated_state":{"type":"RUNNING","name":"Running","message":null}},'
    b'"received":"","pushpool.state-type":"COMPLETED","pushpool.state-name":"Completed",'
    b'{"id":"","workspace_id":"","occurred":"","event":"pushpool.flow-run.","resource":'
    b'{"pushpool.resource.id":"pushpool.flow-run.","related":[{'
    b'"FAILED","name":"Failed" "CRASHED","name":"Crashed" "CANCELLED","name":"Cancelled" '
    b'"CANCELLING","name":"Cancelling" "PENDING","name":"Pending" "COMPLETED","name":"Completed" '
    b'"RUNNING","name":"Running" "SCHEDULED","name":"Scheduled" '
    b'{"id":"","workspace_id":"","deployment_id":"","flow_name":"","deployment_name":"","name":"","pool_id":"",'
    b'"queue_id":"","parameters":{},"job_variables":{},"tags":[],"state":{"type":"SCHEDULED","name":"Scheduled",'
    b'"message":null,"timestamp":"2026-01-01T00:00:00.000000Z"},"scheduled_time":"","auto_scheduled":false,'
    b'"schedule_id":null,"idempotency_key":null,"retry_of":null,"backfill_id":null,"crash_attempts":0,'
    b'"parent_flow_run_id":null,"depth":0,"result":null,"start_time":null,"end_time":null,"infra_id":null,'
    b'"console_url":null,"logs_url":null,"submitted_at":null,"submission_attempts":0,"lease_until":null,'
    b'"next_attempt_at":null,"submission_error":null,"deadline":null,"cleaned_up":false,"created":"","updated":""}'
)
DICTIONARIES: dict[int, bytes] = {1: _DICTIONARY_1}
#: The dictionary new documents are packed with.
CURRENT = 1


def pack(data: bytes, dictionary: int = CURRENT) -> bytes:
    compressor = zlib.compressobj(LEVEL, zdict=DICTIONARIES[dictionary])
    return bytes([dictionary]) + compressor.compress(data) + compressor.flush()


def unpack(packed: bytes) -> bytes:
    if packed[0] == _ZLIB_HEADER:
        return zlib.decompress(packed)
    decompressor = zlib.decompressobj(zdict=DICTIONARIES[packed[0]])
    return decompressor.decompress(packed[1:]) + decompressor.flush()


def packed_doc(record: BaseModel) -> dict[str, Any]:
    """``record`` as the item attribute holding it packed."""
    return {"docz": {"B": pack(record.model_dump_json().encode())}}


def packed_item(record: BaseModel, pk: str, sk: str, **extra: Any) -> dict[str, Any]:
    """The item keeping ``record`` packed under ``pk``/``sk`` with ``extra`` attributes (``doc_item``, packed)."""
    return {**to_attrs({"PK": pk, "SK": sk, **extra}), **packed_doc(record)}


def read_doc(model: type[M], item: dict[str, Any]) -> M:
    """The record an item keeps: packed (``docz``), or plain JSON (``doc``, as runs and events were before)."""
    if "docz" in item:
        return model.model_validate_json(unpack(item["docz"]["B"]))
    return model.model_validate_json(item["doc"]["S"])
