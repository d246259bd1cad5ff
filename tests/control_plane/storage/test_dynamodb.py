"""The store contract against DynamoDB on moto_server (127.0.0.1), plus DynamoDB specifics."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from pushpool.control_plane.models import StateType
from pushpool.control_plane.storage.dynamodb import DynamoDbStore
from pushpool.control_plane.storage.dynamodb_schema import table_definition
from tests.control_plane.storage.contract import T0, StoreContract, World, state
from tests.control_plane.storage.contract_backfills import BackfillsContract
from tests.control_plane.storage.contract_claims import ClaimsContract
from tests.control_plane.storage.contract_events import EventsContract
from tests.control_plane.storage.contract_reports import ReportsContract
from tests.fakes.aws import REGION


@pytest.fixture
def table_name(aws) -> str:
    return f"pushpool-{uuid.uuid4().hex[:8]}"


def make_store(aws, table_name: str, create: bool = False) -> DynamoDbStore:
    return DynamoDbStore(table_name, region=REGION, endpoint_url=aws.url, create_table=create)


class TestDynamoDbStore(StoreContract, ClaimsContract, ReportsContract, EventsContract, BackfillsContract):
    @pytest.fixture
    def contract_store(self, aws, table_name):
        store = make_store(aws, table_name, create=True)
        yield store
        store.close()

    @pytest.fixture
    def store_factory(self, aws, table_name, contract_store):
        made: list[DynamoDbStore] = []

        def make() -> DynamoDbStore:
            made.append(make_store(aws, table_name))
            return made[-1]

        yield make
        for store in made:
            store.close()


def test_no_scan_is_ever_issued(aws, table_name, monkeypatch):
    """Every read is a GetItem, a Query or a BatchGetItem: a Scan would grow with the whole table."""
    store = make_store(aws, table_name, create=True)
    calls: list[str] = []
    original = store.table.client._make_api_call

    def record(operation, params):
        calls.append(operation)
        return original(operation, params)

    monkeypatch.setattr(store.table.client, "_make_api_call", record)
    world = World(store)
    pool, queue = world.pool(concurrency_limit=2)
    dep = world.deployment(pool, queue)
    run = world.run(dep)
    claim = store.claim_flow_runs(pool.id, T0 + timedelta(minutes=1), T0 + timedelta(minutes=5), 10)
    store.set_flow_run_state(run.id, state(StateType.RUNNING))
    store.list_runs_to_reconcile(10)
    store.list_submittable_runs(T0, 10)
    store.list_overdue_scheduled_runs(T0, 10)
    store.list_scheduled_deployments()
    assert [r.id for r in claim.claimed] == [run.id]
    assert "Scan" not in calls and "Query" in calls and "TransactWriteItems" in calls


def test_claim_is_one_transaction_with_slot_conditions(aws, table_name, monkeypatch):
    store = make_store(aws, table_name, create=True)
    world = World(store)
    pool, queue = world.pool(concurrency_limit=1)
    dep = world.deployment(pool, queue)
    world.run(dep)
    transactions: list[dict] = []
    original = store.table.client._make_api_call

    def record(operation, params):
        if operation == "TransactWriteItems":
            transactions.append(params)
        return original(operation, params)

    monkeypatch.setattr(store.table.client, "_make_api_call", record)
    store.claim_flow_runs(pool.id, T0 + timedelta(minutes=1), T0 + timedelta(minutes=5), 10)
    [claim] = transactions
    actions = claim["TransactItems"]
    assert actions[0]["Put"]["ConditionExpression"] == "ver = :v"
    pool_slot = actions[2]["Update"]
    assert pool_slot["Key"]["PK"]["S"] == f"SLOTS#pool#{pool.id}"
    assert pool_slot["ExpressionAttributeValues"][":limit"] == {"N": "1"}


def test_table_definition_is_on_demand_with_the_indexes_the_queries_use():
    definition = table_definition("t")
    assert definition["BillingMode"] == "PAY_PER_REQUEST"
    assert {g["IndexName"] for g in definition["GlobalSecondaryIndexes"]} == {
        "due", "workspace", "deployment", "auto", "lists"}


def test_a_missing_table_is_a_clear_configuration_error(aws):
    from pushpool.control_plane.errors import ConfigurationError

    store = make_store(aws, "does-not-exist")
    with pytest.raises(ConfigurationError, match="does-not-exist.*control-plane deploy"):
        store.get_workspace("default")


def test_missing_aws_credentials_are_a_clear_configuration_error(aws, monkeypatch):
    from pushpool.control_plane.errors import ConfigurationError

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    store = make_store(aws, "t")
    with pytest.raises(ConfigurationError, match="cannot be reached: Unable to locate credentials"):
        store.get_workspace("default")


def test_users_and_memberships_of_an_earlier_release_are_indexed_once(aws, table_name):
    """Items written before the ``lists`` entries existed are found by ``list_users``/``list_members`` after
    the upgrade step, which deletes nothing and runs once."""
    from pushpool.control_plane.models import Actor, ActorKind, Membership, Role
    from pushpool.control_plane.storage.dynamodb_schema import doc_item

    store = make_store(aws, table_name, create=True)
    world = World(store)
    old_user = Actor(kind=ActorKind.USER, name="old", created=T0)
    old_membership = Membership(workspace_id=world.ws.id, actor_id=old_user.id, role=Role.OWNER)
    gone = Membership(workspace_id=world.ws.id, actor_id="removed-meanwhile", role=Role.VIEWER)
    store.table.put(doc_item(old_user, f"ACTOR#{old_user.id}", "ACTOR"))  # as the earlier release wrote them
    for membership in (old_membership, gone):
        store.table.put(doc_item(membership, f"ACTOR#{membership.actor_id}", f"MEMBER#{membership.workspace_id}"))
    new_user = store.create_actor(Actor(kind=ActorKind.USER, name="new", created=T0))
    assert [u.name for u in store.list_users()] == ["new"] and store.list_members(world.ws.id) == []

    original_scan = store.table.scan

    def scan_then_lose_one(*args, **kwargs):  # a member removed while the upgrade runs is not brought back
        items = list(original_scan(*args, **kwargs))
        store.delete_membership(world.ws.id, "removed-meanwhile")
        return iter(items)

    store.table.scan = scan_then_lose_one
    assert store.index_identity_records() == 2
    assert sorted(u.name for u in store.list_users()) == ["new", "old"]
    assert [(m.actor_id, m.role) for m in store.list_members(world.ws.id)] == [(old_user.id, Role.OWNER)]
    assert store.get_actor(new_user.id) == new_user
    store.table.scan = original_scan
    assert store.index_identity_records() == 0  # remembered: later deploys do not scan again


def test_a_filtered_page_reads_a_bounded_number_of_runs_and_goes_on_from_there(aws, table_name):
    """A rare tag among many runs: each page reads at most the budget (pages come short), and walking the
    cursor still finds every tagged run once, in order."""
    from pushpool.control_plane.models import FlowRunFilter

    store = make_store(aws, table_name, create=True)
    store.RUN_SCAN_BUDGET = 4
    world = World(store)
    pool, queue = world.pool()
    dep = world.deployment(pool, queue)
    tagged = [world.run(dep, T0 + timedelta(minutes=i), tags=["rare"] if i in (1, 9) else []).id for i in range(11)]
    pages, found, cursor = [], [], None
    while True:
        page, cursor = store.page_flow_runs(world.ws.id, FlowRunFilter(tags=["rare"], after=cursor), limit=5)
        pages.append(len(page))
        found += [run.id for run in page]
        if cursor is None:
            break
        assert len(pages) < 10
    assert found == [tagged[9], tagged[1]]
    assert len(pages) >= 3  # 11 runs read 4 at a time


def test_a_workspace_is_found_by_name_or_id_with_one_read(aws, table_name, monkeypatch):
    """Every API request resolves its workspace, clients mostly by name: a name is looked up as a name first (ids
    are UUIDs), so neither costs a billed read that finds nothing."""
    store = make_store(aws, table_name, create=True)
    world = World(store)
    reads: list[str] = []
    original = store.table.get
    monkeypatch.setattr(store.table, "get", lambda pk, sk: reads.append(pk) or original(pk, sk))
    assert store.get_workspace("ws") == world.ws and reads == ["WSNAME#ws"]
    reads.clear()
    assert store.get_workspace(world.ws.id) == world.ws and reads == [f"WS#{world.ws.id}"]
    reads.clear()
    assert store.get_workspace("nope") is None and len(reads) == 2
