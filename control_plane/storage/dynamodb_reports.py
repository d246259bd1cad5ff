"""DynamoDB storage of what a run's runner reports (mixed into ``DynamoDbStore``).

Task runs are items ``RUN#flow-run / TASK#id``, log chunks ``RUN#flow-run / LOG#seq`` (with an
``expires`` epoch for DynamoDB's TTL: the log retention). A chunk is kept compressed
(``docz``, zlib'd JSON): the largest batch the API takes is about 1 MB as JSON and an item
holds at most 400 KB; its lines' repeated fields compress away, and it carries at most 256 KiB
of text. Both live in their flow run's
partition, so deleting the run (every item under ``RUN#id``) deletes them, and listing them is
one ``Query`` in order (task-run ids are time-ordered; chunk numbers are zero-padded).
"""

from __future__ import annotations

import itertools
from datetime import datetime
from typing import TYPE_CHECKING

from pushpool.control_plane.models import LogChunk, TaskRun
from pushpool.control_plane.storage.dynamodb_packing import packed_item, read_doc
from pushpool.control_plane.storage.dynamodb_schema import HIGH, doc_item

if TYPE_CHECKING:
    from pushpool.control_plane.storage.dynamodb_table import Table


class DynamoReportsMixin:
    """Task runs and logs of :class:`~control_plane.storage.dynamodb.DynamoDbStore`."""

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
        low = f"TASK#{after}\x00" if after else "TASK#"
        items = self.table.query(f"RUN#{flow_run_id}", sk_between=(low, f"TASK#{HIGH}"), page_size=limit)
        return [TaskRun.model_validate_json(i["doc"]["S"]) for i in itertools.islice(items, limit)]

    # ------------------------------------------------------------------ logs
    def append_log_chunk(self, chunk: LogChunk, *, size: int, max_bytes: int, keep_until: datetime) -> bool:
        if not self.table.update_counter(f"RUN#{chunk.flow_run_id}", "LOGBYTES", "bytes", size, at_most=max_bytes):
            return False
        self.table.put(packed_item(chunk, f"RUN#{chunk.flow_run_id}", f"LOG#{chunk.seq:012d}",
                                   expires=int(keep_until.timestamp())))
        return True

    def list_log_chunks(self, flow_run_id: str, *, after: int | None = None, limit: int = 100,
                        newest_first: bool = False) -> list[LogChunk]:
        low = f"LOG#{after + 1:012d}" if after is not None else "LOG#"
        items = self.table.query(f"RUN#{flow_run_id}", sk_between=(low, f"LOG#{HIGH}"), forward=not newest_first,
                                 page_size=limit)
        return [read_doc(LogChunk, i) for i in itertools.islice(items, limit)]

    def delete_expired_log_chunks(self, now: datetime, limit: int = 5000) -> int:
        return 0  # DynamoDB's TTL deletes them (``expires``), within a few days of the time

