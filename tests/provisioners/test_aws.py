"""The AWS provisioner against moto: plan, apply, idempotence, exact teardown, permissions, no-default-VPC."""

from __future__ import annotations

import json

import pytest

from pushpool.provisioners.aws import AwsProvisioner
from pushpool.provisioners.base import ProvisioningError, StepAction
from tests.fakes.aws import REGION
from tests.fakes.aws import account_snapshot as snapshot


def progress_log() -> tuple[list, object]:
    seen: list = []
    return seen, lambda step, i, n: seen.append((i, n, step.resource))


def test_plan_apply_again_and_destroy(aws):
    before = snapshot(aws)
    plan = AwsProvisioner().plan("etl", {"region": REGION})
    actions = {s.key: s.action for s in plan.steps}
    assert actions["vpc"] is StepAction.SKIP  # moto's region has a default VPC
    assert {k for k, a in actions.items() if a is StepAction.CREATE} >= {
        "log_group", "execution_role", "task_role", "identity", "key", "cluster", "security_group", "repository"}
    seen, progress = progress_log()
    result = AwsProvisioner().apply(plan, progress)
    assert [i for i, _, _ in seen] == list(range(1, len(plan.steps) + 1))
    defaults = result.job_variable_defaults
    assert defaults["cluster"] == "pushpool-etl" and defaults["region"] == REGION
    assert defaults["execution_role_arn"].endswith(":role/pushpool-etl-execution")
    assert defaults["security_groups"] and defaults["subnets"] and defaults["vpc_id"]
    assert result.credentials_block["data"]["aws_access_key_id"]
    assert result.registry_namespace == f"123456789012.dkr.ecr.{REGION}.amazonaws.com/pushpool/etl"
    iam = aws.client("iam")
    policy = json.loads(json.dumps(iam.get_user_policy(UserName="pushpool-etl-control-plane",
                                                       PolicyName="pushpool-etl-dispatch")["PolicyDocument"]))
    pass_role = next(s for s in policy["Statement"] if s.get("Sid") == "PassOnlyThePoolRoles")
    assert sorted(pass_role["Resource"]) == sorted([defaults["execution_role_arn"], defaults["task_role_arn"]])
    assert aws.client("logs").describe_log_groups(logGroupNamePrefix="/pushpool/etl")["logGroups"][0][
        "retentionInDays"] == 30
    assert aws.client("ecr").get_lifecycle_policy(repositoryName="pushpool/etl")["lifecyclePolicyText"]

    after_first = snapshot(aws)
    again = AwsProvisioner().plan("etl", {"region": REGION, "has_credentials": True})
    assert not [s for s in again.steps if s.action is StepAction.CREATE and s.key != "policy"]
    second = AwsProvisioner().apply(again, lambda *a: None)
    assert second.created == {} and second.credentials_block is None
    assert snapshot(aws) == after_first  # nothing new, no second access key

    AwsProvisioner().destroy("etl", {"region": REGION, "created": result.created}, lambda *a: None)
    assert snapshot(aws) == before


def test_assume_role_mode_creates_no_long_lived_key(aws):
    before = snapshot(aws)
    plan = AwsProvisioner().plan("ops", {"region": REGION, "assume_role": True})
    result = AwsProvisioner().apply(plan, lambda *a: None)
    block = result.credentials_block["data"]
    assert block["role_arn"].endswith(":role/pushpool-ops-control-plane") and block["external_id"]
    assert "aws_access_key_id" not in block and snapshot(aws)["keys"] == before["keys"]
    trust = aws.client("iam").get_role(RoleName="pushpool-ops-control-plane")["Role"]["AssumeRolePolicyDocument"]
    assert json.dumps(trust).count(block["external_id"]) == 1
    AwsProvisioner().destroy("ops", {"region": REGION, "created": result.created}, lambda *a: None)
    assert snapshot(aws) == before


def test_without_a_default_vpc_one_is_created_and_removed(aws):
    ec2 = aws.client("ec2")
    default = ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"][0]["VpcId"]
    for subnet in ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [default]}])["Subnets"]:
        ec2.delete_subnet(SubnetId=subnet["SubnetId"])
    for gw in ec2.describe_internet_gateways()["InternetGateways"]:
        ec2.detach_internet_gateway(InternetGatewayId=gw["InternetGatewayId"], VpcId=default)
        ec2.delete_internet_gateway(InternetGatewayId=gw["InternetGatewayId"])
    ec2.delete_vpc(VpcId=default)
    before = snapshot(aws)
    plan = AwsProvisioner().plan("novpc", {"region": REGION})
    assert {s.key: s.action for s in plan.steps}["vpc"] is StepAction.CREATE
    result = AwsProvisioner().apply(plan, lambda *a: None)
    vpc = ec2.describe_vpcs(VpcIds=[result.job_variable_defaults["vpc_id"]])["Vpcs"][0]
    assert vpc["CidrBlock"] == "172.31.0.0/16"
    assert len(result.job_variable_defaults["subnets"]) == 3
    AwsProvisioner().destroy("novpc", {"region": REGION, "created": result.created}, lambda *a: None)
    assert snapshot(aws) == before


