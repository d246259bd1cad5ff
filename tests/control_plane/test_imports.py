"""Importing the app must not import any cloud SDK (the Lambda cold start depends on it)."""

from __future__ import annotations

import subprocess
import sys

CLOUD_PREFIXES = ("boto3", "botocore", "google", "azure", "modal")


def test_app_import_pulls_in_no_cloud_sdk():
    code = (
        "import sys, control_plane.app, control_plane.server, pushers.base, pushers.local, sdk.runner;"
        f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {CLOUD_PREFIXES!r});"
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""



def test_lambda_handler_import_pulls_in_no_cloud_sdk():
    """The cold start: google, azure and modal never; boto3 only when the store makes its first client."""
    code = (
        "import sys, control_plane.lambda_handler;"
        f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {CLOUD_PREFIXES!r});"
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_building_the_lambda_runtime_imports_boto3_but_no_other_cloud_sdk(tmp_path):
    code = (
        "import sys\n"
        "from control_plane.lambda_handler import build_runtime\n"
        "from control_plane.settings import Settings\n"
        f"build_runtime(Settings(store='dynamodb', dynamodb_table='t', kms_key_id='k', home={str(tmp_path)!r}))\n"
        "print(','.join(sorted({m.split('.')[0] for m in sys.modules} & {'boto3', 'google', 'azure', 'modal'})))\n"
    )
    env = {"PATH": "/usr/bin:/bin", "AWS_DEFAULT_REGION": "eu-west-1", "HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert out.stdout.strip() == "boto3"
