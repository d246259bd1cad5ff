"""docs/cli.md is generated from the typer app; it must match the code (regenerate with `make docs`)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]


def test_cli_reference_is_current(tmp_path):
    out = tmp_path / "cli.md"
    typer_cli = Path(sys.executable).parent / "typer"
    subprocess.run([str(typer_cli), "pushpool.cli.main", "utils", "docs", "--name", "pushpool", "--output", str(out)],
                   check=True, capture_output=True, cwd=REPO)
    assert out.read_text() == (REPO / "docs" / "cli.md").read_text(), "docs/cli.md is stale: run `make docs`"
