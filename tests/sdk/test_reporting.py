"""The task-run reporter: batches, coalesced versions, retries after failures, a cap, and never blocking."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

from pushpool.control_plane.errors import PushpoolError, TooLarge
from pushpool.reporting import TaskRunReporter


class Endpoint:
    """Stands in for the API: records every batch; can fail for a while, or refuse for good."""

    def __init__(self, fail_times: int = 0, too_large: bool = False, delay: float = 0.0) -> None:
        self.batches: list[list[dict]] = []
        self.fail_times, self.too_large, self.delay = fail_times, too_large, delay

    def __call__(self, batch: list[dict]) -> None:
        time.sleep(self.delay)
        if self.too_large:
            raise TooLarge("flow run has reported 5 task runs")
        if self.fail_times:
            self.fail_times -= 1
            raise PushpoolError("Cannot reach the pushpool API")
        self.batches.append(batch)


def version(i: int, state: str) -> dict:
    return {"id": f"t{i}", "name": f"t-{i}", "state_type": state}


def test_versions_of_one_task_run_are_coalesced_and_sent_in_batches():
    endpoint = Endpoint()
    reporter = TaskRunReporter(endpoint, interval=60, batch_size=3)
    for i in range(7):
        reporter.record(version(i, "RUNNING"))
        reporter.record(version(i, "COMPLETED"))
    reporter.close()
    sent = [r for batch in endpoint.batches for r in batch]
    assert [r["id"] for r in sent] == [f"t{i}" for i in range(7)] and {r["state_type"] for r in sent} == {"COMPLETED"}
    assert all(len(batch) <= 3 for batch in endpoint.batches) and reporter.sent == 7 and reporter.dropped == 0


def test_a_second_passes_between_sends_when_batches_do_not_fill():
    endpoint = Endpoint()
    reporter = TaskRunReporter(endpoint, interval=0.2, batch_size=100)
    reporter.record(version(0, "RUNNING"))
    time.sleep(0.5)
    assert [r["id"] for batch in endpoint.batches for r in batch] == ["t0"]  # before close
    reporter.close()


def test_a_failed_send_keeps_the_records_and_the_newest_version_wins():
    endpoint = Endpoint(fail_times=2)
    reporter = TaskRunReporter(endpoint, interval=0.05, batch_size=10, close_timeout=5)
    reporter.record(version(0, "RUNNING"))
    time.sleep(0.12)  # a send or two failed meanwhile
    reporter.record(version(0, "COMPLETED"))
    reporter.close()
    sent = [r for batch in endpoint.batches for r in batch]
    assert sent[-1] == version(0, "COMPLETED") and reporter.dropped == 0


def test_a_refusal_for_good_stops_reporting_and_counts_what_was_dropped(capsys):
    reporter = TaskRunReporter(Endpoint(too_large=True), interval=60, batch_size=2)  # 413: the cap
    for i in range(5):
        reporter.record(version(i, "RUNNING"))
    reporter.close()
    assert reporter.dropped == 5 and reporter.sent == 0
    assert "no longer recorded" in capsys.readouterr().err


def test_recording_never_waits_for_a_slow_control_plane():
    endpoint = Endpoint(delay=0.5)
    reporter = TaskRunReporter(endpoint, interval=0.01, batch_size=1, max_pending=1000, close_timeout=0)
    started = time.perf_counter()
    for i in range(1000):
        reporter.record(version(i, "RUNNING"))
    assert time.perf_counter() - started < 0.5  # 1,000 records while one send takes 0.5 s
    for i in range(1000, 1010):  # past max_pending while the endpoint is slow: dropped and counted
        reporter.record(version(i, "RUNNING"))
    assert reporter.dropped >= 8
    reporter.record(version(5, "COMPLETED"))  # a newer version of a pending record is never dropped
    assert reporter._pending["t5"]["state_type"] == "COMPLETED"
    closer = threading.Thread(target=reporter.close)
    closer.start()
    closer.join(10)
    assert not closer.is_alive()


def test_close_gives_up_after_its_timeout_and_says_how_many_were_lost(capsys):
    reporter = TaskRunReporter(Endpoint(fail_times=10_000), interval=60, close_timeout=0.3)
    reporter.record(version(0, "RUNNING"))
    started = time.monotonic()
    reporter.close()
    assert time.monotonic() - started < 3 and reporter.dropped == 1
    assert "1 task-run report(s) could not be sent" in capsys.readouterr().err


def test_log_lines_go_in_numbered_batches_and_a_resend_keeps_its_number():
    from pushpool.reporting import LOG_BATCH_ITEMS, LogShipper

    calls: list[tuple[int, int]] = []
    fail = [1]

    def post(seq: int, lines: list[dict]) -> dict:
        calls.append((seq, len(lines)))
        if fail[0]:
            fail[0] -= 1
            raise PushpoolError("Cannot reach the pushpool API")
        return {"accepted": len(lines), "truncated": False}

    shipper = LogShipper(post, interval=60, close_timeout=5)
    for i in range(LOG_BATCH_ITEMS + 10):
        shipper.emit({"message": f"line {i}"})
    shipper.close()
    assert calls[0] == calls[1] == (0, LOG_BATCH_ITEMS)  # failed, then sent again as batch 0
    assert calls[2] == (1, 10) and shipper.sent == LOG_BATCH_ITEMS + 10 and shipper.dropped == 0


def test_log_shipping_stops_once_the_run_is_truncated(capsys):
    from pushpool.reporting import LogShipper

    shipper = LogShipper(lambda seq, lines: {"accepted": 0, "truncated": True}, interval=60)
    for i in range(5):
        shipper.emit({"message": f"line {i}"})
    shipper.close()
    shipper.emit({"message": "after"})
    assert shipper.dropped == 1 and shipper.requests == 1  # the batch was the notice's; nothing more is sent


def test_captured_text_goes_in_batches_the_api_takes_in_order_and_whole():
    from pushpool.control_plane.api.schemas import LogBatch
    from pushpool.control_plane.models import LogChunk
    from pushpool.control_plane.services.run_logs import formatted
    from pushpool.reporting import LOG_BATCH_BYTES, LOG_BATCH_ITEMS, LogShipper

    stored: list[str] = []

    def post(seq: int, items: list[dict]) -> dict:
        batch = LogBatch.model_validate({"seq": seq, "lines": items})  # what the API would refuse fails here
        stored.extend(formatted([LogChunk(flow_run_id="r", seq=seq, received=datetime.now(UTC),
                                          lines=batch.lines)]))
        return {"accepted": len(items), "truncated": False}

    shipper = LogShipper(post, interval=60, close_timeout=10)
    expected: list[str] = []
    for chunk in range(30):  # 12,000 ASCII lines and 30 chunks of wide characters, with records between
        lines = [f"chunk {chunk} line {i}" for i in range(400)] + ["界" * 3000]
        shipper.emit_text("stdout", "\n".join(lines), 1_700_000_000.0)
        # a record of stream stdout is shown as its bare message
        shipper.emit({"timestamp": 1_700_000_000.0, "message": f"record {chunk}", "stream": "stdout"})
        expected += [*lines, f"record {chunk}"]
    shipper.close()
    assert stored == expected and shipper.dropped == 0
    characters = sum(map(len, expected))
    assert shipper.requests <= characters // LOG_BATCH_BYTES + 2  # batches are filled, not one per item
    assert shipper.sent == len(expected) and len(expected) > LOG_BATCH_ITEMS


def test_split_text_cuts_at_line_ends_within_the_room():
    from pushpool.reporting import split_text

    assert split_text("a\nb\nc", 100) == ("a\nb\nc", None)
    assert split_text("a\nb\nc", 3) == ("a\nb", "c")  # a newline right at the edge is a line's end
    assert split_text("aaaa\nbbbb\ncccc", 11) == ("aaaa\nbbbb", "cccc")
    assert split_text("abcdefgh", 3) == ("abc", "defgh")  # one line too long for the room: its first part
    assert split_text("\nxyz", 2) == ("", "xyz")  # an empty first line is a line


def test_consecutive_captures_go_as_one_text_and_a_text_only_batch_as_plain_text():
    from pushpool.reporting import LogShipper, log_sender

    class Client:
        calls: list[tuple] = []

        def ws(self, path: str) -> str:
            return f"/api/workspaces/w{path}"

        def request(self, method: str, path: str, **kwargs) -> dict:
            self.calls.append((path, kwargs))
            return {"accepted": 1, "truncated": False}

    client = Client()
    shipper = LogShipper(log_sender(client, "r1"), interval=60, close_timeout=5)
    for piece in ("a\nb", "c", "d"):
        shipper.emit_text("stdout", piece, 1.0)
    shipper.close()
    shipper = LogShipper(log_sender(client, "r1"), interval=60, close_timeout=5)
    shipper.emit_text("stdout", "e", 2.0)
    shipper.emit({"timestamp": 2.0, "message": "record"})
    shipper.emit_text("stderr", "f", 2.0)
    shipper.emit_text("stdout", "g", 2.0)
    shipper.close()
    (text_path, text_call), (json_path, json_call) = client.calls
    assert text_path == "/api/workspaces/w/flow_runs/r1/logs/text" and text_call["content"] == b"a\nb\nc\nd"
    assert text_call["params"] == {"seq": 0, "stream": "stdout", "timestamp": 1.0}
    assert json_path == "/api/workspaces/w/flow_runs/r1/logs" and json_call["json"]["lines"] == [
        {"stream": "stdout", "timestamp": 2.0, "text": "e"}, {"timestamp": 2.0, "message": "record"},
        {"stream": "stderr", "timestamp": 2.0, "text": "f"}, {"stream": "stdout", "timestamp": 2.0, "text": "g"}]
