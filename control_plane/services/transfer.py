"""Moving workspaces between stores (SQLite → PostgreSQL, either ↔ DynamoDB): ``pushpool server export|import``.

An export is JSON Lines: a header (format, version, when, the cipher check), then one record per line, ``{"kind":
..., "record": ...}``, parents before children. It holds what a team needs to go on where it left off: the
workspace, its members and service accounts with their API keys (as hashes: the keys people hold keep working),
pools and queues, blocks (still encrypted: their ciphertext is copied as it is), deployments with their
schedules, variables, concurrency limits, webhooks, automations, backfills and flow runs in their current state.
Not carried: a run's state history, task runs, logs and events (the store's retention ends them anyway), run
tokens (a run that is going on gets a new one when it next reports... it cannot: finish or cancel runs first).

Blocks are encrypted with the source's key and run tokens signed with it, so by default the target must run with
the same ``PUSHPOOL_ENCRYPTION_KEY``; the header's cipher check (a digest of a key derived from the cipher) lets
import refuse a target with another key before it writes anything. Between stores with different keys (a KMS-keyed
DynamoDB stack and PostgreSQL replicas with a Fernet key, or a new key on purpose), export with a *transfer key*:
each block is decrypted with the source's cipher and encrypted again with that one-off Fernet key, so the file still
holds no secret in clear; import decrypts with the transfer key and encrypts with the target's cipher. The header
carries the transfer key's check instead. Import is idempotent: a record that is already there (same id) is left as
it is and counted as skipped.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel

from pushpool.control_plane.backfill_models import Backfill
from pushpool.control_plane.errors import AlreadyExists, InvalidInput, NotFound
from pushpool.control_plane.event_models import Automation, Webhook
from pushpool.control_plane.models import (
    Actor,
    ApiKey,
    Block,
    ConcurrencyLimit,
    Deployment,
    FlowRun,
    FlowRunFilter,
    Membership,
    Variable,
    WorkPool,
    WorkQueue,
    Workspace,
)
from pushpool.control_plane.services.crypto import Cipher, key_check
from pushpool.control_plane.storage.base import Store

FORMAT, VERSION = "pushpool-export", 1
#: The order records are written and imported in (a record's parents come first).
KINDS: dict[str, type[BaseModel]] = {
    "workspace": Workspace, "actor": Actor, "membership": Membership, "api_key": ApiKey, "work_pool": WorkPool,
    "work_queue": WorkQueue, "block": Block, "deployment": Deployment, "variable": Variable,
    "concurrency_limit": ConcurrencyLimit, "webhook": Webhook, "automation": Automation, "backfill": Backfill,
    "flow_run": FlowRun,
}
RUN_PAGE = 500


def export_workspace(store: Store, cipher: Cipher, name: str,
                     transfer: Cipher | None = None) -> Iterator[dict[str, Any]]:
    """The export of workspace ``name`` (id or name), line by line: the header, then the records. With ``transfer``
    (a cipher of a one-off transfer key) blocks are encrypted again with it, for a target with another key."""
    workspace = store.get_workspace(name)
    if workspace is None:
        known = ", ".join(w.name for w in store.list_workspaces()) or "none"
        raise NotFound(f"--workspace: no workspace {name!r} in this store (workspaces: {known})")
    header = {"format": FORMAT, "version": VERSION, "exported": datetime.now(UTC).isoformat(),
              "workspace": workspace.name}
    header.update({"transfer_check": key_check(transfer)} if transfer else {"cipher_check": key_check(cipher)})
    yield header

    def record(kind: str, model: BaseModel) -> dict[str, Any]:
        return {"kind": kind, "record": model.model_dump(mode="json")}

    ws = workspace.id
    yield record("workspace", workspace)
    members = store.list_members(ws)
    actors = [a for a in (store.get_actor(m.actor_id) for m in members) if a is not None]
    actors += [a for a in store.list_service_accounts(ws) if a.id not in {x.id for x in actors}]
    for actor in actors:
        yield record("actor", actor)
    for membership in members:
        yield record("membership", membership)
    for actor in actors:
        for key in store.list_api_keys(actor.id):
            yield record("api_key", key)
    for pool in store.list_work_pools(ws):
        yield record("work_pool", pool)
        for queue in store.list_work_queues(ws, pool.id):
            yield record("work_queue", queue)
    for block in store.list_blocks(ws):
        if transfer is not None:
            block = block.model_copy(update={"ciphertext": transfer.encrypt(cipher.decrypt(block.ciphertext))})
        yield record("block", block)
    for deployment in store.list_deployments(ws):
        yield record("deployment", deployment)
    for variable in store.list_variables(ws):
        yield record("variable", variable)
    for limit in store.list_concurrency_limits(ws):
        yield record("concurrency_limit", limit)
    for webhook in store.list_webhooks(ws):
        yield record("webhook", webhook)
    for automation in store.list_automations(ws):
        yield record("automation", automation)
    for backfill in store.list_backfills(ws, limit=10_000):
        yield record("backfill", backfill)
    flt = FlowRunFilter(sort="scheduled_asc")
    cursor: str | None = None
    while True:
        runs, cursor = store.page_flow_runs(ws, flt.model_copy(update={"after": cursor}), limit=RUN_PAGE)
        for run in runs:
            yield record("flow_run", run)
        if cursor is None:
            break


def read_export(lines: Iterable[str]) -> tuple[dict[str, Any], list[tuple[str, BaseModel]]]:
    """(header, records) of an export; a malformed one is an InvalidInput naming the line."""
    header: dict[str, Any] | None = None
    records: list[tuple[str, BaseModel]] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except ValueError:
            raise InvalidInput(f"line {number}: not JSON") from None
        if header is None:
            if item.get("format") != FORMAT or item.get("version") != VERSION:
                raise InvalidInput(f"line {number}: not a {FORMAT} file of version {VERSION}")
            header = item
            continue
        model = KINDS.get(item.get("kind"))
        if model is None:
            raise InvalidInput(f"line {number}: unknown record kind {item.get('kind')!r}")
        try:
            records.append((item["kind"], model.model_validate(item["record"])))
        except Exception as exc:  # noqa: BLE001 - pydantic's message names the field
            raise InvalidInput(f"line {number}: {item['kind']} record is not valid ({exc})") from None
    if header is None:
        raise InvalidInput("the file is empty: nothing to import")
    return header, records


def import_records(store: Store, cipher: Cipher, header: dict[str, Any], records: list[tuple[str, BaseModel]],
                   transfer: Cipher | None = None) -> dict[str, Counter]:
    """Write ``records`` into ``store``; {"imported": Counter by kind, "skipped": Counter by kind}. An export made
    with a transfer key needs ``transfer``, its cipher: its blocks are encrypted again with ``cipher``."""
    plain: dict[int, Any] = {}
    if "transfer_check" in header:
        if transfer is None or header["transfer_check"] != key_check(transfer):
            raise InvalidInput("the export's blocks are encrypted with a transfer key: give the file it was exported "
                               "with (--transfer-key-file)" + (", not another one" if transfer else ""))
        # Every block is decrypted before anything is written (a damaged one stops the import at its start) and
        # encrypted with the store's key only when it is written: a block already there costs no KMS call.
        plain = {id(record): transfer.decrypt(record.ciphertext) for kind, record in records if kind == "block"}
    elif header.get("cipher_check") != key_check(cipher):
        raise InvalidInput("the export's blocks were encrypted (and its run tokens signed) with another key: run the "
                           "import with PUSHPOOL_ENCRYPTION_KEY set to the key of the store it came from, or export "
                           "again with --transfer-key-file")
    imported, skipped = Counter(), Counter()
    queues = [r for kind, r in records if kind == "work_queue"]

    def finish(record: Any) -> Any:
        if id(record) not in plain:
            return record
        return record.model_copy(update={"ciphertext": cipher.encrypt(plain[id(record)])})

    for kind, record in records:
        try:
            done = _write(store, kind, record, queues, finish)
        except AlreadyExists:
            done = False
        (imported if done else skipped)[kind] += 1
    return {"imported": imported, "skipped": skipped}


#: kind → (is it in the store already?, write it). A record is matched by its id, or by the name its kind is
#: unique by where the store looks records up by name.
_STEPS: dict[str, tuple[Any, Any]] = {
    "workspace": (lambda s, r: s.get_workspace(r.id), lambda s, r: s.create_workspace(r)),
    "actor": (lambda s, r: s.get_actor(r.id), lambda s, r: s.create_actor(r)),
    "membership": (lambda s, r: s.get_membership(r.workspace_id, r.actor_id), lambda s, r: s.set_membership(r)),
    "api_key": (lambda s, r: s.get_api_key(r.id), lambda s, r: s.create_api_key(r)),
    "work_queue": (lambda s, r: s.get_work_queue_by_id(r.workspace_id, r.id), lambda s, r: s.create_work_queue(r)),
    "block": (lambda s, r: s.get_block(r.workspace_id, r.name), lambda s, r: s.create_block(r)),
    "deployment": (lambda s, r: s.get_deployment(r.workspace_id, r.id), lambda s, r: s.create_deployment(r)),
    "variable": (lambda s, r: s.get_variable(r.workspace_id, r.name), lambda s, r: s.put_variable(r)),
    # a limit is saved conditionally on its version: a new one is written as version 0
    "concurrency_limit": (lambda s, r: s.get_concurrency_limit(r.workspace_id, r.tag),
                          lambda s, r: s.save_concurrency_limits([r.model_copy(update={"version": 0})])),
    "webhook": (lambda s, r: s.get_webhook(r.workspace_id, r.name), lambda s, r: s.create_webhook(r)),
    "automation": (lambda s, r: s.get_automation(r.workspace_id, r.id), lambda s, r: s.create_automation(r)),
    "backfill": (lambda s, r: s.get_backfill(r.workspace_id, r.id), lambda s, r: s.create_backfill(r)),
}


def _write(store: Store, kind: str, record: Any, queues: list[Any], finish: Callable[[Any], Any]) -> bool:
    """Write one record, as ``finish`` makes it, unless it is there already; True when it was written."""
    if kind == "flow_run":
        return store.create_flow_runs_if_absent([record]) == 1
    if kind == "work_pool":  # a pool is made with its default queue (its other queues follow as work_queue)
        if store.get_work_pool_by_id(record.workspace_id, record.id) is not None:
            return False
        own = [q for q in queues if q.pool_id == record.id]
        default = next((q for q in own if q.name == "default"), own[0] if own else None)
        if default is None:
            raise InvalidInput(f"work pool {record.name!r} has no queue in the export")
        store.create_work_pool(record, default)
        return True
    exists, create = _STEPS[kind]
    if exists(store, record) is not None:
        return False
    create(store, finish(record))
    return True
