"""What DynamoDB would bill for the requests a store makes: write and read request units, computed from the
items themselves, because moto does not compute them (it answers a fixed ``ConsumedCapacity``).

The rules are DynamoDB's published ones (developer guide: "Read/write capacity mode", "Item sizes", "Global
secondary indexes: write and read considerations"):

* an item's size is the UTF-8 length of each attribute's name plus its value (a number: about one byte per two
  significant digits, plus one; a boolean one byte);
* a write costs one unit per started KiB of the larger of the item before and after it; a delete, of the item
  deleted; in ``TransactWriteItems`` twice that; a write whose condition fails costs the same (without the index
  writes, since nothing changed);
* each global secondary index the item is in before or after the write costs one more write per started KiB of
  the index entry (the table's and the index's keys plus the projected attributes): one for an entry added,
  removed or changed; two when the index key changed (a delete and a put); none when the write changed no
  projected attribute;
* a read costs one unit per started 4 KiB (a query: of all the items it read, per page), half for an eventually
  consistent read (every index query), twice in a transaction; a ``GetItem`` that finds nothing costs the
  minimum.

The meter wraps one boto3 client; to see an item before and after a write it reads with a second client of its
own, which it does not count. Single-threaded use only (a write's before/after reads are not atomic with it).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

Item = dict[str, dict[str, Any]]

WRITE_UNIT_BYTES = 1024
READ_UNIT_BYTES = 4096
#: Published on-demand prices (us-east-1, late 2026): dollars per million units.
WRITE_PRICE_PER_MILLION = 0.625
READ_PRICE_PER_MILLION = 0.125


def value_size(value: dict[str, Any]) -> int:
    (kind, inner), = value.items()
    if kind == "S":
        return len(inner.encode())
    if kind == "N":
        digits = inner.lstrip("-").replace(".", "").strip("0") or "0"
        return (len(digits) + 1) // 2 + 1
    if kind == "B":
        return len(inner)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "L":
        return 3 + sum(1 + value_size(v) for v in inner)
    if kind == "M":
        return 3 + sum(1 + len(k.encode()) + value_size(v) for k, v in inner.items())
    if kind in ("SS", "NS", "BS"):
        return sum(value_size({kind[0]: v}) for v in inner)
    raise ValueError(f"unknown attribute type {kind}")


def item_size(item: Item | None) -> int:
    return sum(len(name.encode()) + value_size(value) for name, value in (item or {}).items())


@dataclass(frozen=True)
class Index:
    name: str
    pk: str
    sk: str
    #: ``None``: every attribute is projected (ALL); else the non-key attributes projected (INCLUDE / KEYS_ONLY).
    projected: frozenset[str] | None

    def entry(self, item: Item | None) -> Item | None:
        """The index's entry for ``item``, or ``None`` when the item is not in this (sparse) index."""
        if not item or self.pk not in item or self.sk not in item:
            return None
        if self.projected is None:
            return item
        keep = {"PK", "SK", self.pk, self.sk} | self.projected
        return {name: value for name, value in item.items() if name in keep}


@dataclass
class Totals:
    write_units: float = 0.0
    read_units: float = 0.0
    #: Write units by what was written ("RUN", "STATE", "EVENTS", "index:due", ...), read units by request.
    writes_by: Counter[str] = field(default_factory=Counter)
    reads_by: Counter[str] = field(default_factory=Counter)
    requests: Counter[str] = field(default_factory=Counter)

    def dollars_per_million(self, runs: int = 1) -> float:
        return (self.write_units * WRITE_PRICE_PER_MILLION + self.read_units * READ_PRICE_PER_MILLION) / runs


def item_kind(key: Item) -> str:
    """A short name for what an item is, from its key (``RUN#id``/``RUN`` → ``RUN``, ``RUN#id``/``STATE#..`` →
    ``STATE``, ``EVENTS#ws``/... → ``EVENTS``)."""
    pk, sk = key["PK"]["S"], key["SK"]["S"]
    head = pk.split("#", 1)[0]
    tail = sk.split("#", 1)[0]
    return tail if head == "RUN" else head


