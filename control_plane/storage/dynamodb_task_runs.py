"""DynamoDB storage of task runs (mixed into ``DynamoDbStore``): items ``RUN#flow-run / TASK#id``.

They live in their flow run's partition, so deleting the run (every item under ``RUN#id``)
deletes them, and listing them is one ``Query`` in id order (ids are time-ordered).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pushpool.control_plane.models import TaskRun
from pushpool.control_plane.storage.dynamodb_schema import HIGH, doc_item

if TYPE_CHECKING:
    from pushpool.control_plane.storage.dynamodb_table import Table


class DynamoTaskRunsMixin:
    """Task-run half of :class:`~control_plane.storage.dynamodb.DynamoDbStore`."""

    if TYPE_CHECKING:
        table: Table

    def save_task_runs(self, flow_run_id: str, task_runs: list[TaskRun], *, max_reports: int) -> bool:
        counted = self.table.update_counter(f"RUN#{flow_run_id}", "TASKREPORTS", "reports", len(task_runs),
                                            at_most=max_reports)
        if not counted:
            return False
        self.table.put_many([doc_item(t, f"RUN#{flow_run_id}", f"TASK#{t.id}") for t in task_runs])
        return True

    def list_task_runs(self, flow_run_id: str, *, after: str | None = None, limit: int = 1000) -> list[TaskRun]:
        found: list[TaskRun] = []
        low = f"TASK#{after}\x00" if after else "TASK#"
        for item in self.table.query(f"RUN#{flow_run_id}", sk_between=(low, f"TASK#{HIGH}"), page_size=limit):
            found.append(TaskRun.model_validate_json(item["doc"]["S"]))
            if len(found) >= limit:
                break
        return found
