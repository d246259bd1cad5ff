"""The log relay: records framed in the stdout pipe come out in order among the prints, the frames never reach the
container's log, and a run's output reaches the API through a relay process (or the runner itself when the relay
cannot start)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest

from pushpool.log_relay import FRAME_MARK, MAX_FRAME_BYTES, FrameSplitter, Relay, encode_record


def split_all(chunks: list[bytes]) -> list[bytes | dict]:
    """Every piece the splitter gives for ``chunks``, consecutive text joined."""
    splitter, pieces = FrameSplitter(), []
    for chunk in chunks:
        pieces.extend(splitter.split(chunk))
    pieces.append(splitter.finish())
    joined: list[bytes | dict] = []
    for piece in pieces:
        if isinstance(piece, bytes) and joined and isinstance(joined[-1], bytes):
            joined[-1] += piece
        elif piece != b"":
            joined.append(piece)
    return joined


def test_frames_come_out_of_the_text_in_order_wherever_reads_cut_them():
    record = {"message": "loaded 3 rows", "level": 20, "stream": "log"}
    stream = b"first\n" + encode_record(record) + b"second\npartial" + encode_record({"message": "é"}) + b" end\n"
    expected = [b"first\n", record, b"second\npartial", {"message": "é"}, b" end\n"]
    assert split_all([stream]) == expected
    for cut in range(1, len(stream)):  # a read may end anywhere, even inside a frame's header
        assert split_all([stream[:cut], stream[cut:]]) == expected, cut
    assert split_all([bytes([b]) for b in stream]) == expected


@pytest.mark.parametrize("text", [
    b"a \x1e record separator someone printed\n",
    FRAME_MARK + b"zzzzzzzz{}\n",  # not a length
    FRAME_MARK + b"%08x" % (MAX_FRAME_BYTES + 1) + b"{}",  # too long to be ours
    FRAME_MARK + b"00000003[1]\n",  # JSON, but not a record
    FRAME_MARK + b"00000003{x}\n",  # not JSON
])
def test_what_only_looks_like_a_frame_is_text(text):
    assert split_all([text]) == [text]


def test_a_frame_cut_short_by_the_end_of_the_stream_is_text():
    cut = encode_record({"message": "never finished"})[:-3]
    assert split_all([b"before\n", cut]) == [b"before\n" + cut]


class Recorder:
    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []

    def emit(self, line: dict[str, Any]) -> None:
        self.items.append({"record": line["message"]})

    def emit_text(self, stream: str, text: str, timestamp: float) -> None:
        self.items.extend({stream: line} for line in text.split("\n"))


def test_the_relay_ships_prints_records_and_stderr_in_order_and_writes_only_text_through(tmp_path):
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    log_out, log_err = (tmp_path / "out").open("wb"), (tmp_path / "err").open("wb")
    recorder = Recorder()
    relay = Relay(recorder, out_r, err_r, write_stdout=log_out.fileno(), write_stderr=log_err.fileno())
    thread = threading.Thread(target=relay.run)
    thread.start()
    os.write(out_w, b"print one\n")
    os.write(err_w, b"a warning\n")  # written before the record: shipped before it
    os.write(out_w, encode_record({"message": "logged"}))
    os.write(out_w, b"print two\nunfinished")
    os.close(out_w)
    os.close(err_w)
    thread.join(10)
    log_out.close()
    log_err.close()
    assert recorder.items == [{"stdout": "print one"}, {"stderr": "a warning"}, {"record": "logged"},
                              {"stdout": "print two"}, {"stdout": "unfinished"}]
    assert (tmp_path / "out").read_bytes() == b"print one\nprint two\nunfinished"  # no frame in the log
    assert (tmp_path / "err").read_bytes() == b"a warning\n"


def test_a_relay_told_to_finish_does_not_wait_for_a_pipe_someone_still_holds():
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    control_r, control_w = os.pipe()
    recorder = Recorder()
    relay = Relay(recorder, out_r, err_r, control_fd=control_r, write_stdout=os.open(os.devnull, os.O_WRONLY),
                  write_stderr=os.open(os.devnull, os.O_WRONLY), restore_timeout=0.3)
    thread = threading.Thread(target=relay.run)
    thread.start()
    os.write(out_w, b"said before the end\n")
    os.write(control_w, b"close\n")  # out_w stays open, as when a background subprocess inherited it
    thread.join(10)
    assert not thread.is_alive()
    assert recorder.items == [{"stdout": "said before the end"}]
    for fd in (out_w, err_w, control_r, control_w):
        os.close(fd)


CHILD = """
import json, logging, os, subprocess, sys
from pushpool import flow, get_run_logger
from pushpool.context import FlowRunContext
from pushpool.log_relay import LogRelay, RelayTarget
from pushpool.run_logging import RelayedLogs, shipping_logs

