"""Runs and events are kept packed (zlib'd JSON in ``docz``) so that an item and each index copy of it stay
under the 1 KiB a DynamoDB write unit covers; items of earlier releases (plain ``doc``) still read."""

from __future__ import annotations

import hashlib
import uuid
import zlib
from datetime import timedelta

import pytest

from pushpool.control_plane.event_models import Event, EventFilter
from pushpool.control_plane.models import StateType
from pushpool.control_plane.storage.dynamodb_packing import DICTIONARIES, pack, unpack
from pushpool.control_plane.storage.dynamodb_run_items import run_item
from pushpool.control_plane.storage.dynamodb_schema import doc_item
from pushpool.control_plane.storage.records import ts
from tests.benchmarks.dynamodb_capacity import item_size
from tests.control_plane.storage.contract import T0, World, state
from tests.control_plane.storage.test_dynamodb import make_store

#: The first 16 hex digits of dictionary 1's SHA-256, as released.
DICTIONARY_1_SHA256 = "1561f6b06e90be22"
ECS_TASK = "arn:aws:ecs:eu-west-1:123456789012:task/pushpool-flows/0123456789abcdef0123456789abcdef"
ECS_CONSOLE = ("https://eu-west-1.console.aws.amazon.com/ecs/v2/clusters/pushpool-flows/tasks/"
               "0123456789abcdef0123456789abcdef/configuration?region=eu-west-1")
ECS_LOGS = ("https://eu-west-1.console.aws.amazon.com/cloudwatch/home?region=eu-west-1#logsV2:log-groups/"
            "log-group/$252Fpushpool$252Fflows/log-events/pushpool$252Fflow$252F0123456789abcdef0123456789abcdef")


@pytest.fixture
def table_name(aws) -> str:
    return f"pushpool-{uuid.uuid4().hex[:8]}"


def test_a_submitted_ecs_run_is_one_write_unit_and_kept_packed(aws, table_name):
    store = make_store(aws, table_name, create=True)
    world = World(store)
    pool, queue = world.pool()
    run = world.run(world.deployment(pool, queue), parameters={"date": "2026-12-07", "rows": 5000},
                    tags=["etl", "nightly"])
    submitted = store.update_flow_run(run.id, {"infra_id": ECS_TASK, "console_url": ECS_CONSOLE,
                                               "logs_url": ECS_LOGS, "submitted_at": T0})
    running = store.set_flow_run_state(run.id, state(StateType.RUNNING), changes={"start_time": T0})
    item = store.table.get(f"RUN#{run.id}", "RUN")
    assert "docz" in item and "doc" not in item
    plain = run_item(running, 3)
    plain.pop("docz")
    plain["doc"] = {"S": running.model_dump_json()}
    assert item_size(plain) > 1024 >= item_size(item)  # plain it would cost two units per write and index copy
    assert store.get_flow_run(world.ws.id, run.id) == running and submitted.infra_id == running.infra_id


def test_runs_and_events_of_an_earlier_release_still_read_and_are_packed_when_next_written(aws, table_name):
    store = make_store(aws, table_name, create=True)
    world = World(store)
    pool, queue = world.pool()
    run = world.run(world.deployment(pool, queue))
    old = run_item(run, 1)
    old.pop("docz")
    old["doc"] = {"S": run.model_dump_json()}
    store.table.put(old)  # as releases before packing wrote it
    assert store.get_flow_run(world.ws.id, run.id) == run
    [claimed] = store.claim_flow_runs(pool.id, T0 + timedelta(minutes=1), T0 + timedelta(minutes=5), 10).claimed
    assert claimed.id == run.id and "docz" in store.table.get(f"RUN#{run.id}", "RUN")

    event = Event(workspace_id=world.ws.id, occurred=T0, received=T0, event="pushpool.flow-run.Completed",
                  resource={"pushpool.resource.id": f"pushpool.flow-run.{run.id}"})
    store.table.put(doc_item(event, f"EVENTS#{world.ws.id}", f"{ts(T0)}#{event.id}", event=event.event,
                             resource_id=event.resource_id))
    newer = event.model_copy(update={"id": "e2", "occurred": T0 + timedelta(seconds=1)})
    store.append_events([newer])
    assert [e.id for e in store.list_events(world.ws.id, EventFilter(ascending=True))] == [event.id, "e2"]


def test_packed_documents_name_their_dictionary_and_older_plain_zlib_still_unpacks():
    data = b'{"id":"x","state":{"type":"RUNNING","name":"Running"}}'
    assert pack(data)[0] == max(DICTIONARIES) and unpack(pack(data)) == data
    assert unpack(pack(data, 1)) == data
    assert unpack(zlib.compress(data, 6)) == data  # a log chunk of an earlier release


def test_dictionary_1_is_frozen():
    """Items packed with a dictionary can only be read with the same bytes: a change would make every run and event
    written since unreadable. Add a dictionary 2 instead."""
    assert hashlib.sha256(DICTIONARIES[1]).hexdigest()[:16] == DICTIONARY_1_SHA256
