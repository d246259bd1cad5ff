"""The serverless storage backend: one DynamoDB table (design in :mod:`.dynamodb_schema`).

Point reads are strongly consistent ``GetItem``s; lists are paged ``Query``s of a
partition or a sparse index, never a ``Scan``. Names are unique through guard items
written in the same ``TransactWriteItems`` as the record, so nothing is half-written.
Flow-run methods (including the atomic claim) live in :mod:`.dynamodb_runs`.
"""

from __future__ import annotations

import contextlib
from typing import Any, TypeVar

from pydantic import BaseModel

from pushpool.control_plane.errors import AlreadyExists
from pushpool.control_plane.models import (
    Actor,
    ActorKind,
    ApiKey,
    Block,
    Deployment,
    Membership,
    WorkPool,
    WorkQueue,
    Workspace,
)
from pushpool.control_plane.storage.base import DeploymentSummary
from pushpool.control_plane.storage.claim_rules import claim_limits
from pushpool.control_plane.storage.dynamodb_events import DynamoEventsMixin
from pushpool.control_plane.storage.dynamodb_reports import DynamoReportsMixin
from pushpool.control_plane.storage.dynamodb_runs import DynamoRunsMixin
from pushpool.control_plane.storage.dynamodb_schema import (
    INDEXES,
    deployment_sort_key,
    doc_item,
    from_attrs,
    put_action,
    to_attrs,
)
from pushpool.control_plane.storage.dynamodb_table import Item, Table, TransactionFailed
from pushpool.control_plane.storage.dynamodb_variables import DynamoVariablesMixin

M = TypeVar("M", bound=BaseModel)

_NEW = "attribute_not_exists(PK)"
#: Set once every user and membership item carries its ``lists`` index entry (see ``index_identity_records``).
IDENTITY_INDEX_META = "identity_lists_indexed"
_EXISTS = "attribute_exists(PK)"


def _looks_like_id(value: str) -> bool:
    return len(value) == 36 and value.count("-") == 4


def _load(model: type[M], item: Item | None) -> M | None:
    return model.model_validate_json(item["doc"]["S"]) if item else None


