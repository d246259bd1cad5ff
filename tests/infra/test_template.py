"""The CloudFormation template: cfn-lint clean, and what it declares matches what the code expects."""

from __future__ import annotations

import json

import pytest

from pushpool.control_plane.storage.dynamodb_schema import table_definition
from pushpool.infra import stack_template


@pytest.fixture(scope="module")
def template() -> dict:
    from cfnlint.decode import decode_str

    decoded, errors = decode_str(stack_template())
    assert not errors
    return decoded


#: Regions the stack is checked for (Function URLs are not offered in every region; see docs/self-hosting.md).
REGIONS = ["us-east-1", "us-east-2", "us-west-2", "eu-west-1", "eu-central-1", "ap-southeast-1", "ap-northeast-1"]


def test_cfn_lint_passes():
    from cfnlint.api import ManualArgs, lint

    problems = lint(stack_template(), config=ManualArgs(regions=REGIONS))
    assert [str(p) for p in problems if p.rule.id[0] in "EW"] == []


def test_the_table_matches_the_store_design(template):
    props = template["Resources"]["Table"]["Properties"]
    expected = table_definition("x")
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert props["KeySchema"] == expected["KeySchema"]
    assert props["AttributeDefinitions"] == expected["AttributeDefinitions"]
    assert json.loads(json.dumps(props["GlobalSecondaryIndexes"])) == expected["GlobalSecondaryIndexes"]


def test_roles_are_least_privilege(template):
    """No wildcard actions and no wildcard resources in the functions' policies."""
    for name in ("ApiRole", "TickRole", "SchedulerRole"):
        for policy in template["Resources"][name]["Properties"]["Policies"]:
            for statement in policy["PolicyDocument"]["Statement"]:
                actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
                assert all("*" not in a for a in actions), (name, actions)
                assert statement["Resource"] != "*", name


def test_the_tick_runs_every_minute_and_logs_expire(template):
    resources = template["Resources"]
    assert resources["TickSchedule"]["Properties"]["ScheduleExpression"] == "rate(1 minute)"
    for name in ("ApiLogGroup", "TickLogGroup"):
        assert resources[name]["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}
    assert "ApiUrl" in template["Outputs"]
    assert "Transform" not in template  # plain resources, no SAM
