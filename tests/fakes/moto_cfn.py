"""Three resource types moto's CloudFormation lacks, so ``infra/pushpool.yaml`` deploys into it unchanged.

* ``AWS::Lambda::Url`` — backed by moto's own Lambda function URL config (the
  ``FunctionUrl`` attribute is what the stack outputs as the API URL).
* ``AWS::Scheduler::Schedule`` — backed by moto's EventBridge Scheduler (schedules
  never fire there; tests invoke the tick handler with the schedule's own input).
* ``AWS::CloudWatch::Alarm`` — backed by moto's CloudWatch ``PutMetricAlarm`` (its own checks apply).

Registered once per process by :func:`register`; moto discovers CloudFormation
models as subclasses of ``CloudFormationModel``.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import zipfile
from pathlib import Path
from typing import Any

from moto.cloudformation import parsing
from moto.core.common_models import CloudFormationModel

from pushpool.provisioners.lambda_package import LambdaPackage


class FunctionUrl(CloudFormationModel):
    def __init__(self, function_arn: str, url: str) -> None:
        self.function_arn = function_arn
        self.url = url

    @staticmethod
    def cloudformation_name_type() -> str:
        return ""

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::Lambda::Url"

    @classmethod
    def has_cfn_attr(cls, attr: str) -> bool:
        return attr in ("FunctionUrl", "FunctionArn")

    def get_cfn_attribute(self, attribute_name: str) -> str:
        return self.url if attribute_name == "FunctionUrl" else self.function_arn

    @property
    def physical_resource_id(self) -> str:
        return self.function_arn

    @classmethod
    def create_from_cloudformation_json(cls, resource_name: str, cloudformation_json: dict[str, Any],  # type: ignore[override]
                                        account_id: str, region_name: str, **kwargs: Any) -> FunctionUrl:
        from moto.awslambda.models import lambda_backends

        props = cloudformation_json["Properties"]
        config = lambda_backends[account_id][region_name].create_function_url_config(
            props["TargetFunctionArn"], {"AuthType": props["AuthType"], "InvokeMode": props.get("InvokeMode")})
        return cls(props["TargetFunctionArn"], config.url + "/")

    def delete(self, account_id: str, region_name: str) -> None:
        from moto.awslambda.exceptions import UnknownFunctionException
        from moto.awslambda.models import lambda_backends

        with contextlib.suppress(UnknownFunctionException):  # the function went first; its URL went with it
            lambda_backends[account_id][region_name].delete_function_url_config(self.function_arn)


class Schedule(CloudFormationModel):
    def __init__(self, name: str, arn: str) -> None:
        self.name = name
        self.arn = arn

    @staticmethod
    def cloudformation_name_type() -> str:
        return "Name"

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::Scheduler::Schedule"

    @classmethod
    def has_cfn_attr(cls, attr: str) -> bool:
        return attr == "Arn"

    def get_cfn_attribute(self, attribute_name: str) -> str:
        return self.arn

    @property
    def physical_resource_id(self) -> str:
        return self.name

    @classmethod
    def create_from_cloudformation_json(cls, resource_name: str, cloudformation_json: dict[str, Any],  # type: ignore[override]
                                        account_id: str, region_name: str, **kwargs: Any) -> Schedule:
        from moto.scheduler.models import scheduler_backends

        props = cloudformation_json["Properties"]
        schedule = scheduler_backends[account_id][region_name].create_schedule(
            description=props.get("Description", ""), end_date=None, flexible_time_window=props["FlexibleTimeWindow"],
            group_name=props.get("GroupName"), kms_key_arn=None, name=resource_name,
            schedule_expression=props["ScheduleExpression"], schedule_expression_timezone="UTC", start_date=None,
            state=props.get("State", "ENABLED"), target=props["Target"], action_after_completion=None)
        return cls(resource_name, schedule.arn)

    def delete(self, account_id: str, region_name: str) -> None:
        from moto.scheduler.models import scheduler_backends

        scheduler_backends[account_id][region_name].delete_schedule(None, self.name)


class MetricAlarm(CloudFormationModel):
    def __init__(self, name: str) -> None:
        self.name = name

    @staticmethod
    def cloudformation_name_type() -> str:
        return "AlarmName"

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::CloudWatch::Alarm"

    @property
    def physical_resource_id(self) -> str:
        return self.name

    @classmethod
    def create_from_cloudformation_json(cls, resource_name: str, cloudformation_json: dict[str, Any],  # type: ignore[override]
                                        account_id: str, region_name: str, **kwargs: Any) -> MetricAlarm:
        from moto.cloudwatch.models import cloudwatch_backends

        props = cloudformation_json["Properties"]
        name = props.get("AlarmName") or resource_name
        cloudwatch_backends[account_id][region_name].put_metric_alarm(
            name=name, namespace=props["Namespace"], metric_name=props["MetricName"],
            comparison_operator=props["ComparisonOperator"], evaluation_periods=int(props["EvaluationPeriods"]),
            period=int(props["Period"]), threshold=float(props["Threshold"]), statistic=props.get("Statistic"),
            extended_statistic=props.get("ExtendedStatistic"), description=props.get("AlarmDescription", ""),
            dimensions=props.get("Dimensions") or [], alarm_actions=props.get("AlarmActions") or [],
            ok_actions=props.get("OKActions") or [], treat_missing_data=props.get("TreatMissingData"))
        return cls(name)

    def delete(self, account_id: str, region_name: str) -> None:
        from moto.cloudwatch.models import cloudwatch_backends

        cloudwatch_backends[account_id][region_name].delete_alarms([self.name])


def placeholder_package(directory: Path) -> LambdaPackage:
    """Some zip for the stack's functions: moto never runs them (tests call the handlers in-process)."""
    path = directory / "pushpool-lambda-test.zip"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("pushpool/control_plane/__init__.py", "")
    path.write_bytes(buffer.getvalue())
    return LambdaPackage(path, hashlib.sha256(buffer.getvalue()).hexdigest(), path.stat().st_size, 0, "3.13")


def register() -> None:
    """Make moto's CloudFormation see the models above (its model map is cached)."""
    parsing.get_model_list.cache_clear()
    parsing.get_model_map.cache_clear()
    parsing.get_name_type_map.cache_clear()
