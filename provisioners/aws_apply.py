"""Carrying out an AWS provisioning plan, and undoing exactly what it created."""

from __future__ import annotations

import json
from typing import Any

from pushpool.provisioners import aws_policies as policies
from pushpool.provisioners.aws import NOT_PROPAGATED, RETENTION_DAYS, TAG, call, free_cidr, names, new_external_id
from pushpool.provisioners.base import Plan, PlanStep, Progress, ProvisionResult, StepAction, wait_until_it_works
from pushpool.pushers.aws_common import error_code


class Applier:
    def __init__(self, provisioner: Any, plan: Plan) -> None:
        self.p, self.plan, self.opts = provisioner, plan, plan.options
        self.n = names(plan.pool_name)
        self.region, self.account = self.opts["region"], self.opts["account"]
        self.result = ProvisionResult()
        self.created: dict[str, Any] = {}
        self.defaults: dict[str, Any] = {"region": self.region, "cluster": self.n["cluster"],
                                         "cloudwatch_logs": {"enabled": True, "log_group": self.n["log_group"],
                                                             "stream_prefix": "pushpool",
                                                             "retention_days": RETENTION_DAYS}}

    def client(self, service: str) -> Any:
        return self.p.client(self.opts, service)

    def tags(self, key: str = "Key", value: str = "Value") -> list[dict[str, str]]:
        return [{key: TAG, value: self.plan.pool_name}]

    def run(self, progress: Progress) -> ProvisionResult:
        total = len(self.plan.steps)
        for index, step in enumerate(self.plan.steps, start=1):
            getattr(self, f"do_{step.key}")(step)
            progress(step, index, total)
        self.result.job_variable_defaults = self.defaults
        self.result.created = self.created
        self.result.registry_namespace = f"{self.account}.dkr.ecr.{self.region}.amazonaws.com/{self.n['repository']}"
        self.result.summary = ("its job template now defaults to the provisioned cluster, roles, network and logs; "
                               f"images go to {self.result.registry_namespace}.")
        return self.result

    # ------------------------------------------------------------------ steps
    def do_log_group(self, step: PlanStep) -> None:
        logs = self.client("logs")
        if step.action is StepAction.CREATE:
            call("logs:CreateLogGroup", logs.create_log_group, logGroupName=self.n["log_group"],
                 tags={TAG: self.plan.pool_name})
            self.created["log_group"] = self.n["log_group"]
        call("logs:PutRetentionPolicy", logs.put_retention_policy, logGroupName=self.n["log_group"],
             retentionInDays=RETENTION_DAYS)

    def _role(self, step: PlanStep, key: str, trust: str) -> str:
        iam = self.client("iam")
        if step.action is StepAction.CREATE:
            role = call("iam:CreateRole", iam.create_role, RoleName=self.n[key], AssumeRolePolicyDocument=trust,
                        Tags=self.tags())["Role"]
            self.created.setdefault("roles", []).append(self.n[key])
        else:
            role = call("iam:GetRole", iam.get_role, RoleName=self.n[key])["Role"]
        return role["Arn"]

    def do_execution_role(self, step: PlanStep) -> None:
        arn = self._role(step, "execution_role", policies.trust("ecs-tasks.amazonaws.com"))
        call("iam:PutRolePolicy", self.client("iam").put_role_policy, RoleName=self.n["execution_role"],
             PolicyName="pushpool-execution",
             PolicyDocument=policies.execution_policy(self.region, self.account, self.n["log_group"]))
        self.defaults["execution_role_arn"] = arn

    def do_task_role(self, step: PlanStep) -> None:
        self.defaults["task_role_arn"] = self._role(step, "task_role", policies.trust("ecs-tasks.amazonaws.com"))

    def do_identity(self, step: PlanStep) -> None:
        iam = self.client("iam")
        if self.opts.get("assume_role"):
            external_id = self.opts.get("external_id") or new_external_id()
            arn = self._role(step, "identity", policies.trust(account=self.account, external_id=external_id))
            if step.action is StepAction.EXISTS:  # keep the external ID the role already trusts
                document = call("iam:GetRole", iam.get_role, RoleName=self.n["identity"])["Role"]
                trust = document["AssumeRolePolicyDocument"]
                trust = json.loads(trust) if isinstance(trust, str) else trust
                external_id = trust["Statement"][0]["Condition"]["StringEquals"]["sts:ExternalId"]
            if not self.opts.get("has_credentials"):
                self.result.credentials_block = {"type": "aws-credentials", "data": {
                    "role_arn": arn, "external_id": external_id, "region_name": self.region}}
            return
        if step.action is StepAction.CREATE:
            call("iam:CreateUser", iam.create_user, UserName=self.n["identity"], Tags=self.tags())
            self.created["user"] = self.n["identity"]

    def do_key(self, step: PlanStep) -> None:
        if step.action is not StepAction.CREATE:
            return
        key = call("iam:CreateAccessKey", self.client("iam").create_access_key, UserName=self.n["identity"])
        key = key["AccessKey"]
        self.created.setdefault("access_keys", []).append(key["AccessKeyId"])
        self.result.credentials_block = {"type": "aws-credentials", "data": {
            "aws_access_key_id": key["AccessKeyId"], "aws_secret_access_key": key["SecretAccessKey"],
            "region_name": self.region}}

    def do_policy(self, step: PlanStep) -> None:
        role_arns = [v for k, v in self.defaults.items() if k in ("execution_role_arn", "task_role_arn")]
        document = policies.dispatch_policy(self.region, self.account, self.n["cluster"], self.n["family"],
                                            role_arns, self.n["log_group"])
        iam = self.client("iam")
        if self.opts.get("assume_role"):
            call("iam:PutRolePolicy", iam.put_role_policy, RoleName=self.n["identity"], PolicyName=self.n["policy"],
                 PolicyDocument=document)
        else:
            call("iam:PutUserPolicy", iam.put_user_policy, UserName=self.n["identity"], PolicyName=self.n["policy"],
                 PolicyDocument=document)

    def do_service_role(self, step: PlanStep) -> None:
        if step.action is StepAction.CREATE:  # account-wide and used by ECS itself: never deleted by teardown
            iam = self.client("iam")

            def create() -> None:
                try:
                    iam.create_service_linked_role(AWSServiceName="ecs.amazonaws.com")
                except Exception as exc:
                    if error_code(exc) != "InvalidInput":  # "has been taken in this account": made meanwhile
                        raise

            call("iam:CreateServiceLinkedRole", create)

    def do_cluster(self, step: PlanStep) -> None:
        if step.action is StepAction.CREATE:
            ecs = self.client("ecs")
            # A service-linked role made a moment ago: ECS cannot assume it until IAM has propagated it.
            cluster = wait_until_it_works(
                "ecs:CreateCluster", lambda: ecs.create_cluster(
                    clusterName=self.n["cluster"], capacityProviders=["FARGATE", "FARGATE_SPOT"],
                    defaultCapacityProviderStrategy=[{"capacityProvider": "FARGATE", "weight": 1}],
                    tags=self.tags("key", "value"))["cluster"],
                lambda exc: error_code(exc) == "InvalidParameterException")
            self.created["cluster"] = cluster["clusterArn"]

    def do_verify(self, step: PlanStep) -> None:
        """Wait until the identity the control plane will use works: it lists the cluster's tasks and registers a
        probe task definition that passes the pool's roles (iam:PassRole, the usual first-run failure). ECS has
        no dry run of RunTask; a first RunTask refused while a role propagates is retried by the dispatcher."""
        data = (self.result.credentials_block or {}).get("data")
        if not data:
            return  # the pool keeps credentials made before: they work already
        from pushpool.pushers.aws_common import session_for
        from pushpool.pushers.aws_names import task_family

        roles = {k: self.defaults[v] for k, v in (("executionRoleArn", "execution_role_arn"),
                                                  ("taskRoleArn", "task_role_arn")) if self.defaults.get(v)}
        probe = {"family": task_family(self.plan.pool_name, "probe"), "networkMode": "awsvpc", "cpu": "256",
                 "memory": "512", "requiresCompatibilities": ["FARGATE"], **roles,
                 "containerDefinitions": [{"name": "probe", "image": "public.ecr.aws/docker/library/busybox:latest",
                                           "essential": True, "memory": 512}]}

        def check() -> None:
            session = session_for(data, self.region)  # assumes the role when the block names one
            session.client("sts").get_caller_identity()
            ecs = session.client("ecs")
            ecs.list_tasks(cluster=self.n["cluster"], maxResults=1)
            ecs.register_task_definition(**probe)
            self.created["probe_family"] = probe["family"]

        wait_until_it_works("using the pool's new AWS identity", check,  # (session_for translates, keeping the cause)
                            lambda exc: bool({error_code(exc), error_code(exc.__cause__ or exc)} & NOT_PROPAGATED))

    def do_vpc(self, step: PlanStep) -> None:
        ec2 = self.client("ec2")
        vpc_id = self.opts.get("default_vpc") or self.p._pool_vpc(ec2, self.plan.pool_name)
        if vpc_id is None:
            vpc_id = self._create_vpc(ec2)
        subnets = call("ec2:DescribeSubnets", ec2.describe_subnets,
                       Filters=[{"Name": "vpc-id", "Values": [vpc_id]}])["Subnets"]
        self.defaults.update(vpc_id=vpc_id, subnets=[s["SubnetId"] for s in subnets][:3], assign_public_ip=True)

    def _create_vpc(self, ec2: Any) -> str:
        existing = [v["CidrBlock"] for v in call("ec2:DescribeVpcs", ec2.describe_vpcs)["Vpcs"]]
        cidr = free_cidr(existing)
        spec = [{"ResourceType": "vpc", "Tags": self.tags()}]
        vpc_id = call("ec2:CreateVpc", ec2.create_vpc, CidrBlock=cidr, TagSpecifications=spec)["Vpc"]["VpcId"]
        record: dict[str, Any] = {"vpc_id": vpc_id, "subnets": []}
        self.created["vpc"] = record
        igw = call("ec2:CreateInternetGateway", ec2.create_internet_gateway, TagSpecifications=[
            {"ResourceType": "internet-gateway", "Tags": self.tags()}])["InternetGateway"]["InternetGatewayId"]
        record["internet_gateway"] = igw
        call("ec2:AttachInternetGateway", ec2.attach_internet_gateway, InternetGatewayId=igw, VpcId=vpc_id)
        table = call("ec2:CreateRouteTable", ec2.create_route_table, VpcId=vpc_id, TagSpecifications=[
            {"ResourceType": "route-table", "Tags": self.tags()}])["RouteTable"]["RouteTableId"]
        record["route_table"] = table
        call("ec2:CreateRoute", ec2.create_route, RouteTableId=table, DestinationCidrBlock="0.0.0.0/0", GatewayId=igw)
        zones = [z["ZoneName"] for z in call("ec2:DescribeAvailabilityZones",
                                             ec2.describe_availability_zones)["AvailabilityZones"]][:3]
        base = cidr.split(".")
        for i, zone in enumerate(zones):
            subnet = call("ec2:CreateSubnet", ec2.create_subnet, VpcId=vpc_id, AvailabilityZone=zone,
                          CidrBlock=f"{base[0]}.{base[1]}.{i * 16}.0/20", TagSpecifications=[
                              {"ResourceType": "subnet", "Tags": self.tags()}])["Subnet"]["SubnetId"]
            record["subnets"].append(subnet)
            call("ec2:ModifySubnetAttribute", ec2.modify_subnet_attribute, SubnetId=subnet,
                 MapPublicIpOnLaunch={"Value": True})
            call("ec2:AssociateRouteTable", ec2.associate_route_table, RouteTableId=table, SubnetId=subnet)
        return vpc_id

    def do_security_group(self, step: PlanStep) -> None:
        ec2 = self.client("ec2")
        if step.action is StepAction.EXISTS:
            self.defaults["security_groups"] = [step.detail]
            return
        group = call("ec2:CreateSecurityGroup", ec2.create_security_group, GroupName=self.n["security_group"],
                     Description="pushpool flow runs (egress only)", VpcId=self.defaults["vpc_id"],
                     TagSpecifications=[{"ResourceType": "security-group", "Tags": self.tags()}])["GroupId"]
        self.created["security_group"] = group
        self.defaults["security_groups"] = [group]

    def do_repository(self, step: PlanStep) -> None:
        ecr = self.client("ecr")
        if step.action is StepAction.CREATE:
            call("ecr:CreateRepository", ecr.create_repository, repositoryName=self.n["repository"], tags=self.tags())
            self.created["repository"] = self.n["repository"]
        call("ecr:PutLifecyclePolicy", ecr.put_lifecycle_policy, repositoryName=self.n["repository"],
             lifecyclePolicyText=policies.LIFECYCLE_POLICY)


