"""``pushpool control-plane deploy | status | destroy``: the serverless control plane on AWS Lambda.

Uses your own AWS login (``--aws-profile`` or the default chain). ``deploy`` builds the
Lambda package for linux x86_64, uploads it, creates or updates the stack, creates the
first owner key (shown once) and writes a pushpool profile for it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from pushpool import profiles
from pushpool.cli.common import Output, OutputOption, YesOption, confirm, console, emit, table

control_plane_app = typer.Typer(help="The serverless control plane on AWS (Lambda + DynamoDB + a 1-minute tick).",
                                no_args_is_help=True)

StackOption = typer.Option("pushpool", "--stack-name", help="CloudFormation stack name (also names the table).")
RegionOption = typer.Option(None, "--region", help="AWS region (default: your AWS profile's).")
AwsProfileOption = typer.Option(None, "--aws-profile", help="AWS profile to deploy with (default chain if unset).")


def _stack(stack_name: str, region: str | None, aws_profile: str | None) -> Any:
    from pushpool.provisioners.lambda_stack import LambdaStack

    return LambdaStack(stack_name, region, profile=aws_profile)


def _say(output: Output):
    def report(line: str) -> None:
        if output is Output.table:
            console.print(f"  {line}", highlight=False)

    return report


@control_plane_app.command("deploy")
def deploy(
    stack_name: str = StackOption,
    region: str | None = RegionOption,
    aws_profile: str | None = AwsProfileOption,
    python: str = typer.Option("3.13", "--python", help="Lambda Python runtime to build for (3.12 or 3.13)."),
    extra: list[str] = typer.Option([], "--extra", help="Provider SDK to include: aws, gcp, azure, modal, coiled."),
    package: Path | None = typer.Option(None, "--package", exists=True, dir_okay=False,
                                        help="A package zip built earlier (skips the build)."),
    profile_name: str | None = typer.Option(None, "--profile-name",
                                            help="pushpool profile to write (default: the stack name)."),
    alarm_topic: str | None = typer.Option(None, "--alarm-topic",
                                           help="SNS topic ARN the stack's alarms notify (docs/observability.md)."),
    lateness_alarm_seconds: int | None = typer.Option(None, "--lateness-alarm-seconds", min=1,
                                                      help="Alarm when the p99 dispatch lateness is above this "
                                                           "(default 60)."),
    yes: bool = YesOption,
    output: Output = OutputOption,
) -> None:
    """Build the Lambda package and create or update the stack; print the API URL."""
    from pushpool.provisioners.lambda_package import LambdaPackage, build_package, check_limits
    from pushpool.provisioners.lambda_stack import bootstrap_owner

    if python not in ("3.12", "3.13"):
        raise typer.BadParameter("choose 3.12 or 3.13", param_hint="--python")
    stack = _stack(stack_name, region, aws_profile)
    existing = stack.describe()
    action = "update" if existing else "create"
    if output is Output.table:
        console.print(table(f"Plan for stack {stack_name!r} in {stack.region}", ["step", "detail"], [
            ("Lambda package", f"{package.name} (given)" if package else f"build for CPython {python} linux x86_64"
             + (f" with {', '.join(extra)}" if extra else "")),
            ("Code bucket", stack.bucket_name()),
            (f"Stack ({action})", "DynamoDB table, KMS key, API function + URL, tick function, 1-minute schedule, "
                                  "roles, log groups"),
            ("Owner API key", "created once, shown once" if not existing else "kept (existing keys keep working)"),
        ]))
    confirm(f"{action.title()} stack {stack_name!r} in {stack.region}?", yes)
    if package is None:
        with console.status("Building the Lambda package ..."):
            built = build_package(Path(profiles.home()) / "lambda-packages", python_version=python,
                                  extras=tuple(extra))
    else:
        import hashlib
        import zipfile

        with zipfile.ZipFile(package) as archive:
            unzipped = sum(i.file_size for i in archive.infolist())
        built = LambdaPackage(package, hashlib.sha256(package.read_bytes()).hexdigest(), package.stat().st_size,
                              unzipped, python)
        check_limits(built)
    if output is Output.table:
        console.print(f"Package {built.path.name}: {built.zipped_bytes / 2**20:.1f} MB zipped, "
                      f"{built.unzipped_bytes / 2**20:.1f} MB unzipped (Lambda's limit: 250 MB unzipped)")
    with console.status(f"Deploying stack {stack_name} (CloudFormation; a first creation takes a few minutes) ..."):
        parameters = {k: str(v) for k, v in {"AlarmTopicArn": alarm_topic,
                                               "LatenessAlarmSeconds": lateness_alarm_seconds}.items() if v}
        info = stack.deploy(built, _say(output), parameters)
    created = bootstrap_owner(info, stack.session)
    name = profile_name or stack_name
    values: dict[str, Any] = {"PUSHPOOL_API_URL": info.api_url}
    if created:
        values.update(PUSHPOOL_WORKSPACE=created[0], PUSHPOOL_API_KEY=created[1])
    if created or name in profiles.load()["profiles"]:
        profiles.update_profile(name, values)
    result = {"stack": stack_name, "region": stack.region, "status": info.status, "api_url": info.api_url,
              "changed": info.changed, "package": {"file": built.path.name, "sha256": built.sha256,
                                                   "zipped_bytes": built.zipped_bytes,
                                                   "unzipped_bytes": built.unzipped_bytes},
              "profile": name if created or name in profiles.load()["profiles"] else None,
              "workspace": created[0] if created else None, "api_key": created[1] if created else None}
    if output is Output.json:
        emit(result, output, str)
        return
    console.print(f"[green]Stack {stack_name} is {info.status}[/]. API: {info.api_url}")
    if created:
        console.print(f"Created workspace {created[0]!r} and an owner API key, saved to pushpool profile {name!r} "
                      "(active now). It is shown this once:")
        typer.echo(created[1])
    else:
        console.print("The stack already had workspaces; existing API keys keep working"
                      + (f" (profile {name!r} updated)." if result["profile"] else "."))


@control_plane_app.command("status")
def status(
    stack_name: str = StackOption,
    region: str | None = RegionOption,
    aws_profile: str | None = AwsProfileOption,
    output: Output = OutputOption,
) -> None:
    """The stack's state, its API URL and what the last tick did."""
    from pushpool.control_plane.errors import NotFound

    stack = _stack(stack_name, region, aws_profile)
    info = stack.describe()
    if info is None:
        raise NotFound(f"No stack {stack_name!r} in {stack.region}: deploy it with pushpool control-plane deploy")
    tick = stack.last_tick(info) if info.outputs.get("TableName") else None
    data = {"stack": stack_name, "region": stack.region, "status": info.status, "api_url": info.api_url,
            "table": info.outputs.get("TableName"), "last_tick": tick}
    emit(data, output, lambda d: table(f"Stack {stack_name}", ["field", "value"], [
        ("status", d["status"]), ("region", d["region"]), ("api url", d["api_url"]), ("table", d["table"]),
        ("last tick", (f"{tick['finished']} ({tick['kind']}): {tick['scheduled']} scheduled, "
                       f"{tick['dispatched']} dispatched, {tick['reconciled']} reconciled, "
                       f"{len(tick['errors'])} errors") if tick else "none yet"),
    ]))


@control_plane_app.command("destroy")
def destroy(
    stack_name: str = StackOption,
    region: str | None = RegionOption,
    aws_profile: str | None = AwsProfileOption,
    no_backup: bool = typer.Option(False, "--no-backup", help="Do not keep an on-demand backup of the table."),
    yes: bool = YesOption,
    output: Output = OutputOption,
) -> None:
    """Delete the stack (table, key, functions, schedule) and its code bucket; the table is backed up first."""
    stack = _stack(stack_name, region, aws_profile)
    what = "WITHOUT a backup" if no_backup else "after an on-demand backup of its table"
    confirm(f"Delete stack {stack_name!r} in {stack.region} and all its data, {what}?", yes)
    with console.status(f"Deleting stack {stack_name} ..."):
        backup = stack.destroy(_say(output), backup=not no_backup)
    if output is Output.json:
        emit({"stack": stack_name, "region": stack.region, "deleted": True, "backup_arn": backup}, output, str)
        return
    console.print(f"[green]Stack {stack_name} deleted.[/]" + (f" Table backup: {backup}" if backup else ""))
