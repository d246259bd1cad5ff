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

