"""The embedded tick loop: a schedule change gets its scheduler pass at once, not at the next interval."""

from __future__ import annotations

import time
from dataclasses import replace

from pushpool.control_plane.models import FlowRunFilter
from pushpool.control_plane.services.ticker import Ticker


def test_a_schedule_change_wakes_the_scheduler_before_its_interval(api, ctx):
    # The ticker's own view: a scheduler pass only once an hour unless woken.
    ticker_ctx = replace(ctx, settings=ctx.settings.model_copy(update={"scheduler_interval_seconds": 3600,
                                                                         "tick_interval_seconds": 30}))
    ticker = Ticker(ticker_ctx)
    ctx.wake_scheduler = ticker.wake_scheduler
    ticker.start()
    try:
        time.sleep(0.3)  # the first loop's pass (nothing to schedule yet) is done; the next is an hour away
        api.pool()
        dep = api.deployment(schedules=[{"interval": 600}])
        workspace = ctx.store.get_workspace(api.workspace)
        flt = FlowRunFilter(deployment_id=dep["id"], auto_scheduled=True)
        deadline = time.monotonic() + 10
        count = 0
        while time.monotonic() < deadline and count < 6:
            count = len(ctx.store.list_flow_runs(workspace.id, flt))
            time.sleep(0.05)
        assert count == 6  # 3 from the request itself, 3 more from the pass it woke (1 h horizon)
    finally:
        ticker.stop()
