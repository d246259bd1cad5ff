"""What a run's code logs and prints, as the runner captures and ships it.

Capture works on file descriptors 1 and 2, so each case runs in a fresh Python process whose
stdout and stderr are files (as a container's are pipes to its log): the test sees both what
was shipped and what still reached the container's log.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from pushpool.control_plane.api.schemas import LogBatch
from pushpool.control_plane.models import LogLine, LogText
from pushpool.run_logging import MAX_LINE_CHARS

PRELUDE = """
import json, subprocess, sys
from pushpool import flow, get_run_logger, task
from pushpool.context import FlowRunContext
from pushpool.run_logging import shipping_logs

class Sink:
    diagnostics = sys.stderr
    def __init__(self):
        self.items = []
    def emit(self, line):
        self.items.append(dict(line))
    def emit_text(self, stream, text, timestamp):
        self.items.append({"stream": stream, "timestamp": timestamp, "text": text})

def run_shipping(flow_obj, **kwargs):
    sink = Sink()
    with shipping_logs(sink), flow_obj.run_context(FlowRunContext(flow_run_id="r1")):
        flow_obj.fn(**kwargs)
    with open(sys.argv[1], "w") as out:
        json.dump(sink.items, out)
"""


def run_child(tmp_path: Path, body: str) -> tuple[list[dict], str, str]:
    """Run ``body`` after the prelude; the shipped lines (as the API stores them), stdout and stderr."""
    script, shipped = tmp_path / "child.py", tmp_path / "shipped.json"
    script.write_text(PRELUDE + textwrap.dedent(body))
    out, err = tmp_path / "out.txt", tmp_path / "err.txt"
    with out.open("w") as stdout, err.open("w") as stderr:
        subprocess.run([sys.executable, str(script), str(shipped)], stdout=stdout, stderr=stderr, check=True,
                       timeout=60, env={"PYTHONUNBUFFERED": "1", "PATH": "/usr/bin:/bin"})
    items = LogBatch.model_validate({"seq": 0, "lines": json.loads(shipped.read_text()) or [None]}).lines
    lines = [{"message": line, "stream": item.stream, "level": 20, "logger": None, "task_run_id": None}
             for item in items if isinstance(item, LogText) for line in item.lines()]
    return lines + [item.model_dump() for item in items if isinstance(item, LogLine)], out.read_text(), err.read_text()


def test_prints_stderr_subprocesses_and_the_run_logger_are_all_shipped_and_still_written(tmp_path):
    shipped, out, err = run_child(tmp_path, """
        @task
        def load() -> None:
            get_run_logger().warning("3 rows skipped")

        @flow
        def etl() -> None:
            print("starting")
            sys.stderr.write("a warning on stderr\\npartial")
            sys.stderr.flush()
            subprocess.run(["echo", "from a subprocess"], check=True)
            load()
            get_run_logger().info("done")

        run_shipping(etl)
    """)
    by_message = {line["message"]: line for line in shipped}
    assert by_message["starting"]["stream"] == "stdout"
    assert by_message["from a subprocess"]["stream"] == "stdout"  # written below Python, captured all the same
    assert by_message["a warning on stderr"]["stream"] == "stderr"
    assert by_message["partial"]["stream"] == "stderr"  # the unfinished last line is not lost
    skipped = by_message["3 rows skipped"]
    assert (skipped["stream"], skipped["level"], skipped["logger"]) == ("log", 30, "load")
    assert skipped["task_run_id"] and by_message["done"]["logger"] == "etl"
    assert "starting" in out and "from a subprocess" in out and "a warning on stderr" in err  # still written
    assert "WARNING | load - 3 rows skipped" in err
    # the console copy of a record goes to the container's log only: it is not shipped again as stderr text
    assert not any("3 rows skipped" in line["message"] for line in shipped if line["stream"] == "stderr")


def test_log_prints_turns_prints_into_records_of_that_flow_or_task(tmp_path):
    shipped, _, _ = run_child(tmp_path, """
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

        run_shipping(pipeline)
    """)
    by_message = {line["message"]: line for line in shipped}
    assert by_message["from the task-1"]["stream"] == "log" and by_message["from the task-1"]["logger"] == "chatty"
    assert by_message["plain print"]["stream"] == "stdout"
    assert by_message["to stderr"]["stream"] == "stderr"

    shipped, _, _ = run_child(tmp_path, """
        @flow(log_prints=True)
        def loud() -> None:
            print("flow print")

        run_shipping(loud)
    """)
    assert [(line["stream"], line["logger"], line["message"]) for line in shipped] == [("log", "loud", "flow print")]


def test_print_stays_pythons_own_until_a_run_asks_for_log_prints(tmp_path):
    _, out, _ = run_child(tmp_path, """
        import builtins
        original = builtins.print

        @flow
        def plain() -> None:
            print("untouched", builtins.print is original)

        run_shipping(plain)
        print("restored", builtins.print is original, sys.stdout.fileno())
    """)
    assert "untouched True" in out and "restored True 1" in out


def test_long_lines_are_kept_in_pieces_and_the_descriptors_are_restored_after(tmp_path):
    shipped, out, _ = run_child(tmp_path, f"""
        import os
        before = os.fstat(1).st_ino, os.fstat(2).st_ino

        @flow
        def wide() -> None:
            print("x" * ({MAX_LINE_CHARS} * 2 + 5))

        run_shipping(wide)
        print("after", (os.fstat(1).st_ino, os.fstat(2).st_ino) == before)
    """)
    assert [len(line["message"]) for line in shipped] == [MAX_LINE_CHARS, MAX_LINE_CHARS, 5]
    assert out.endswith("after True\n") and "x" * (MAX_LINE_CHARS * 2 + 5) in out
