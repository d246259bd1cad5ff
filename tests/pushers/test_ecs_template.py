"""ECS's rules about job variables, checked when a deployment or a run is saved (pushers/ecs_template.py)."""

from __future__ import annotations

import pytest

from pushpool.control_plane.errors import InvalidInput
from pushpool.pushers.ecs_template import FARGATE_SIZES, check_job_variables


@pytest.mark.parametrize("values, explicit, message", [
    ({"cpu": 256, "memory": 999}, {}, "job_variables.memory: with cpu 256, Fargate takes 512, 1024, 2048 MiB, not 999"),
    ({"cpu": 1024, "memory": 512}, {}, "with cpu 1024, Fargate takes 2048 to 8192 in steps of 1024 MiB, not 512"),
    ({"cpu": 300, "memory": 1024}, {}, "job_variables.cpu: Fargate takes 256, 512, 1024, 2048, 4096, 8192, 16384"),
    ({"cpu": 256, "memory": 999, "launch_type": "FARGATE_SPOT"}, {}, "job_variables.memory"),
    ({"launch_type": "EC2", "assign_public_ip": True}, {"assign_public_ip": True},
     "job_variables.assign_public_ip: ECS gives public IPs to Fargate tasks only"),
    ({"capacity_provider_strategy": [{"capacityProvider": "my-asg"}], "assign_public_ip": True},
     {"assign_public_ip": True}, "job_variables.assign_public_ip"),
])
def test_values_ecs_would_refuse_are_named(values, explicit, message):
    with pytest.raises(InvalidInput, match=message.replace("(", r"\(")):
        check_job_variables(values, explicit)


@pytest.mark.parametrize("values, explicit", [
    ({"cpu": 256, "memory": 512}, {}),
    ({"cpu": 16384, "memory": 122880}, {}),
    ({"cpu": 256, "memory": 999, "launch_type": "EC2"}, {}),  # EC2 has no fixed sizes
    ({"cpu": 256, "memory": 999, "task_definition_arn": "arn:aws:ecs:x"}, {}),  # the user's own definition
    ({"launch_type": "EC2", "assign_public_ip": True}, {}),  # the template's default, not someone's choice
    ({"cpu": "{{ pushpool.blocks.sizes.cpu }}", "memory": 512}, {}),  # left to the cloud
])
def test_values_ecs_takes_pass(values, explicit):
    check_job_variables(values, explicit)


def test_every_documented_fargate_size_is_known():
    assert sum(len(m) for m in FARGATE_SIZES.values()) == 3 + 4 + 7 + 13 + 23 + 12 + 12
