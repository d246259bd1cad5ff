"""The SQL by which the SQLite store reads a filtered, ordered page of flow runs.

A page is read in index order and stops at its last run, so its cost does not grow with the runs the filter
passes over. A filter on several states is one arm per state (each read from ``runs_by_workspace_state``),
merged in order. A tag carried by few runs leads: its rows in ``run_tags`` (in scheduled-time order within the
tag) are read and joined to their runs; a tag many runs carry is checked run by run (a primary-key probe of
``run_tags``) while the runs are read through their own index. A keyset cursor (``after``) seeks to where the
previous page ended.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from pushpool.control_plane.models import FlowRunFilter, StateType
from pushpool.control_plane.storage.records import ts

#: A tag on fewer runs than this leads the read (a page then costs at most this many joins); tags are counted up
#: to it, cheaply, from their index.
TAG_LEADS_BELOW = 5_000


def select_runs(conn: sqlite3.Connection, workspace_id: str, flt: FlowRunFilter, limit: int,
                offset: int) -> tuple[str, list[Any]]:
    """The query (and its parameters) of the docs of the runs ``flt`` selects, ``limit`` after ``offset``."""
    order = "ASC" if flt.sort == "scheduled_asc" else "DESC"
    leading = _leading_tag(conn, workspace_id, flt.tags) if flt.tags else None
    groups: list[list[StateType] | None] = [[s] for s in flt.states] if flt.states and len(flt.states) > 1 \
        else [flt.states]
    arms, params = [], []
    for index, states in enumerate(groups):
        arm, arm_params = _arm(workspace_id, flt, states, leading, order)
        arms.append(f"SELECT * FROM ({arm} LIMIT ?) AS arm{index}")
        params += [*arm_params, limit + offset]
    sql = f"{' UNION ALL '.join(arms)} ORDER BY scheduled_time {order}, id {order} LIMIT ? OFFSET ?"
    return sql, [*params, limit, offset]


def _leading_tag(conn: sqlite3.Connection, workspace_id: str, tags: list[str]) -> str | None:
    """The rarest of ``tags`` if fewer than :data:`TAG_LEADS_BELOW` runs carry it, else ``None``."""
    bounded = "SELECT COUNT(*) FROM (SELECT 1 FROM run_tags WHERE workspace_id = ? AND tag = ? LIMIT ?) AS bounded"
    counts = {tag: conn.execute(bounded, (workspace_id, tag, TAG_LEADS_BELOW)).fetchone()[0] for tag in tags}
    rarest = min(tags, key=lambda tag: counts[tag])
    return rarest if counts[rarest] < TAG_LEADS_BELOW else None


def _arm(workspace_id: str, flt: FlowRunFilter, states: list[StateType] | None, leading_tag: str | None,
         order: str) -> tuple[str, list[Any]]:
    """One ordered read: from the leading tag's rows when there is one (``CROSS JOIN`` keeps them the outer
    loop), else from the runs themselves (the planner picks the index)."""
    if leading_tag is not None:
        source, at, run_id = "run_tags t CROSS JOIN flow_runs r ON r.id = t.run_id", "t.scheduled_time", "t.run_id"
        where, params = ["t.workspace_id = ?", "t.tag = ?", "r.workspace_id = ?"], [workspace_id, leading_tag,
                                                                                  workspace_id]
    else:
        source, at, run_id = "flow_runs r", "r.scheduled_time", "r.id"
        # A deployment's runs are read from their own index: the unary + keeps the planner from the workspace's
        # index, which orders as well but passes over every run of the workspace.
        narrow = flt.deployment_id is not None
        where, params = ["+r.workspace_id = ?" if narrow else "r.workspace_id = ?"], [workspace_id]
    if states:
        where.append(f"r.state_type IN ({', '.join('?' * len(states))})")
        params += [s.value for s in states]
    for column in ("deployment_id", "pool_id", "queue_id"):
        if getattr(flt, column) is not None:
            where.append(f"r.{column} = ?")
            params.append(getattr(flt, column))
    if flt.auto_scheduled is not None:
        where.append("r.auto_scheduled = ?")
        params.append(int(flt.auto_scheduled))
    if flt.flow_name is not None:
        where.append("r.flow_name = ?")  # runs_by_flow_name
        params.append(flt.flow_name)
    for tag in flt.tags or ():
        if tag != leading_tag:
            where.append("EXISTS (SELECT 1 FROM run_tags o WHERE o.workspace_id = r.workspace_id AND o.tag = ? "
                         "AND o.scheduled_time = r.scheduled_time AND o.run_id = r.id)")
            params.append(tag)
    if flt.scheduled_after is not None:
        where.append(f"{at} >= ?")
        params.append(ts(flt.scheduled_after))
    if flt.scheduled_before is not None:
        where.append(f"{at} <= ?")
        params.append(ts(flt.scheduled_before))
    if flt.after is not None:
        position, last_id = flt.after.split("#", 1)
        where.append(f"({at}, {run_id}) {'>' if order == 'ASC' else '<'} (?, ?)")
        params += [position, last_id]
    return (f"SELECT {at} AS scheduled_time, {run_id} AS id, r.doc AS doc FROM {source} "
            f"WHERE {' AND '.join(where)} ORDER BY {at} {order}, {run_id} {order}"), params