def test_a_missing_permission_names_the_iam_action(aws, monkeypatch):
    from botocore.exceptions import ClientError

    provisioner = AwsProvisioner()
    plan = provisioner.plan("denied", {"region": REGION})
    real_client = provisioner.client

    def client(options, service):
        c = real_client(options, service)
        if service == "iam":
            def create_role(**kwargs):
                raise ClientError({"Error": {"Code": "AccessDenied", "Message": "User: arn:aws:iam::1:user/me is "
                                             "not authorized to perform: iam:CreateRole"}}, "CreateRole")
            c.create_role = create_role
        return c

    monkeypatch.setattr(provisioner, "client", client)
    with pytest.raises(ProvisioningError, match="missing permission iam:CreateRole"):
        provisioner.apply(plan, lambda *a: None)


def test_no_region_is_a_clear_error(aws, monkeypatch):
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    with pytest.raises(ProvisioningError, match="no AWS region: pass --region"):
        AwsProvisioner().plan("x", {})


def test_a_fresh_account_gets_the_ecs_role_and_provisioning_waits_until_everything_works(aws, tmp_path):
    """Issue 23: in an account that never used ECS the service-linked role is made first, and the provisioner
    waits through IAM's propagation (the strict fake refuses what is younger than propagation_seconds) until the
    cluster is created and the new key works, so the first run after provisioning does not crash."""
    from pushpool.pushers.base import PusherContext
    from pushpool.pushers.ecs import EcsPusher
    from tests.pushers.test_ecs import job

    iam = aws.client("iam")
    for role in iam.list_roles(PathPrefix="/aws-service-role/ecs.amazonaws.com/")["Roles"]:
        iam.delete_service_linked_role(RoleName=role["RoleName"])
    aws.rules.propagation_seconds = 1.5
    plan = AwsProvisioner().plan("fresh", {"region": REGION})
    actions = {s.key: s.action for s in plan.steps}
    assert actions["service_role"] is StepAction.CREATE and actions["verify"] is StepAction.CHECK
    start = len(aws.rules.log)
    result = AwsProvisioner().apply(plan, lambda *a: None)
    assert iam.list_roles(PathPrefix="/aws-service-role/ecs.amazonaws.com/")["Roles"]
    clusters = [outcome for op, outcome in aws.rules.log[start:] if op == "CreateCluster"]
    assert clusters[0] == "InvalidParameterException" and clusters[-1] == "ok"  # refused while propagating, waited
    assert "service_role" not in json.dumps(result.created)  # account-wide: teardown leaves it
    probe = aws.client("ecs").describe_task_definition(taskDefinition="pushpool_fresh_probe")["taskDefinition"]
    assert probe["executionRoleArn"] == result.job_variable_defaults["execution_role_arn"]  # passed, as runs will

    # The first run right after: accepted at once, with the block the provisioner made.
    creds = result.credentials_block["data"]
    config = {**result.job_variable_defaults, "aws_credentials": creds, "image": "registry.example/f:1",
              "cpu": 256, "memory": 512, "launch_type": "FARGATE", "container_name": "pushpool"}

    pusher = EcsPusher(PusherContext(state_dir=tmp_path, api_url="x"))
    assert pusher.submit(job(config)).infra_id
    AwsProvisioner().destroy("fresh", {"region": REGION, "created": result.created}, lambda *a: None)
    assert aws.client("ecs").list_task_definitions(familyPrefix="pushpool_fresh_probe",
                                                   status="ACTIVE")["taskDefinitionArns"] == []


def test_provisioning_ends_when_the_new_key_works(aws):
    aws.rules.propagation_seconds = 6.0  # longer than the steps after the key take here, even on a busy machine
    result = AwsProvisioner().apply(AwsProvisioner().plan("keyed", {"region": REGION}), lambda *a: None)
    key = result.credentials_block["data"]["aws_access_key_id"]
    refused = [outcome for _, outcome in aws.rules.log if outcome in ("InvalidClientTokenId",
                                                                       "UnrecognizedClientException")]
    assert refused and aws.rules.propagated(f"key:{key}")  # tried before IAM had it, waited until it worked
    AwsProvisioner().destroy("keyed", {"region": REGION, "created": result.created}, lambda *a: None)
