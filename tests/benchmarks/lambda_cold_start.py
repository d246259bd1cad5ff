"""Cold start of the Lambda control plane: handler import time, what each function builds before its
first answer, package size.

Run with ``make bench-lambda`` (or ``python -m tests.benchmarks.lambda_cold_start``). Prints a
markdown table. Import time is measured with ``python -X importtime`` in fresh interpreters
(median of 10). The tick function needs the runtime (settings, DynamoDB and KMS clients); the
API function also the FastAPI app: both are timed from a fresh interpreter, with no network
call, so the API figure is the honest cold start of a request (before DynamoDB answers).

Beside each figure is the floor of the stack, timed the same way in the same run: a function on the same parts
doing nothing of its own (pydantic imported and one model built; then a boto3 DynamoDB client made; then FastAPI
and mangum imported and an app with one route built). Until 7 December 2026 the floor also imported
pydantic-settings, which the control plane then used for its settings. What pushpool adds is the difference;
issue 28's targets (import 250 ms, tick 400 ms, API 500 ms) are printed with it.
"""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RUNS = 10
MODULE = "pushpool.control_plane.lambda_handler"
#: What infra/pushpool.yaml sets for the functions that bears on import time.
LAMBDA_ENV = {**os.environ, "PYDANTIC_DISABLE_PLUGINS": "__all__"}


def import_time_ms() -> tuple[float, float]:
    """(median cumulative import time of the handler module per -X importtime, median wall time) in ms."""
    cumulative, wall = [], []
    for _ in range(RUNS):
        started = time.perf_counter()
        out = subprocess.run([sys.executable, "-X", "importtime", "-c", f"import {MODULE}"], capture_output=True,
                             text=True, check=True, env=LAMBDA_ENV)
        wall.append((time.perf_counter() - started) * 1000)
        for line in out.stderr.splitlines():
            parts = [p.strip() for p in line.removeprefix("import time:").split("|")]
            if len(parts) == 3 and parts[2] == MODULE:
                cumulative.append(int(parts[1]) / 1000)
    return statistics.median(cumulative), statistics.median(wall)


FLOOR_IMPORT = "import pydantic\nclass Settings(pydantic.BaseModel):\n    port: int = 4200\n"
FLOOR_TICK = FLOOR_IMPORT + "import boto3\nboto3.session.Session().client('dynamodb', region_name='us-east-1')\n"
FLOOR_API = FLOOR_TICK + ("import fastapi, mangum\napp = fastapi.FastAPI()\n"
                          "app.get('/api/health')(lambda: {'status': 'ok'})\nmangum.Mangum(app)\n")
TARGETS = {"import": 250.0, "tick": 400.0, "api": 500.0}


def floor_ms(code: str) -> float:
    """The stack's floor: ``code`` timed in fresh interpreters (median of 5), in ms."""
    probe = f"import time\nt = time.perf_counter()\n{code}print((time.perf_counter() - t) * 1000)\n"
    env = {**LAMBDA_ENV, "AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x"}
    return statistics.median(float(subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                                                  check=True, env=env).stdout) for _ in range(5))


def import_wall_ms() -> float:
    """Importing the handler in a fresh interpreter, timed inside it like the floors (median of 5), in ms."""
    return floor_ms(f"import {MODULE}\n")


def cold_start_ms(with_api: bool) -> float:
    """A fresh interpreter: import the handler, build the runtime (store and KMS clients) and, for the
    API function, the FastAPI app behind mangum; no network call. Median of 5, in ms."""
    code = (
        "import time\n"
        "t = time.perf_counter()\n"
        "from pushpool.control_plane.lambda_handler import build_runtime\n"
        "from pushpool.control_plane.settings import Settings\n"
        "rt = build_runtime(Settings(store='dynamodb', dynamodb_table='t', kms_key_id='k', home='/tmp/pp-bench'))\n"
        + ("rt.asgi\n" if with_api else "")
        + "print((time.perf_counter() - t) * 1000)\n"
    )
    env = {**LAMBDA_ENV, "AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x"}
    samples = [float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                                    env=env).stdout) for _ in range(5)]
    return statistics.median(samples)


def main() -> None:
    from pushpool.provisioners.lambda_package import build_package

    cumulative, wall = import_time_ms()
    imported, tick, api = import_wall_ms(), cold_start_ms(with_api=False), cold_start_ms(with_api=True)
    floors = {"import": floor_ms(FLOOR_IMPORT), "tick": floor_ms(FLOOR_TICK), "api": floor_ms(FLOOR_API)}
    with tempfile.TemporaryDirectory() as tmp:
        package = build_package(Path(tmp))
    rows = [f"On {platform.python_implementation()} {platform.python_version()}, {os.cpu_count()} cores:", "",
            "| measure | pushpool | the stack's floor | share (floor ÷ pushpool) | pushpool adds | target |",
            "|---|---:|---:|---:|---:|---:|"]
    for key, title, ours in (("import", f"`import {MODULE}`", imported),
                             ("tick", "tick function: import + runtime (store, KMS clients)", tick),
                             ("api", "API function: import + runtime + FastAPI app", api)):
        rows.append(f"| {title} (median of 5) | {ours:.0f} ms | {floors[key]:.0f} ms | {floors[key] / ours:.0%} | "
                    f"{ours - floors[key]:.0f} ms | {TARGETS[key]:.0f} ms |")
    rows += [f"| `import {MODULE}` (-X importtime, cumulative, median of {RUNS}) | {cumulative:.0f} ms | | | | |",
             f"| interpreter start + import (wall, median of {RUNS}) | {wall:.0f} ms | | | | |",
             f"| package zipped (through S3: no zipped limit) | {package.zipped_bytes / 2**20:.1f} MB | | | | |",
             f"| package unzipped (Lambda limit 250 MB) | {package.unzipped_bytes / 2**20:.1f} MB | | | | |"]
    print("\n".join(rows))
    if "--update-docs" in sys.argv[1:]:
        from tests.benchmarks.systems import write_doc_block

        write_doc_block("lambda-cold-start", "\n".join(rows), "Lambda cold start beside the stack's floor",
                        "`make bench-lambda` (tests/benchmarks/lambda_cold_start.py): each figure beside the same "
                        "measure of a function on the same parts that does nothing of its own, timed in the same run.")


if __name__ == "__main__":
    main()