url, key, workspace, run_id, result, broken = sys.argv[1:7]
if broken == "yes":
    sys.executable = "/bin/false"  # the relay process exits at once: the runner must ship by itself

@flow
def chatty() -> None:
    print("print before")
    sys.stderr.write("stderr before\\n")
    get_run_logger().info("logged in the middle")
    subprocess.run(["echo", "from a subprocess"], check=True)
    print("print after")

relay = LogRelay.start()
with shipping_logs(RelayedLogs(relay, RelayTarget(url, key, workspace, run_id))), \\
        chatty.run_context(FlowRunContext(flow_run_id=run_id)):
    chatty.fn()
with open(result, "w") as out:
    json.dump({"summary": relay.summary, "relay_pid": relay.process.pid, "pid": os.getpid()}, out)
"""


@pytest.mark.parametrize("broken", [False, True], ids=["relay", "relay-cannot-start"])
def test_a_runs_output_reaches_the_api_through_the_relay_or_without_it(live, tmp_path: Path, broken: bool):
    client = live.client()
    client.request("POST", client.ws("/work_pools"), json={"name": "held", "type": "local:push", "paused": True})
    deployment = client.request("POST", client.ws("/deployments"), json={
        "flow_name": "chatty", "name": "d", "entrypoint": "f.py:chatty", "work_pool_name": "held"})
    run = client.request("POST", client.ws(f"/deployments/{deployment['id']}/runs"), json={})
    script, result = tmp_path / "child.py", tmp_path / "result.json"
    script.write_text(textwrap.dedent(CHILD))
    done = subprocess.run([sys.executable, str(script), live.settings.api_url, live.key, live.workspace, run["id"],
                           str(result), "yes" if broken else "no"], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert done.returncode == 0, done.stderr
    lines = client.request("GET", client.ws(f"/flow_runs/{run['id']}/logs"))["lines"]
    text = "\n".join(lines)
    for expected in ("print before", "stderr before", "logged in the middle", "from a subprocess", "print after"):
        assert expected in text, (expected, text)
    # a record comes after what was written before it (stdout and stderr have no order between them)
    assert max(text.index("print before"), text.index("stderr before")) < text.index("logged in the middle") \
        < text.index("from a subprocess") < text.index("print after")
    assert "print before" in done.stdout and "print after" in done.stdout  # still written to the container's log
    assert "pushpool-record" not in done.stdout and "logged in the middle" in done.stderr  # its console copy
    facts = json.loads(result.read_text())
    if broken:
        assert "captured in the flow's own process" in done.stderr and facts["summary"] == {}
    else:
        assert facts["summary"]["sent"] == 5 and facts["summary"]["dropped"] == 0
        assert facts["relay_pid"] != facts["pid"]


RELAY_KILLED = """
import os, signal, sys, time
from pushpool.log_relay import LogRelay, RelayTarget
from pushpool.run_logging import RelayedLogs, shipping_logs
from pushpool import get_run_logger

relay = LogRelay.start()
with shipping_logs(RelayedLogs(relay, RelayTarget("http://127.0.0.1:9", "ppk_x", "w", "r", close_timeout=1))):
    print("before the relay died")
    os.kill(relay.process.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while relay.process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.3)  # the watch thread points the descriptors back
    for i in range(5000):  # far more than a pipe holds: a dead reader must not block or break the flow
        print(f"line {i} after the relay died")
    get_run_logger().info("a record after it died")
print("the flow finished")
"""


def test_a_relay_that_dies_does_not_break_the_flow(tmp_path):
    script = tmp_path / "child.py"
    script.write_text(RELAY_KILLED)
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert done.returncode == 0, done.stderr
    assert "line 4999 after the relay died" in done.stdout and "the flow finished" in done.stdout
    assert "the log relay ended (exit -9)" in done.stderr and "a record after it died" in done.stderr