def destroy(provisioner: Any, pool_name: str, provisioning: dict[str, Any], progress: Progress) -> None:
    """Delete exactly the resources recorded as created, newest first."""
    opts = {"region": provisioning.get("region"), "profile": provisioning.get("profile")}
    created = provisioning.get("created", {})
    iam, ec2 = provisioner.client(opts, "iam"), provisioner.client(opts, "ec2")
    steps: list[tuple[str, Any]] = []
    if "repository" in created:
        steps.append((f"ECR repository {created['repository']}", lambda: call(
            "ecr:DeleteRepository", provisioner.client(opts, "ecr").delete_repository,
            repositoryName=created["repository"], force=True)))
    if "security_group" in created:
        steps.append((f"security group {created['security_group']}", lambda: call(
            "ec2:DeleteSecurityGroup", ec2.delete_security_group, GroupId=created["security_group"])))
    if "vpc" in created:
        steps.append((f"VPC {created['vpc']['vpc_id']}", lambda: _delete_vpc(ec2, created["vpc"])))
    if "probe_family" in created:
        steps.append((f"task definitions {created['probe_family']}", lambda: _deregister_family(
            provisioner.client(opts, "ecs"), created["probe_family"])))
    if "cluster" in created:
        steps.append((f"ECS cluster {created['cluster']}", lambda: call(
            "ecs:DeleteCluster", provisioner.client(opts, "ecs").delete_cluster, cluster=created["cluster"])))
    if "user" in created:
        steps.append((f"IAM user {created['user']}", lambda: _delete_user(iam, created["user"])))
    for role in created.get("roles", []):
        steps.append((f"IAM role {role}", lambda role=role: _delete_role(iam, role)))
    if "log_group" in created:
        logs = provisioner.client(opts, "logs")
        steps.append((f"log group {created['log_group']}", lambda: call(
            "logs:DeleteLogGroup", logs.delete_log_group, logGroupName=created["log_group"])))
    for index, (resource, action) in enumerate(steps, start=1):
        action()
        progress(PlanStep(resource, StepAction.CREATE, "deleted", "destroy"), index, len(steps))


