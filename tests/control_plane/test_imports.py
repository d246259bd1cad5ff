"""Importing the app must not import any cloud SDK (the Lambda cold start depends on it)."""

from __future__ import annotations

import subprocess
import sys

CLOUD_PREFIXES = ("boto3", "botocore", "google", "azure", "modal", "coiled", "dask", "distributed")


def cloud_sdks_loaded_by(code: str, env: dict[str, str] | None = None) -> list[str]:
    """The top-level cloud SDK packages a fresh interpreter has imported after running ``code``."""
    loaded = f"{{m.split('.')[0] for m in sys.modules}} & {set(CLOUD_PREFIXES)!r}"
    probe = f"{code}\nimport sys\nprint(','.join(sorted({loaded})))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, env=env)
    return [name for name in out.stdout.strip().split(",") if name]


def test_app_import_pulls_in_no_cloud_sdk():
    assert cloud_sdks_loaded_by(
        "import pushpool.control_plane.app, pushpool.control_plane.server, pushpool.pushers.base, "
        "pushpool.pushers.local, pushpool.runner") == []


def test_lambda_handler_import_pulls_in_no_cloud_sdk_and_no_web_framework():
    """The cold start: google, azure, modal and coiled never; boto3 only when the store makes its first client;
    FastAPI only when the API function serves its first request (the tick function never does); cryptography
    when a block is first encrypted or decrypted (most API requests never do)."""
    assert cloud_sdks_loaded_by("import pushpool.control_plane.lambda_handler") == []
    out = subprocess.run([sys.executable, "-c", "import sys, pushpool.control_plane.lambda_handler; "
                          "print(sorted({'fastapi', 'starlette', 'mangum', 'jsonschema', 'cryptography'} "
                          "& set(sys.modules)))"],
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_building_the_lambda_runtime_imports_boto3_but_no_other_cloud_sdk(tmp_path):
    code = (
        "from pushpool.control_plane.lambda_handler import build_runtime\n"
        "from pushpool.control_plane.settings import Settings\n"
        f"build_runtime(Settings(store='dynamodb', dynamodb_table='t', kms_key_id='k', home={str(tmp_path)!r}))"
    )
    env = {"PATH": "/usr/bin:/bin", "AWS_DEFAULT_REGION": "eu-west-1", "HOME": str(tmp_path)}
    assert cloud_sdks_loaded_by(code, env) == ["boto3", "botocore"]
