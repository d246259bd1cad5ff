"""Deploys, inspects and removes the serverless control plane's CloudFormation stack.

Runs on the user's machine with the user's own AWS login (like the other
provisioners). ``deploy`` uploads the Lambda package to an S3 bucket it creates
(private, encrypted, named after the account, region and stack), creates or updates
the stack from ``infra/pushpool.yaml`` and waits, reporting each stack event.
``bootstrap_owner`` creates the first workspace and owner key straight in the
stack's table, once. ``destroy`` keeps an on-demand backup of the table first
(unless told not to), deletes the stack and then the code bucket.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pushpool.infra import stack_template
from pushpool.provisioners.aws import call
from pushpool.provisioners.base import ProvisioningError
from pushpool.provisioners.lambda_package import LambdaPackage
from pushpool.pushers.aws_common import error_code

Report = Callable[[str], None]
_DONE = ("CREATE_COMPLETE", "UPDATE_COMPLETE", "DELETE_COMPLETE", "ROLLBACK_COMPLETE", "UPDATE_ROLLBACK_COMPLETE",
         "CREATE_FAILED", "ROLLBACK_FAILED", "DELETE_FAILED", "UPDATE_ROLLBACK_FAILED", "IMPORT_COMPLETE")
_GOOD = ("CREATE_COMPLETE", "UPDATE_COMPLETE")


@dataclass
class StackInfo:
    name: str
    region: str
    status: str
    outputs: dict[str, str] = field(default_factory=dict)
    changed: bool = True

    @property
    def api_url(self) -> str | None:
        url = self.outputs.get("ApiUrl")
        return url.rstrip("/") if url else None


class LambdaStack:
    def __init__(self, stack_name: str, region: str | None, *, profile: str | None = None,
                 poll_seconds: float = 3.0) -> None:
        import boto3

        self.session = boto3.Session(profile_name=profile, region_name=region)
        if not self.session.region_name:
            raise ProvisioningError("no AWS region: pass --region or set one in your AWS profile")
        self.name, self.region, self.poll_seconds = stack_name, self.session.region_name, poll_seconds
        self.cfn = self.session.client("cloudformation")
        self.s3 = self.session.client("s3")

    # ------------------------------------------------------------------ read
    def describe(self) -> StackInfo | None:
        try:
            stack = self.cfn.describe_stacks(StackName=self.name)["Stacks"][0]
        except Exception as exc:  # noqa: BLE001
            if error_code(exc) == "ValidationError":  # "Stack with id X does not exist"
                return None
            raise ProvisioningError(f"cloudformation:DescribeStacks failed: {exc}") from exc
        outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
        return StackInfo(self.name, self.region, stack["StackStatus"], outputs)

    def bucket_name(self) -> str:
        account = call("sts:GetCallerIdentity", self.session.client("sts").get_caller_identity)["Account"]
        return f"pushpool-{account}-{self.region}-{self.name}".lower()[:63].rstrip("-")

    def last_tick(self, info: StackInfo) -> dict[str, Any] | None:
        """What the tick function last recorded (read straight from the table)."""
        table = info.outputs.get("TableName")
        if not table:
            return None
        from pushpool.control_plane.storage.dynamodb import DynamoDbStore

        store = DynamoDbStore(table, region=self.region, session=self.session)
        try:
            value = store.get_meta("last_tick")
        finally:
            store.close()
        return json.loads(value) if value else None

    # ------------------------------------------------------------------ deploy
    def upload(self, package: LambdaPackage, report: Report) -> tuple[str, str]:
        bucket = self.bucket_name()
        try:
            self.s3.head_bucket(Bucket=bucket)
        except Exception as exc:  # noqa: BLE001
            if error_code(exc) not in ("404", "NoSuchBucket", "NotFound"):
                raise ProvisioningError(f"s3:HeadBucket on {bucket} failed: {exc}") from exc
            report(f"Creating the code bucket {bucket}")
            where = {} if self.region == "us-east-1" else {
                "CreateBucketConfiguration": {"LocationConstraint": self.region}}
            call("s3:CreateBucket", self.s3.create_bucket, Bucket=bucket, **where)
            call("s3:PutPublicAccessBlock", self.s3.put_public_access_block, Bucket=bucket,
                 PublicAccessBlockConfiguration={"BlockPublicAcls": True, "IgnorePublicAcls": True,
                                                 "BlockPublicPolicy": True, "RestrictPublicBuckets": True})
        key = f"lambda/{package.path.name}"
        try:
            self.s3.head_object(Bucket=bucket, Key=key)
            report(f"Package {key} is already uploaded")
        except Exception as exc:  # noqa: BLE001
            if error_code(exc) not in ("404", "NoSuchKey", "NotFound"):
                raise ProvisioningError(f"s3:HeadObject failed: {exc}") from exc
            report(f"Uploading {package.path.name} ({package.zipped_bytes / 2**20:.1f} MB)")
            call("s3:PutObject", self.s3.upload_file, Filename=str(package.path), Bucket=bucket, Key=key,
                 ExtraArgs={"ServerSideEncryption": "AES256"})
        return bucket, key

    def deploy(self, package: LambdaPackage, report: Report, parameters: dict[str, str] | None = None) -> StackInfo:
        bucket, key = self.upload(package, report)
        params = {"CodeBucket": bucket, "CodeKey": key, "PythonRuntime": f"python{package.python_version}",
                  **(parameters or {})}
        request = {"StackName": self.name, "TemplateBody": stack_template(),
                   "Parameters": [{"ParameterKey": k, "ParameterValue": v} for k, v in params.items()],
                   "Capabilities": ["CAPABILITY_IAM"], "Tags": [{"Key": "pushpool:stack", "Value": self.name}]}
        existing = self.describe()
        if existing is not None and existing.status == "ROLLBACK_COMPLETE":
            report("The stack's first creation failed earlier; deleting it before trying again")
            self._delete_and_wait(report)
            existing = None
        started = time.time()
        if existing is None:
            report(f"Creating stack {self.name} in {self.region}")
            call("cloudformation:CreateStack", self.cfn.create_stack, **request)
        else:
            try:
                self.cfn.update_stack(**request)
                report(f"Updating stack {self.name} in {self.region}")
            except Exception as exc:  # noqa: BLE001
                if error_code(exc) == "ValidationError" and "No updates" in str(exc):
                    existing.changed = False
                    report("The stack is up to date")
                    return existing
                raise ProvisioningError(f"cloudformation:UpdateStack failed: {exc}") from exc
        info = self._wait(report, started)
        if info is None or info.status not in _GOOD:
            status = info.status if info else "gone"
            raise ProvisioningError(f"the stack ended {status}: see the events above, or the CloudFormation console "
                                    f"(https://{self.region}.console.aws.amazon.com/cloudformation/home"
                                    f"?region={self.region})")
        return info

    def _wait(self, report: Report, started: float) -> StackInfo | None:
        seen: set[str] = set()
        while True:
            self._report_events(report, started, seen)
            info = self.describe()
            if info is None or info.status in _DONE:
                self._report_events(report, started, seen)
                return info
            time.sleep(self.poll_seconds)

    def _report_events(self, report: Report, started: float, seen: set[str]) -> None:
        try:
            events = self.cfn.describe_stack_events(StackName=self.name)["StackEvents"]
        except Exception:  # noqa: BLE001 - the stack may be gone already
            return
        for event in reversed(events):
            when = event.get("Timestamp")
            if event["EventId"] in seen or (when is not None and when.timestamp() < started - 5):
                continue
            seen.add(event["EventId"])
            reason = f" - {event['ResourceStatusReason']}" if event.get("ResourceStatusReason") else ""
            report(f"{event['LogicalResourceId']}: {event['ResourceStatus']}{reason}")

    # ------------------------------------------------------------------ destroy
    def destroy(self, report: Report, *, backup: bool = True) -> str | None:
        """Delete the stack and the code bucket; returns the backup's ARN when one was made."""
        info = self.describe()
        backup_arn = None
        if info is not None:
            table = info.outputs.get("TableName")
            if backup and table:
                dynamodb = self.session.client("dynamodb")
                answer = call("dynamodb:CreateBackup", dynamodb.create_backup, TableName=table,
                              BackupName=f"{table}-before-destroy-{int(time.time())}")
                backup_arn = answer["BackupDetails"]["BackupArn"]
                report(f"Backed up table {table}: {backup_arn}")
            self._delete_and_wait(report)
        else:
            report(f"No stack {self.name} in {self.region}")
        self._delete_bucket(report)
        return backup_arn

    def _delete_and_wait(self, report: Report) -> None:
        started = time.time()
        report(f"Deleting stack {self.name}")
        call("cloudformation:DeleteStack", self.cfn.delete_stack, StackName=self.name)
        info = self._wait(report, started)
        if info is not None and info.status not in ("DELETE_COMPLETE",):
            raise ProvisioningError(f"deleting the stack ended {info.status}: see the events above")

    def _delete_bucket(self, report: Report) -> None:
        bucket = self.bucket_name()
        try:
            objects = self.s3.list_objects_v2(Bucket=bucket).get("Contents", [])
        except Exception as exc:  # noqa: BLE001
            if error_code(exc) in ("NoSuchBucket", "404"):
                return
            raise ProvisioningError(f"s3:ListObjectsV2 on {bucket} failed: {exc}") from exc
        for obj in objects:
            call("s3:DeleteObject", self.s3.delete_object, Bucket=bucket, Key=obj["Key"])
        call("s3:DeleteBucket", self.s3.delete_bucket, Bucket=bucket)
        report(f"Deleted the code bucket {bucket}")


def bootstrap_owner(info: StackInfo, session: Any = None) -> tuple[str, str] | None:
    """The first workspace and owner key, written into the stack's table; ``None`` when it has workspaces.

    Also the store's one-off upgrade steps, which every deploy of a new release must run once.
    """
    from pushpool.control_plane.app import build_context
    from pushpool.control_plane.bootstrap import bootstrap
    from pushpool.control_plane.settings import Settings
    from pushpool.control_plane.storage.dynamodb import DynamoDbStore

    table, kms = info.outputs.get("TableName"), info.outputs.get("KmsKeyArn")
    if not table or not kms:
        raise ProvisioningError(f"stack {info.name} has no TableName/KmsKeyArn outputs: is it a pushpool stack?")
    store = DynamoDbStore(table, region=info.region, session=session)
    try:
        store.index_identity_records()
        settings = Settings(store="dynamodb", dynamodb_table=table, kms_key_id=kms)
        return bootstrap(build_context(settings, store))
    finally:
        store.close()
