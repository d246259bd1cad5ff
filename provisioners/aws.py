"""``--provision-infra`` for ``ecs:push`` pools: plan → apply → destroy, idempotent.

Runs on the user's machine with their own AWS login (boto3's default chain, ``--profile``,
``--region``). Creates only what is missing, tags everything ``pushpool:pool=<pool>``,
and reports what it created so ``destroy`` removes exactly that and nothing that
existed before.
"""

from __future__ import annotations

import ipaddress
import secrets
from typing import Any

from pushpool.provisioners.base import Plan, PlanStep, Progress, ProvisioningError, ProvisionResult, StepAction
from pushpool.pushers.aws_common import ACCESS_CODES, error_code
from pushpool.pushers.aws_names import pool_names

TAG = "pushpool:pool"
ECS_SERVICE_ROLE_PATH = "/aws-service-role/ecs.amazonaws.com/"
#: Error codes AWS answers while something just created has not propagated yet.
NOT_PROPAGATED = frozenset({"InvalidClientTokenId", "UnrecognizedClientException", "AccessDenied",
                            "AccessDeniedException", "InvalidParameterException", "ClientException"})
RETENTION_DAYS = 30


def names(pool: str) -> dict[str, str]:
    return pool_names(pool)


def call(action: str, fn: Any, **kwargs: Any) -> Any:
    """One AWS call; a missing permission names the IAM action."""
    try:
        return fn(**kwargs)
    except Exception as exc:  # noqa: BLE001
        code = error_code(exc)
        if code in ACCESS_CODES:
            raise ProvisioningError(f"missing permission {action}: your AWS identity may not call it "
                                    f"({exc}); ask for it or run with a profile that has it") from exc
        raise ProvisioningError(f"{action} failed: {exc}") from exc


def _missing(fn: Any, codes: tuple[str, ...], **kwargs: Any) -> bool:
    try:
        fn(**kwargs)
        return False
    except Exception as exc:  # noqa: BLE001
        if error_code(exc) in codes:
            return True
        raise ProvisioningError(f"checking {kwargs}: {exc}") from exc