class CapacityMeter:
    """Counts the units of every request made through ``client`` to ``table`` (see the module docstring)."""

    def __init__(self, client: Any, table: str) -> None:
        import boto3

        self.client, self.table = client, table
        meta = client.meta
        self._raw = boto3.session.Session().client(
            "dynamodb", region_name=meta.region_name, endpoint_url=meta.endpoint_url)
        described = self._raw.describe_table(TableName=table)["Table"]
        self.indexes = [_index(g) for g in described.get("GlobalSecondaryIndexes", [])]
        self.phases: dict[str, Totals] = {}
        self._phase = "other"
        self._original = client._make_api_call
        client._make_api_call = self._call

    def detach(self) -> None:
        self.client._make_api_call = self._original

    @contextmanager
    def phase(self, name: str) -> Iterator[Totals]:
        before, self._phase = self._phase, name
        try:
            yield self.phases.setdefault(name, Totals())
        finally:
            self._phase = before

    @property
    def totals(self) -> Totals:
        return self.phases.setdefault(self._phase, Totals())

    # ------------------------------------------------------------------ the wrapped call
    def _call(self, operation: str, params: dict[str, Any]) -> Any:
        totals = self.totals
        totals.requests[operation] += 1
        writes = self._writes(operation, params)
        before = [self._get(key) for key, _ in writes]
        try:
            answer = self._original(operation, params)
        except Exception as exc:
            if _code(exc) in ("ConditionalCheckFailedException", "TransactionCanceledException"):
                for (key, transactional), item in zip(writes, before, strict=True):
                    self._charge_write(totals, key, item, item, transactional, changed=False)
            raise
        for (key, transactional), item in zip(writes, before, strict=True):
            self._charge_write(totals, key, item, self._get(key), transactional, changed=True)
        self._charge_read(totals, operation, params, answer)
        return answer

    def _writes(self, operation: str, params: dict[str, Any]) -> list[tuple[Item, bool]]:
        """The keys a request writes, each with whether it is part of a transaction."""
        if operation == "PutItem":
            return [(self._key(params["Item"]), False)]
        if operation in ("UpdateItem", "DeleteItem"):
            return [(params["Key"], False)]
        if operation == "BatchWriteItem":
            found = []
            for request in params["RequestItems"].get(self.table, []):
                body = request.get("PutRequest") or request["DeleteRequest"]
                found.append((self._key(body["Item"]) if "Item" in body else body["Key"], False))
            return found
        if operation == "TransactWriteItems":
            found = []
            for action in params["TransactItems"]:
                (kind, body), = action.items()
                found.append((self._key(body["Item"]) if kind == "Put" else body["Key"], True))
            return found
        return []

    def _charge_write(self, totals: Totals, key: Item, before: Item | None, after: Item | None,
                      transactional: bool, *, changed: bool) -> None:
        size = max(item_size(before), item_size(after))
        units = max(1, math.ceil(size / WRITE_UNIT_BYTES)) * (2 if transactional else 1)
        totals.write_units += units
        totals.writes_by[item_kind(key)] += units
        if not changed:
            return
        for index in self.indexes:
            old, new = index.entry(before), index.entry(after)
            if old is None and new is None:
                continue
            if old is not None and new is not None:
                if (old[index.pk], old[index.sk]) != (new[index.pk], new[index.sk]):
                    units = _write_units(old) + _write_units(new)
                elif old != new:
                    units = _write_units(old if item_size(old) > item_size(new) else new)
                else:
                    units = 0
            else:
                units = _write_units(old if old is not None else new)
            totals.write_units += units
            totals.writes_by[f"index:{index.name}"] += units

    def _charge_read(self, totals: Totals, operation: str, params: dict[str, Any], answer: dict[str, Any]) -> None:
        consistent = 1.0 if params.get("ConsistentRead") else 0.5
        if operation == "GetItem":
            units = _read_units(item_size(answer.get("Item"))) * consistent
        elif operation == "BatchGetItem":
            request = params["RequestItems"].get(self.table, {})
            factor = 1.0 if request.get("ConsistentRead") else 0.5
            sizes = {_key_text(self._key(i)): item_size(i) for i in answer.get("Responses", {}).get(self.table, [])}
            units = sum(_read_units(sizes.get(_key_text(k), 0)) * factor for k in request.get("Keys", []))
        elif operation in ("Query", "Scan"):
            units = _read_units(sum(item_size(i) for i in self._read_items(operation, params, answer))) * consistent
        else:
            return
        totals.read_units += units
        totals.reads_by[operation if "IndexName" not in params else f"Query:{params['IndexName']}"] += units

    def _read_items(self, operation: str, params: dict[str, Any], answer: dict[str, Any]) -> list[Item]:
        """What a query read (a projection expression cuts what comes back, not what is read and billed)."""
        if "ProjectionExpression" not in params:
            return answer.get("Items", [])
        full = {k: v for k, v in params.items() if k != "ProjectionExpression"}
        full["ExpressionAttributeNames"] = {k: v for k, v in params["ExpressionAttributeNames"].items()
                                            if not k.startswith("#a")}
        return getattr(self._raw, _snake(operation))(**full).get("Items", [])

    # ------------------------------------------------------------------ helpers
    def _key(self, item: Item) -> Item:
        return {"PK": item["PK"], "SK": item["SK"]}

    def _get(self, key: Item) -> Item | None:
        return self._raw.get_item(TableName=self.table, Key=key, ConsistentRead=True).get("Item")


def _index(described: dict[str, Any]) -> Index:
    keys = {k["KeyType"]: k["AttributeName"] for k in described["KeySchema"]}
    projection = described.get("Projection", {})
    projected = None if projection.get("ProjectionType", "ALL") == "ALL" else frozenset(
        projection.get("NonKeyAttributes", []))
    return Index(described["IndexName"], keys["HASH"], keys["RANGE"], projected)


def _write_units(entry: Item) -> int:
    return max(1, math.ceil(item_size(entry) / WRITE_UNIT_BYTES))


def _read_units(size: int) -> int:
    return max(1, math.ceil(size / READ_UNIT_BYTES))


def _key_text(key: Item) -> str:
    return f"{key['PK']['S']}|{key['SK']['S']}"


def _snake(operation: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in operation).lstrip("_")


def _code(exc: Exception) -> str:
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))
