"""What a run's code logs and prints, as the runner captures and ships it."""

from __future__ import annotations

import sys

from pushpool import flow, get_run_logger, task
from pushpool.context import FlowRunContext
from pushpool.run_logging import MAX_LINE_CHARS, shipping_logs


def run_shipping(flow_obj, **kwargs) -> list[dict]:
    sent: list[dict] = []
    with shipping_logs(sent.append), flow_obj.run_context(FlowRunContext(flow_run_id="r1")):
        flow_obj.fn(**kwargs)
    return sent


def test_prints_stderr_and_the_run_logger_are_all_shipped_and_still_written(capfd):
    @task
    def load() -> None:
        get_run_logger().warning("3 rows skipped")

    @flow
    def etl() -> None:
        print("starting")
        sys.stderr.write("a warning on stderr\npartial")
        load()
        get_run_logger().info("done")

    sent = run_shipping(etl)
    by_message = {line["message"]: line for line in sent}
    assert by_message["starting"]["stream"] == "stdout"
    assert by_message["a warning on stderr"]["stream"] == "stderr"
    assert by_message["partial"]["stream"] == "stderr"  # the unfinished last line is not lost
    skipped = by_message["3 rows skipped"]
    assert (skipped["stream"], skipped["level"], skipped["logger"]) == ("log", 30, "load")
    assert skipped["task_run_id"] and by_message["done"]["logger"] == "etl"
    captured = capfd.readouterr()
    assert "starting" in captured.out and "a warning on stderr" in captured.err  # still where it went before
    assert "WARNING | load - 3 rows skipped" in captured.err


def test_log_prints_turns_prints_into_records_of_that_flow_or_task():
    @task(log_prints=True)
    def chatty() -> None:
        print("from the task", 1, sep="-")

    @task
    def quiet() -> None:
        print("plain print")

    @flow(log_prints=False)
    def pipeline() -> None:
        chatty()
        quiet()
        print("to stderr", file=sys.stderr)

    sent = run_shipping(pipeline)
    by_message = {line["message"]: line for line in sent}
    assert by_message["from the task-1"]["stream"] == "log" and by_message["from the task-1"]["logger"] == "chatty"
    assert by_message["plain print"]["stream"] == "stdout"
    assert by_message["to stderr"]["stream"] == "stderr"

    @flow(log_prints=True)
    def loud() -> None:
        print("flow print")

    assert [(line["stream"], line["logger"]) for line in run_shipping(loud)] == [("log", "loud")]


def test_long_lines_are_sent_in_pieces_and_everything_is_restored_after():
    @flow
    def wide() -> None:
        print("x" * (MAX_LINE_CHARS * 2 + 5))

    before = (sys.stdout, sys.stderr, print)
    sent = run_shipping(wide)
    assert [len(line["message"]) for line in sent] == [MAX_LINE_CHARS, MAX_LINE_CHARS, 5]
    assert (sys.stdout, sys.stderr, print) == before