def _deregister_family(ecs: Any, family: str) -> None:
    arns = call("ecs:ListTaskDefinitions", ecs.list_task_definitions, familyPrefix=family)["taskDefinitionArns"]
    for arn in arns:
        call("ecs:DeregisterTaskDefinition", ecs.deregister_task_definition, taskDefinition=arn)


def _delete_user(iam: Any, user: str) -> None:
    for key in call("iam:ListAccessKeys", iam.list_access_keys, UserName=user)["AccessKeyMetadata"]:
        call("iam:DeleteAccessKey", iam.delete_access_key, UserName=user, AccessKeyId=key["AccessKeyId"])
    for policy in call("iam:ListUserPolicies", iam.list_user_policies, UserName=user)["PolicyNames"]:
        call("iam:DeleteUserPolicy", iam.delete_user_policy, UserName=user, PolicyName=policy)
    call("iam:DeleteUser", iam.delete_user, UserName=user)


def _delete_role(iam: Any, role: str) -> None:
    for policy in call("iam:ListRolePolicies", iam.list_role_policies, RoleName=role)["PolicyNames"]:
        call("iam:DeleteRolePolicy", iam.delete_role_policy, RoleName=role, PolicyName=policy)
    call("iam:DeleteRole", iam.delete_role, RoleName=role)


def _delete_vpc(ec2: Any, record: dict[str, Any]) -> None:
    if record.get("route_table"):
        tables = call("ec2:DescribeRouteTables", ec2.describe_route_tables, RouteTableIds=[record["route_table"]])
        for association in tables["RouteTables"][0].get("Associations", []):
            if not association.get("Main"):
                call("ec2:DisassociateRouteTable", ec2.disassociate_route_table,
                     AssociationId=association["RouteTableAssociationId"])
    for subnet in record.get("subnets", []):
        call("ec2:DeleteSubnet", ec2.delete_subnet, SubnetId=subnet)
    if record.get("route_table"):
        call("ec2:DeleteRouteTable", ec2.delete_route_table, RouteTableId=record["route_table"])
    if record.get("internet_gateway"):
        call("ec2:DetachInternetGateway", ec2.detach_internet_gateway, InternetGatewayId=record["internet_gateway"],
             VpcId=record["vpc_id"])
        call("ec2:DeleteInternetGateway", ec2.delete_internet_gateway, InternetGatewayId=record["internet_gateway"])
    call("ec2:DeleteVpc", ec2.delete_vpc, VpcId=record["vpc_id"])