class DynamoDbStore(DynamoRunsMixin, DynamoReportsMixin, DynamoVariablesMixin, DynamoEventsMixin):
    """``Store`` on DynamoDB. ``create_table=True`` creates the table when missing (tests, local use)."""

    def __init__(self, table_name: str, *, region: str | None = None, endpoint_url: str | None = None,
                 create_table: bool = False, session: Any = None) -> None:
        self.table = Table(table_name, region=region, endpoint_url=endpoint_url, session=session)
        if create_table:
            self.table.create_if_missing()

    def close(self) -> None:
        self.table.client.close()

    # ------------------------------------------------------------------ helpers
    def _get(self, model: type[M], pk: str, sk: str) -> M | None:
        return _load(model, self.table.get(pk, sk))

    def _list(self, model: type[M], pk: str, prefix: str | None = None, *, index: str | None = None) -> list[M]:
        if index is not None:
            pk_name, sk_name = INDEXES[index]
            items = self.table.query(pk, index=index, pk_name=pk_name, sk_name=sk_name)
        else:
            items = self.table.query(pk, sk_prefix=prefix)
        return [model.model_validate_json(i["doc"]["S"]) for i in items]

    def _create_pair(self, by_name: Item, by_id: Item, what: str, *more: dict[str, Any]) -> None:
        try:
            self.table.transact([put_action(by_name, _NEW), put_action(by_id, _NEW), *more])
        except TransactionFailed as exc:
            raise AlreadyExists(f"{what} already exists") from exc

    def _update_pair(self, by_name: Item, by_id: Item) -> None:
        # Deleted meanwhile: like an UPDATE of a missing row, nothing happens.
        with contextlib.suppress(TransactionFailed):
            self.table.transact([put_action(by_name, _EXISTS), put_action(by_id, _EXISTS)])

    # ------------------------------------------------------------------ meta
    def get_meta(self, name: str) -> str | None:
        item = self.table.get(f"META#{name}", "META")
        return item["value"]["S"] if item else None

    def set_meta(self, name: str, value: str) -> None:
        self.table.put(to_attrs({"PK": f"META#{name}", "SK": "META", "value": value}))

    def set_meta_once(self, name: str, value: str) -> str:
        self.table.put(to_attrs({"PK": f"META#{name}", "SK": "META", "value": value}), condition=_NEW)
        return self.get_meta(name) or value

    # ------------------------------------------------------------------ tenancy
    def create_workspace(self, workspace: Workspace) -> Workspace:
        self._create_pair(
            doc_item(workspace, f"WSNAME#{workspace.name}", "WSNAME"),
            doc_item(workspace, f"WS#{workspace.id}", "WS", G5PK="WORKSPACES", G5SK=workspace.name),
            f"Workspace {workspace.name!r}",
        )
        return workspace

    def get_workspace(self, id_or_name: str) -> Workspace | None:
        by_id = (Workspace, f"WS#{id_or_name}", "WS")
        by_name = (Workspace, f"WSNAME#{id_or_name}", "WSNAME")
        if not _looks_like_id(id_or_name):  # ids are UUIDs: a name is looked up first (one billed read, not two)
            by_id, by_name = by_name, by_id
        return self._get(*by_id) or self._get(*by_name)

    def list_workspaces(self) -> list[Workspace]:
        return self._list(Workspace, "WORKSPACES", index="lists")

    def update_workspace(self, workspace: Workspace) -> None:
        self._update_pair(doc_item(workspace, f"WSNAME#{workspace.name}", "WSNAME"),
                          doc_item(workspace, f"WS#{workspace.id}", "WS", G5PK="WORKSPACES", G5SK=workspace.name))

    @staticmethod
    def _actor_item(actor: Actor) -> Item:
        if actor.kind is ActorKind.SERVICE_ACCOUNT and actor.workspace_id:
            return doc_item(actor, f"ACTOR#{actor.id}", "ACTOR", G5PK=f"SA#{actor.workspace_id}", G5SK=actor.id)
        return doc_item(actor, f"ACTOR#{actor.id}", "ACTOR", G5PK="USERS", G5SK=actor.id)

    @staticmethod
    def _membership_item(membership: Membership) -> Item:
        return doc_item(membership, f"ACTOR#{membership.actor_id}", f"MEMBER#{membership.workspace_id}",
                        G5PK=f"MEMBERS#{membership.workspace_id}", G5SK=membership.actor_id)

    def create_actor(self, actor: Actor) -> Actor:
        if not self.table.put(self._actor_item(actor), condition=_NEW):
            raise AlreadyExists(f"Actor {actor.name!r} already exists")
        return actor

    def list_users(self) -> list[Actor]:
        return self._list(Actor, "USERS", index="lists")

    def get_actor(self, actor_id: str) -> Actor | None:
        return self._get(Actor, f"ACTOR#{actor_id}", "ACTOR")

    def list_service_accounts(self, workspace_id: str) -> list[Actor]:
        return self._list(Actor, f"SA#{workspace_id}", index="lists")

    def delete_actor(self, actor_id: str) -> None:
        keys = [(i["PK"]["S"], i["SK"]["S"]) for i in self.table.query(f"ACTOR#{actor_id}")]
        for api_key in self.list_api_keys(actor_id):
            keys += [(f"KEY#{api_key.id}", "KEY"), (f"KEYHASH#{api_key.key_hash}", "KEYHASH")]
        self.table.delete_many(keys)

    def set_membership(self, membership: Membership) -> None:
        self.table.put(self._membership_item(membership))

    def get_membership(self, workspace_id: str, actor_id: str) -> Membership | None:
        return self._get(Membership, f"ACTOR#{actor_id}", f"MEMBER#{workspace_id}")

    def list_memberships(self, actor_id: str) -> list[Membership]:
        return self._list(Membership, f"ACTOR#{actor_id}", "MEMBER#")

    def list_members(self, workspace_id: str) -> list[Membership]:
        return self._list(Membership, f"MEMBERS#{workspace_id}", index="lists")

    def delete_membership(self, workspace_id: str, actor_id: str) -> None:
        self.table.delete_many([(f"ACTOR#{actor_id}", f"MEMBER#{workspace_id}")])

    def index_identity_records(self) -> int:
        """Once per table: give users and memberships written by earlier releases the index entries that list them.

        One paged ``Scan`` (an upgrade step, run by ``pushpool control-plane deploy``), remembered in a meta
        item so later deploys skip it; returns how many items it rewrote.
        """
        if self.get_meta(IDENTITY_INDEX_META) is not None:
            return 0
        rewritten = 0
        for item in self.table.scan("(SK = :actor OR begins_with(SK, :member)) AND attribute_not_exists(G5PK)",
                                    {":actor": {"S": "ACTOR"}, ":member": {"S": "MEMBER#"}}):
            if item["SK"]["S"] == "ACTOR":
                fresh = self._actor_item(Actor.model_validate_json(item["doc"]["S"]))
            else:
                fresh = self._membership_item(Membership.model_validate_json(item["doc"]["S"]))
            # Only if still there and not rewritten meanwhile (a newer write carries the index attributes).
            rewritten += self.table.put(fresh, condition="attribute_exists(PK) AND attribute_not_exists(G5PK)")
        self.set_meta(IDENTITY_INDEX_META, "1")
        return rewritten

    def _key_items(self, key: ApiKey) -> tuple[Item, Item]:
        return (doc_item(key, f"KEYHASH#{key.key_hash}", "KEYHASH"),
                doc_item(key, f"KEY#{key.id}", "KEY", G5PK=f"KEYS#{key.actor_id}", G5SK=key.id))

    def create_api_key(self, key: ApiKey) -> ApiKey:
        self._create_pair(*self._key_items(key), "API key")
        return key

    def get_api_key_by_hash(self, key_hash: str) -> ApiKey | None:
        return self._get(ApiKey, f"KEYHASH#{key_hash}", "KEYHASH")

    def get_api_key(self, key_id: str) -> ApiKey | None:
        return self._get(ApiKey, f"KEY#{key_id}", "KEY")

    def list_api_keys(self, actor_id: str) -> list[ApiKey]:
        return self._list(ApiKey, f"KEYS#{actor_id}", index="lists")

    def update_api_key(self, key: ApiKey) -> None:
        self._update_pair(*self._key_items(key))

    # ------------------------------------------------------------------ pools and queues
    @staticmethod
    def _pool_items(pool: WorkPool) -> tuple[Item, Item]:
        return (doc_item(pool, f"WS#{pool.workspace_id}", f"POOL#{pool.name}"),
                doc_item(pool, f"POOL#{pool.id}", "POOL", G5PK="POOLS", G5SK=f"{pool.workspace_id}#{pool.name}"))

    @staticmethod
    def _queue_items(queue: WorkQueue) -> tuple[Item, Item]:
        return (doc_item(queue, f"POOL#{queue.pool_id}", f"QUEUE#{queue.name}"),
                doc_item(queue, f"QUEUE#{queue.id}", "QUEUE"))

    def create_work_pool(self, pool: WorkPool, default_queue: WorkQueue) -> WorkPool:
        queue_by_name, queue_by_id = self._queue_items(default_queue)
        self._create_pair(*self._pool_items(pool), f"Work pool {pool.name!r}",
                          put_action(queue_by_name, _NEW), put_action(queue_by_id, _NEW))
        return pool

    def get_work_pool(self, workspace_id: str, name: str) -> WorkPool | None:
        return self._get(WorkPool, f"WS#{workspace_id}", f"POOL#{name}")

    def get_work_pool_by_id(self, workspace_id: str, pool_id: str) -> WorkPool | None:
        pool = self._get(WorkPool, f"POOL#{pool_id}", "POOL")
        return pool if pool and pool.workspace_id == workspace_id else None

    def list_work_pools(self, workspace_id: str) -> list[WorkPool]:
        return self._list(WorkPool, f"WS#{workspace_id}", "POOL#")

    def list_all_work_pools(self) -> list[WorkPool]:
        return self._list(WorkPool, "POOLS", index="lists")

    def update_work_pool(self, pool: WorkPool) -> None:
        self._update_pair(*self._pool_items(pool))

    def delete_work_pool(self, workspace_id: str, pool_id: str) -> None:
        pool = self.get_work_pool_by_id(workspace_id, pool_id)
        if pool is None:
            return
        for queue in self.list_work_queues(workspace_id, pool_id):
            self.table.delete_many([(f"POOL#{pool_id}", f"QUEUE#{queue.name}"), (f"QUEUE#{queue.id}", "QUEUE")])
        self.table.delete_many([(f"WS#{workspace_id}", f"POOL#{pool.name}"), (f"POOL#{pool_id}", "POOL")])
        self._delete_unstarted_runs(pool_id=pool_id)

    def create_work_queue(self, queue: WorkQueue) -> WorkQueue:
        self._create_pair(*self._queue_items(queue), f"Work queue {queue.name!r}")
        return queue

    def get_work_queue(self, workspace_id: str, pool_id: str, name: str) -> WorkQueue | None:
        queue = self._get(WorkQueue, f"POOL#{pool_id}", f"QUEUE#{name}")
        return queue if queue and queue.workspace_id == workspace_id else None

    def get_work_queue_by_id(self, workspace_id: str, queue_id: str) -> WorkQueue | None:
        queue = self._get(WorkQueue, f"QUEUE#{queue_id}", "QUEUE")
        return queue if queue and queue.workspace_id == workspace_id else None

    def list_work_queues(self, workspace_id: str, pool_id: str) -> list[WorkQueue]:
        queues = [q for q in self._list(WorkQueue, f"POOL#{pool_id}", "QUEUE#") if q.workspace_id == workspace_id]
        return sorted(queues, key=lambda q: (q.priority, q.name))

    def update_work_queue(self, queue: WorkQueue) -> None:
        self._update_pair(*self._queue_items(queue))

    def delete_work_queue(self, workspace_id: str, queue_id: str) -> None:
        queue = self.get_work_queue_by_id(workspace_id, queue_id)
        if queue is None:
            return
        self.table.delete_many([(f"POOL#{queue.pool_id}", f"QUEUE#{queue.name}"), (f"QUEUE#{queue_id}", "QUEUE")])
        self._delete_unstarted_runs(pool_id=queue.pool_id, queue_id=queue_id)

    # ------------------------------------------------------------------ blocks
    @staticmethod
    def _block_items(block: Block) -> tuple[Item, Item]:
        return (doc_item(block, f"WS#{block.workspace_id}", f"BLOCK#{block.name}"),
                doc_item(block, f"BLOCK#{block.id}", "BLOCK"))

    def create_block(self, block: Block) -> Block:
        self._create_pair(*self._block_items(block), f"Block {block.name!r}")
        return block

    def get_block(self, workspace_id: str, name: str) -> Block | None:
        return self._get(Block, f"WS#{workspace_id}", f"BLOCK#{name}")

    def list_blocks(self, workspace_id: str) -> list[Block]:
        return self._list(Block, f"WS#{workspace_id}", "BLOCK#")

    def update_block(self, block: Block) -> None:
        self._update_pair(*self._block_items(block))

    def delete_block(self, workspace_id: str, block_id: str) -> None:
        block = self._get(Block, f"BLOCK#{block_id}", "BLOCK")
        if block and block.workspace_id == workspace_id:
            self.table.delete_many([(f"WS#{workspace_id}", f"BLOCK#{block.name}"), (f"BLOCK#{block_id}", "BLOCK")])

    # ------------------------------------------------------------------ deployments
    @staticmethod
    def _deployment_items(d: Deployment) -> tuple[Item, Item]:
        scheduled = not d.paused and any(s.active for s in d.schedules)
        extra = {"G5PK": "SCHEDULED_DEPLOYMENTS", "G5SK": d.id} if scheduled else {}
        limit, strategy = claim_limits(d)  # as the claim applies them
        limits = {"concurrency_limit": limit, "collision_strategy": strategy}
        return (doc_item(d, f"WS#{d.workspace_id}", deployment_sort_key(d.flow_name, d.name)),
                doc_item(d, f"DEPLOY#{d.id}", "DEPLOY", **extra, **limits))

    def create_deployment(self, deployment: Deployment) -> Deployment:
        self._create_pair(*self._deployment_items(deployment), f"Deployment {deployment.full_name!r}")
        return deployment

    def get_deployment(self, workspace_id: str, deployment_id: str) -> Deployment | None:
        deployment = self._get(Deployment, f"DEPLOY#{deployment_id}", "DEPLOY")
        return deployment if deployment and deployment.workspace_id == workspace_id else None

    def get_deployment_by_name(self, workspace_id: str, flow_name: str, name: str) -> Deployment | None:
        return self._get(Deployment, f"WS#{workspace_id}", deployment_sort_key(flow_name, name))

    def list_deployments(self, workspace_id: str, pool_id: str | None = None) -> list[Deployment]:
        deployments = self._list(Deployment, f"WS#{workspace_id}", "DEP#")
        if pool_id is not None:
            deployments = [d for d in deployments if d.pool_id == pool_id]
        return sorted(deployments, key=lambda d: (d.flow_name, d.name))

    def list_deployment_summaries(self, workspace_id: str) -> list[DeploymentSummary]:
        return [DeploymentSummary.of(d) for d in self.list_deployments(workspace_id)]

    def list_scheduled_deployments(self) -> list[Deployment]:
        return self._list(Deployment, "SCHEDULED_DEPLOYMENTS", index="lists")

    def update_deployment(self, deployment: Deployment) -> None:
        self._update_pair(*self._deployment_items(deployment))

    def delete_deployment(self, workspace_id: str, deployment_id: str) -> None:
        deployment = self.get_deployment(workspace_id, deployment_id)
        if deployment is None:
            return
        self.table.delete_many([
            (f"WS#{workspace_id}", deployment_sort_key(deployment.flow_name, deployment.name)),
            (f"DEPLOY#{deployment_id}", "DEPLOY"),
        ])
        self._delete_unstarted_runs(deployment_id=deployment_id)

    def _deployment_limits(self, deployment_id: str) -> tuple[int | None, str]:
        item = self.table.get(f"DEPLOY#{deployment_id}", "DEPLOY")
        if item is None:
            return None, "ENQUEUE"
        plain = from_attrs(item)
        return plain.get("concurrency_limit"), plain.get("collision_strategy", "ENQUEUE")
