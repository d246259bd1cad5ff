"""``pushpool control-plane deploy | status | destroy`` as a user runs them, against moto on 127.0.0.1."""

from __future__ import annotations

import zipfile

import pytest

from pushpool import profiles
from tests.fakes.aws import REGION
from tests.fakes.moto_cfn import placeholder_package, register
from tests.sdk.cli.conftest import Cli

STACK = "ppcli"


@pytest.fixture
def cli(aws, tmp_path, monkeypatch) -> Cli:
    register()
    monkeypatch.setenv("PUSHPOOL_HOME", str(tmp_path / "home"))
    return Cli(home=tmp_path / "home", cwd=tmp_path)


@pytest.fixture
def package(tmp_path):
    return placeholder_package(tmp_path).path


def deploy(cli: Cli, package, *extra: str) -> dict:
    return cli.json("control-plane", "deploy", "--stack-name", STACK, "--region", REGION, "--package", str(package),
                    "--yes", *extra)


def test_deploy_status_destroy(cli, package, aws):
    first = deploy(cli, package)
    assert first["status"] == "CREATE_COMPLETE" and first["api_url"].startswith("https://")
    assert first["api_key"].startswith("ppu_") and first["workspace"] == "default"
    profile = profiles.load()["profiles"][STACK]
    assert profile == {"PUSHPOOL_API_URL": first["api_url"], "PUSHPOOL_API_KEY": first["api_key"],
                       "PUSHPOOL_WORKSPACE": "default"}
    assert profiles.load()["active"] == STACK

    again = deploy(cli, package)  # an upgrade: same stack, no new key
    assert again["api_key"] is None and again["api_url"] == first["api_url"]
    assert profiles.load()["profiles"][STACK]["PUSHPOOL_API_KEY"] == first["api_key"]

    status = cli.json("control-plane", "status", "--stack-name", STACK, "--region", REGION)
    assert status["status"] in ("CREATE_COMPLETE", "UPDATE_COMPLETE") and status["table"] == STACK
    assert status["last_tick"] is None  # the schedule never fires on moto
    text = cli.ok("control-plane", "status", "--stack-name", STACK, "--region", REGION)
    assert "last tick" in text and "none yet" in text

    gone = cli.json("control-plane", "destroy", "--stack-name", STACK, "--region", REGION, "--yes")
    assert gone["deleted"] and gone["backup_arn"].startswith("arn:aws:dynamodb:")
    assert STACK not in aws.client("dynamodb").list_tables()["TableNames"]
    assert not [f for f in aws.client("lambda").list_functions()["Functions"] if f["FunctionName"].startswith(STACK)]
    assert not [b for b in aws.client("s3").list_buckets()["Buckets"] if b["Name"].endswith(f"-{STACK}")]
    line = cli.fails("control-plane", "status", "--stack-name", STACK, "--region", REGION)
    assert "No stack 'ppcli'" in line and "control-plane deploy" in line


def test_deploy_needs_a_region(cli, package, monkeypatch):
    line = cli.fails("control-plane", "deploy", "--stack-name", STACK, "--package", str(package), "--yes",
                     AWS_DEFAULT_REGION="", AWS_REGION="", AWS_CONFIG_FILE="/nonexistent")
    assert "no AWS region" in line and "--region" in line


def test_an_oversized_package_is_refused_before_anything_is_created(cli, tmp_path, aws):
    big = tmp_path / "big.zip"
    with zipfile.ZipFile(big, "w", compression=zipfile.ZIP_DEFLATED) as archive, \
            archive.open("blob", "w", force_zip64=True) as blob:
        for _ in range(251):
            blob.write(b"\0" * (1024 * 1024))
    line = cli.fails("control-plane", "deploy", "--stack-name", STACK, "--region", REGION, "--package", str(big),
                     "--yes")
    assert "250 MB" in line
    assert aws.client("cloudformation").list_stacks()["StackSummaries"] == []
