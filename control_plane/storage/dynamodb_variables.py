"""DynamoDB storage of workspace variables (items ``WS#ws / VAR#name``), tag concurrency limits (items
``WS#ws / TAGLIMIT#tag``, ``ver`` for conditional writes) and backfills (items ``WS#ws / BACKFILL#id``, ``ver``;
a RUNNING one is also in the ``lists`` index under ``BACKFILLS``), mixed into ``DynamoDbStore``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pushpool.control_plane.backfill_models import Backfill, BackfillState
from pushpool.control_plane.errors import AlreadyExists
from pushpool.control_plane.models import ConcurrencyLimit, Variable
from pushpool.control_plane.storage.dynamodb_schema import doc_item, put_action
from pushpool.control_plane.storage.dynamodb_table import TransactionFailed

if TYPE_CHECKING:
    from pushpool.control_plane.storage.dynamodb_table import Table


class DynamoVariablesMixin:
    """Variables and tag concurrency limits of :class:`~control_plane.storage.dynamodb.DynamoDbStore`."""

    if TYPE_CHECKING:
        table: Table

    def put_variable(self, variable: Variable) -> None:
        self.table.put(doc_item(variable, f"WS#{variable.workspace_id}", f"VAR#{variable.name}"))

    def get_variable(self, workspace_id: str, name: str) -> Variable | None:
        item = self.table.get(f"WS#{workspace_id}", f"VAR#{name}")
        return Variable.model_validate_json(item["doc"]["S"]) if item else None

    def list_variables(self, workspace_id: str) -> list[Variable]:
        return [Variable.model_validate_json(i["doc"]["S"])
                for i in self.table.query(f"WS#{workspace_id}", sk_prefix="VAR#")]

    def count_variables(self, workspace_id: str) -> int:
        return sum(1 for _ in self.table.query(f"WS#{workspace_id}", sk_prefix="VAR#"))

    def delete_variable(self, workspace_id: str, name: str) -> bool:
        return self.table.delete(f"WS#{workspace_id}", f"VAR#{name}")

    # ------------------------------------------------------------------ tag concurrency limits
    def get_concurrency_limit(self, workspace_id: str, tag: str) -> ConcurrencyLimit | None:
        item = self.table.get(f"WS#{workspace_id}", f"TAGLIMIT#{tag}")
        return ConcurrencyLimit.model_validate_json(item["doc"]["S"]) if item else None

    def list_concurrency_limits(self, workspace_id: str) -> list[ConcurrencyLimit]:
        return [ConcurrencyLimit.model_validate_json(i["doc"]["S"])
                for i in self.table.query(f"WS#{workspace_id}", sk_prefix="TAGLIMIT#")]

    def save_concurrency_limits(self, limits: list[ConcurrencyLimit]) -> bool:
        actions = []
        for limit in limits:  # each was read at ``version``; any other write meanwhile fails them all
            saved = limit.model_copy(update={"version": limit.version + 1})
            item = doc_item(saved, f"WS#{limit.workspace_id}", f"TAGLIMIT#{limit.tag}", ver=saved.version)
            action = put_action(item, "attribute_not_exists(PK)" if limit.version == 0 else "ver = :v")
            if limit.version:
                action["Put"]["ExpressionAttributeValues"] = {":v": {"N": str(limit.version)}}
            actions.append(action)
        try:
            self.table.transact(actions)
        except TransactionFailed:
            return False
        return True

    def delete_concurrency_limit(self, workspace_id: str, tag: str) -> bool:
        return self.table.delete(f"WS#{workspace_id}", f"TAGLIMIT#{tag}")

    # ------------------------------------------------------------------ backfills
    @staticmethod
    def _backfill_item(backfill: Backfill) -> dict:
        running = {"G5PK": "BACKFILLS", "G5SK": backfill.id} if backfill.state is BackfillState.RUNNING else {}
        return doc_item(backfill, f"WS#{backfill.workspace_id}", f"BACKFILL#{backfill.id}", ver=backfill.version,
                        **running)

    def create_backfill(self, backfill: Backfill) -> Backfill:
        try:
            self.table.transact([put_action(self._backfill_item(backfill), "attribute_not_exists(PK)")])
        except TransactionFailed as exc:
            raise AlreadyExists("Backfill already exists") from exc
        return backfill

    def get_backfill(self, workspace_id: str, backfill_id: str) -> Backfill | None:
        item = self.table.get(f"WS#{workspace_id}", f"BACKFILL#{backfill_id}")
        return Backfill.model_validate_json(item["doc"]["S"]) if item else None

    def list_backfills(self, workspace_id: str, deployment_id: str | None = None, limit: int = 100) -> list[Backfill]:
        found = []
        for item in self.table.query(f"WS#{workspace_id}", sk_prefix="BACKFILL#", forward=False):
            backfill = Backfill.model_validate_json(item["doc"]["S"])
            if deployment_id is None or backfill.deployment_id == deployment_id:
                found.append(backfill)
                if len(found) >= limit:
                    break
        return found

    def list_running_backfills(self, limit: int = 100) -> list[Backfill]:
        found = []
        for item in self.table.query("BACKFILLS", index="lists", pk_name="G5PK", sk_name="G5SK", page_size=limit):
            found.append(Backfill.model_validate_json(item["doc"]["S"]))
            if len(found) >= limit:
                break
        return found

    def save_backfill(self, backfill: Backfill) -> Backfill | None:
        saved = backfill.model_copy(update={"version": backfill.version + 1})
        action = put_action(self._backfill_item(saved), "ver = :v")
        action["Put"]["ExpressionAttributeValues"] = {":v": {"N": str(backfill.version)}}
        try:
            self.table.transact([action])
        except TransactionFailed:
            return None
        return saved
