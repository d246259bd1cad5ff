"""IAM documents for an ``ecs:push`` pool, scoped to the pool's own resources."""

from __future__ import annotations

import json
from typing import Any


def trust(service: str | None = None, account: str | None = None, external_id: str | None = None) -> str:
    principal: dict[str, Any] = {"Service": service} if service else {"AWS": f"arn:aws:iam::{account}:root"}
    statement: dict[str, Any] = {"Effect": "Allow", "Principal": principal, "Action": "sts:AssumeRole"}
    if external_id:
        statement["Condition"] = {"StringEquals": {"sts:ExternalId": external_id}}
    return json.dumps({"Version": "2012-10-17", "Statement": [statement]})


def execution_policy(region: str, account: str, log_group: str) -> str:
    """What ECS needs to start a task: pull from ECR and write (and create) the log group."""
    return json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["ecr:GetAuthorizationToken"], "Resource": "*"},
        {"Effect": "Allow", "Action": ["ecr:BatchCheckLayerAvailability", "ecr:GetDownloadUrlForLayer",
                                       "ecr:BatchGetImage"], "Resource": "*"},
        {"Effect": "Allow", "Action": ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
         "Resource": f"arn:aws:logs:{region}:{account}:log-group:{log_group}:*"},
    ]})


def dispatch_policy(region: str, account: str, cluster: str, family: str, role_arns: list[str],
                    log_group: str) -> str:
    """What the control plane needs for this pool, and nothing else."""
    cluster_arn = f"arn:aws:ecs:{region}:{account}:cluster/{cluster}"
    return json.dumps({"Version": "2012-10-17", "Statement": [
        {"Sid": "RunTasksOfThePool", "Effect": "Allow", "Action": ["ecs:RunTask"],
         "Resource": f"arn:aws:ecs:{region}:{account}:task-definition/{family}_*:*",  # one family a content
         "Condition": {"ArnEquals": {"ecs:cluster": cluster_arn}}},
        {"Sid": "WatchAndStopTasks", "Effect": "Allow",
         "Action": ["ecs:DescribeTasks", "ecs:StopTask", "ecs:ListTasks", "ecs:TagResource"],
         "Resource": "*", "Condition": {"ArnEquals": {"ecs:cluster": cluster_arn}}},
        {"Sid": "TaskDefinitions", "Effect": "Allow",
         "Action": ["ecs:RegisterTaskDefinition", "ecs:DescribeTaskDefinition", "ecs:TagResource"], "Resource": "*"},
        {"Sid": "PassOnlyThePoolRoles", "Effect": "Allow", "Action": ["iam:PassRole"], "Resource": role_arns},
        {"Sid": "FindTheNetwork", "Effect": "Allow",
         "Action": ["ec2:DescribeVpcs", "ec2:DescribeSubnets", "ec2:DescribeSecurityGroups"], "Resource": "*"},
        {"Sid": "ReadTheLogs", "Effect": "Allow", "Action": ["logs:GetLogEvents", "logs:FilterLogEvents"],
         "Resource": f"arn:aws:logs:{region}:{account}:log-group:{log_group}:*"},
    ]})


LIFECYCLE_POLICY = json.dumps({"rules": [
    {"rulePriority": 1, "description": "expire untagged images after 7 days",
     "selection": {"tagStatus": "untagged", "countType": "sinceImagePushed", "countUnit": "days", "countNumber": 7},
     "action": {"type": "expire"}},
    {"rulePriority": 2, "description": "keep the 100 newest images",
     "selection": {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 100},
     "action": {"type": "expire"}},
]})
