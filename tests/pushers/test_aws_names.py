"""AWS names derived from pool names keep each service's rule, and two pools never share a name."""

from __future__ import annotations

import re

import pytest

from pushpool.pushers.aws_names import pool_names, task_family

# Each service's documented rule for the name (pattern, at most this long).
RULES = {
    "execution_role": (r"[\w+=,.@-]+", 64), "task_role": (r"[\w+=,.@-]+", 64), "identity": (r"[\w+=,.@-]+", 64),
    "policy": (r"[\w+=,.@-]+", 128), "cluster": (r"[A-Za-z0-9_-]+", 255), "family": (r"[A-Za-z0-9_-]+", 255),
    "log_group": (r"[.\-_/#A-Za-z0-9]+", 512),
    "repository": (r"(?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*", 256),
    "security_group": (r"(?!sg-)[ -~]+", 255),
}
POOLS = ["etl", "My.Pool", "my.pool", "Data", "data", "a--b", "a-b", "x" * 100, "X" * 100, "9lives", "a_b.c-d"]


@pytest.mark.parametrize("pool", POOLS)
def test_every_name_fits_its_service(pool):
    for kind, name in pool_names(pool).items():
        pattern, limit = RULES[kind]
        assert re.fullmatch(pattern, name) and len(name) <= limit, (kind, name)
    assert len(task_family(pool, "0" * 32)) <= 255 and re.fullmatch(r"[A-Za-z0-9_-]+", task_family(pool, "ab" * 6))


def test_pools_never_share_a_name_and_plain_names_stay_as_they_were():
    for kind in RULES:
        names = [pool_names(pool)[kind] for pool in POOLS]
        assert len(set(names)) == len(names), kind
    assert pool_names("etl") == {
        "execution_role": "pushpool-etl-execution", "task_role": "pushpool-etl-task",
        "identity": "pushpool-etl-control-plane", "policy": "pushpool-etl-dispatch", "cluster": "pushpool-etl",
        "family": "pushpool_etl", "log_group": "/pushpool/etl", "repository": "pushpool/etl",
        "security_group": "pushpool-etl"}
