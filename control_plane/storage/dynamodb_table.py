"""A thin, typed layer over one DynamoDB table: get, put, paged query, transactions, batch delete.

boto3 is imported here, when a :class:`Table` is made, never when the module is
imported (the Lambda handler imports storage modules on every cold start).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pushpool.control_plane.errors import ConfigurationError, PushpoolError
from pushpool.control_plane.storage.dynamodb_schema import key, table_definition

Item = dict[str, dict[str, Any]]


class StorageUnavailable(PushpoolError):
    """DynamoDB answered with an error the store cannot handle (throttled past retries, access denied)."""

    http_status = 503


class TransactionFailed(Exception):
    """A transaction was cancelled; ``reasons[i]`` is the code for the i-th action (``"None"`` if it was fine)."""

    def __init__(self, reasons: list[str]) -> None:
        super().__init__(", ".join(reasons))
        self.reasons = reasons

    def failed(self, index: int) -> bool:
        return index < len(self.reasons) and self.reasons[index] not in ("None", "")


class Table:
    def __init__(self, table_name: str, *, region: str | None = None, endpoint_url: str | None = None,
                 session: Any = None) -> None:
        import boto3
        from botocore.config import Config

        self.name = table_name
        self.client = (session or boto3.session.Session()).client(
            "dynamodb", region_name=region, endpoint_url=endpoint_url,
            config=Config(retries={"mode": "standard", "max_attempts": 8}, max_pool_connections=32),
        )
        from botocore.exceptions import BotoCoreError, ClientError

        #: What a call can raise: the service's answer, or no answer (no credentials, no connection).
        self._client_error = (ClientError, BotoCoreError)

    # ------------------------------------------------------------------ lifecycle
    def create_if_missing(self) -> None:
        """Create the table (tests, local runs); the CloudFormation stack creates it in production."""
        try:
            self.client.describe_table(TableName=self.name)
            return
        except self._client_error as exc:
            if _code(exc) != "ResourceNotFoundException":
                raise self._translate(exc) from exc
        self.client.create_table(**table_definition(self.name))
        self.client.get_waiter("table_exists").wait(TableName=self.name, WaiterConfig={"Delay": 1})

    # ------------------------------------------------------------------ reads
    def get(self, pk: str, sk: str) -> Item | None:
        try:
            answer = self.client.get_item(TableName=self.name, Key=key(pk, sk), ConsistentRead=True)
        except self._client_error as exc:
            raise self._translate(exc) from exc
        return answer.get("Item")

    def query(self, pk: str, *, sk_prefix: str | None = None, sk_between: tuple[str, str] | None = None,
              index: str | None = None, forward: bool = True, page_size: int | None = None,
              pk_name: str = "PK", sk_name: str = "SK", attributes: tuple[str, ...] | None = None) -> Iterator[Item]:
        """Every item of a partition (or an index partition), page by page, in sort-key order (only
        ``attributes`` of each, when given)."""
        condition = "#pk = :pk"
        values: dict[str, Any] = {":pk": {"S": pk}}
        names = {"#pk": pk_name}
        if sk_prefix is not None:
            condition += " AND begins_with(#sk, :prefix)"
            values[":prefix"] = {"S": sk_prefix}
            names["#sk"] = sk_name
        elif sk_between is not None:
            condition += " AND #sk BETWEEN :low AND :high"
            values[":low"], values[":high"] = {"S": sk_between[0]}, {"S": sk_between[1]}
            names["#sk"] = sk_name
        request: dict[str, Any] = {
            "TableName": self.name, "KeyConditionExpression": condition, "ExpressionAttributeValues": values,
            "ExpressionAttributeNames": names, "ScanIndexForward": forward,
        }
        if index is None:
            request["ConsistentRead"] = True
        else:
            request["IndexName"] = index
        if page_size:
            request["Limit"] = page_size
        if attributes:
            names.update({f"#a{i}": name for i, name in enumerate(attributes)})
            request["ProjectionExpression"] = ", ".join(f"#a{i}" for i in range(len(attributes)))
        yield from self._pages(self.client.query, request)

    def scan(self, filter_expression: str, values: dict[str, Any]) -> Iterator[Item]:
        """Every matching item of the whole table, page by page: only for one-off upgrades, never a request."""
        yield from self._pages(self.client.scan, {"TableName": self.name, "FilterExpression": filter_expression,
                                                  "ExpressionAttributeValues": values, "ConsistentRead": True})

    def _pages(self, operation: Any, request: dict[str, Any]) -> Iterator[Item]:
        while True:
            try:
                answer = operation(**request)
            except self._client_error as exc:
                raise self._translate(exc) from exc
            yield from answer.get("Items", [])
            if "LastEvaluatedKey" not in answer:
                return
            request["ExclusiveStartKey"] = answer["LastEvaluatedKey"]

    def batch_get(self, keys: list[tuple[str, str]]) -> list[Item]:
        found: list[Item] = []
        for start in range(0, len(keys), 100):
            pending: dict[str, Any] = {self.name: {"Keys": [key(pk, sk) for pk, sk in keys[start:start + 100]],
                                                   "ConsistentRead": True}}
            while pending:
                try:
                    answer = self.client.batch_get_item(RequestItems=pending)
                except self._client_error as exc:
                    raise self._translate(exc) from exc
                found.extend(answer.get("Responses", {}).get(self.name, []))
                pending = answer.get("UnprocessedKeys") or {}
        return found

    # ------------------------------------------------------------------ writes
    def put(self, item: Item, *, condition: str | None = None, values: dict[str, Any] | None = None) -> bool:
        """Write ``item``; ``False`` when ``condition`` does not hold."""
        request: dict[str, Any] = {"TableName": self.name, "Item": item}
        if condition:
            request["ConditionExpression"] = condition
        if values:
            request["ExpressionAttributeValues"] = values
        try:
            self.client.put_item(**request)
        except self._client_error as exc:
            if _code(exc) == "ConditionalCheckFailedException":
                return False
            raise self._translate(exc) from exc
        return True

    def delete(self, pk: str, sk: str) -> bool:
        """Delete one item; ``True`` when there was one (one request: DynamoDB returns what it deleted)."""
        try:
            answer = self.client.delete_item(TableName=self.name, Key=key(pk, sk), ReturnValues="ALL_OLD")
        except self._client_error as exc:
            raise self._translate(exc) from exc
        return "Attributes" in answer

    def update(self, pk: str, sk: str, expression: str, values: dict[str, Any]) -> None:
        try:
            self.client.update_item(TableName=self.name, Key=key(pk, sk), UpdateExpression=expression,
                                    ExpressionAttributeValues=values)
        except self._client_error as exc:
            raise self._translate(exc) from exc

    def update_counter(self, pk: str, sk: str, attribute: str, amount: int, *, at_most: int) -> bool:
        """Add ``amount`` to a number attribute (0 when missing) unless the sum would pass ``at_most``."""
        try:
            self.client.update_item(
                TableName=self.name, Key=key(pk, sk), UpdateExpression="ADD #n :amount",
                ConditionExpression="attribute_not_exists(#n) OR #n <= :room",
                ExpressionAttributeNames={"#n": attribute},
                ExpressionAttributeValues={":amount": {"N": str(amount)}, ":room": {"N": str(at_most - amount)}})
        except self._client_error as exc:
            if _code(exc) == "ConditionalCheckFailedException":
                return False
            raise self._translate(exc) from exc
        return amount <= at_most

    def transact(self, actions: list[dict[str, Any]]) -> None:
        """One ``TransactWriteItems``; raises :class:`TransactionFailed` with per-action reasons."""
        for action in actions:
            body = next(iter(action.values()))
            body.setdefault("TableName", self.name)
        try:
            self.client.transact_write_items(TransactItems=actions)
        except self._client_error as exc:
            if _code(exc) in ("TransactionCanceledException", "TransactionConflictException"):
                reasons = [r.get("Code", "None") for r in exc.response.get("CancellationReasons", [])]
                raise TransactionFailed(reasons or ["TransactionConflict"]) from exc
            raise self._translate(exc) from exc

    def put_many(self, items: list[Item]) -> None:
        """Unconditional puts."""
        self._batch_write([{"PutRequest": {"Item": item}} for item in items])

    def delete_many(self, keys: list[tuple[str, str]]) -> None:
        self._batch_write([{"DeleteRequest": {"Key": key(pk, sk)}} for pk, sk in keys])

    def _batch_write(self, requests: list[dict[str, Any]]) -> None:
        """25 requests to a ``BatchWriteItem``, retrying what comes back unprocessed."""
        for start in range(0, len(requests), 25):
            pending: dict[str, Any] = {self.name: requests[start:start + 25]}
            while pending:
                try:
                    answer = self.client.batch_write_item(RequestItems=pending)
                except self._client_error as exc:
                    raise self._translate(exc) from exc
                pending = answer.get("UnprocessedItems") or {}

    # ------------------------------------------------------------------ errors
    def _translate(self, exc: Exception) -> PushpoolError:
        code = _code(exc)
        if not code:
            return ConfigurationError(f"DynamoDB table {self.name!r} cannot be reached: {exc}")
        if code == "ResourceNotFoundException":
            return ConfigurationError(
                f"DynamoDB table {self.name!r} does not exist: deploy the stack (pushpool control-plane deploy) "
                "or set PUSHPOOL_DYNAMODB_TABLE")
        if code in ("AccessDeniedException", "UnrecognizedClientException"):
            return ConfigurationError(f"Access to DynamoDB table {self.name!r} was denied ({code})")
        return StorageUnavailable(f"DynamoDB error {code}: try again")


def _code(exc: Any) -> str:
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))
