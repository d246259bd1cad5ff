"""Record ids: version 7 UUIDs that sort in the order they were made, also from many threads at once."""

from __future__ import annotations

import threading
import uuid

from pushpool.control_plane.models import new_id


def test_ids_are_v7_and_strictly_increase_within_a_process_even_across_threads():
    made: list[list[str]] = [[] for _ in range(4)]

    def make(out: list[str]) -> None:
        out.extend(new_id() for _ in range(20_000))

    threads = [threading.Thread(target=make, args=(out,)) for out in made]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for out in made:
        assert out == sorted(out)  # each thread sees its ids grow, whatever the others made meanwhile
    everything = [i for out in made for i in out]
    assert len(set(everything)) == len(everything)
    parsed = uuid.UUID(everything[0])
    assert parsed.version == 7 and parsed.variant == uuid.RFC_4122