class AwsProvisioner:
    def __init__(self) -> None:
        self._session: Any = None

    def session(self, options: dict[str, Any]) -> Any:
        import boto3

        if self._session is None:
            self._session = boto3.Session(profile_name=options.get("profile"), region_name=options.get("region"))
            if not self._session.region_name:
                raise ProvisioningError("no AWS region: pass --region or set one in your AWS profile")
        return self._session

    def client(self, options: dict[str, Any], service: str) -> Any:
        return self.session(options).client(service)

    # ------------------------------------------------------------------ plan
    def plan(self, pool_name: str, options: dict[str, Any]) -> Plan:
        n = names(pool_name)
        iam, ec2 = self.client(options, "iam"), self.client(options, "ec2")
        account = call("sts:GetCallerIdentity", self.client(options, "sts").get_caller_identity)["Account"]
        region = self.session(options).region_name
        default_vpc = call("ec2:DescribeVpcs", ec2.describe_vpcs,
                           Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"]
        assume = bool(options.get("assume_role"))
        steps: list[PlanStep] = []

        def step(key: str, resource: str, missing: bool, detail: str = "") -> None:
            steps.append(PlanStep(resource, StepAction.CREATE if missing else StepAction.EXISTS, detail, key))

        logs = self.client(options, "logs")
        found = call("logs:DescribeLogGroups", logs.describe_log_groups, logGroupNamePrefix=n["log_group"])
        step("log_group", f"CloudWatch log group {n['log_group']}",
             not any(g["logGroupName"] == n["log_group"] for g in found["logGroups"]), f"retention {RETENTION_DAYS} d")
        for key, detail in (("execution_role", "pulls images, writes logs"), ("task_role", "what flows run as")):
            step(key, f"IAM role {n[key]}", _missing(iam.get_role, ("NoSuchEntity",), RoleName=n[key]), detail)
        if assume:
            step("identity", f"IAM role {n['identity']}",
                 _missing(iam.get_role, ("NoSuchEntity",), RoleName=n["identity"]),
                 "assumed by the control plane with an external ID (no long-lived key)")
        else:
            step("identity", f"IAM user {n['identity']}",
                 _missing(iam.get_user, ("NoSuchEntity",), UserName=n["identity"]), "the control plane's identity")
            if options.get("has_credentials"):
                steps.append(PlanStep("access key", StepAction.SKIP, "the pool's credentials block has one", "key"))
            else:
                steps.append(PlanStep(f"access key of {n['identity']}", StepAction.CREATE,
                                      "stored encrypted in a credentials block", "key"))
        steps.append(PlanStep(f"policy {n['policy']}", StepAction.CREATE, "least privilege, on the identity",
                              "policy"))  # put_*_policy is an idempotent overwrite
        service_roles = call("iam:ListRoles", iam.list_roles, PathPrefix=ECS_SERVICE_ROLE_PATH)["Roles"]
        step("service_role", "IAM service-linked role AWSServiceRoleForECS", not service_roles,
             "ECS needs it for Fargate capacity providers; account-wide, kept on teardown")
        clusters = call("ecs:DescribeClusters", self.client(options, "ecs").describe_clusters,
                        clusters=[n["cluster"]])["clusters"]
        step("cluster", f"ECS cluster {n['cluster']}", not any(c["status"] == "ACTIVE" for c in clusters),
             "FARGATE and FARGATE_SPOT")
        vpc = default_vpc[0]["VpcId"] if default_vpc else self._pool_vpc(ec2, pool_name)
        if default_vpc:
            steps.append(PlanStep("VPC", StepAction.SKIP, f"the default VPC {vpc} is used", "vpc"))
        else:
            step("vpc", "VPC with public subnets", vpc is None, "no default VPC here")
        group = self._security_group(ec2, pool_name, vpc) if vpc else None
        # An existing group's id travels in the step's detail: apply reuses it.
        step("security_group", f"security group {n['security_group']}", group is None, group or "egress only")
        step("repository", f"ECR repository {n['repository']}",
             _missing(self.client(options, "ecr").describe_repositories, ("RepositoryNotFoundException",),
                      repositoryNames=[n["repository"]]), "with a lifecycle policy")
        steps.append(PlanStep("the pool's identity works", StepAction.CHECK, "waits until IAM has propagated it, "
                              "then lists the cluster's tasks with it", "verify"))
        return Plan(pool_name=pool_name, steps=steps, options={
            **options, "region": region, "account": account,
            "default_vpc": default_vpc[0]["VpcId"] if default_vpc else None})

    def _pool_vpc(self, ec2: Any, pool_name: str) -> str | None:
        vpcs = call("ec2:DescribeVpcs", ec2.describe_vpcs,
                    Filters=[{"Name": f"tag:{TAG}", "Values": [pool_name]}])["Vpcs"]
        return vpcs[0]["VpcId"] if vpcs else None

    def _security_group(self, ec2: Any, pool_name: str, vpc: str) -> str | None:
        group_name = names(pool_name)["security_group"]
        groups = call("ec2:DescribeSecurityGroups", ec2.describe_security_groups, Filters=[
            {"Name": "vpc-id", "Values": [vpc]}, {"Name": "group-name", "Values": [group_name]}])
        return groups["SecurityGroups"][0]["GroupId"] if groups["SecurityGroups"] else None

    # ------------------------------------------------------------------ apply
    def apply(self, plan: Plan, progress: Progress) -> ProvisionResult:
        from pushpool.provisioners.aws_apply import Applier

        return Applier(self, plan).run(progress)

    def destroy(self, pool_name: str, provisioning: dict[str, Any], progress: Progress) -> None:
        from pushpool.provisioners.aws_apply import destroy

        destroy(self, pool_name, provisioning, progress)


def free_cidr(existing: list[str]) -> str:
    """The first /16 from 172.31.0.0/16 downwards that overlaps no existing VPC."""
    taken = [ipaddress.ip_network(c) for c in existing]
    for third in range(31, 15, -1):
        candidate = ipaddress.ip_network(f"172.{third}.0.0/16")
        if not any(candidate.overlaps(t) for t in taken):
            return str(candidate)
    raise ProvisioningError("no free 172.16–31.0.0/16 range for a VPC; pass the pool's subnets yourself")


def new_external_id() -> str:
    return secrets.token_urlsafe(24)
