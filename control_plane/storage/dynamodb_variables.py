"""DynamoDB storage of workspace variables (mixed into ``DynamoDbStore``): items ``WS#ws / VAR#name``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pushpool.control_plane.models import Variable
from pushpool.control_plane.storage.dynamodb_schema import doc_item

if TYPE_CHECKING:
    from pushpool.control_plane.storage.dynamodb_table import Table


class DynamoVariablesMixin:
    """Variables of :class:`~control_plane.storage.dynamodb.DynamoDbStore`."""

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
        existed = self.table.get(f"WS#{workspace_id}", f"VAR#{name}") is not None
        self.table.delete(f"WS#{workspace_id}", f"VAR#{name}")
        return existed
