"""Image build and push times, daemonless backend, against a local registry (Debian's docker-registry).

Run with ``make bench-images`` (or ``python -m tests.benchmarks.image_build``). A sample project
(a flow, a helper module, requirements with a compiled wheel) is built three times into a fresh
registry: cold (empty layer cache: pip fetches and unpacks every wheel — pip's own download cache
is used as it is, as on a developer's machine), unchanged (the content tag is already there), and
after changing one source file (only the code layer is rebuilt and pushed). Prints a markdown
table; medians of ``--repeat`` rounds (default 3), each with its own registry data and cache.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from pushpool.images import DockerImage
from pushpool.images.progress import human_size
from pushpool.images.registry import Registry
from tests.fakes.images import push_base_image
from tests.registry_fixtures import _binary, _start

REQUIREMENTS = "six==1.16.0\npython-slugify==8.0.4\nmarkupsafe==3.0.2\n"
FLOW = "import helpers\nfrom sdk import flow\n\n\n@flow\ndef etl(rows: int = 3):\n    return helpers.double(rows)\n"


def make_project(root: Path) -> None:
    root.mkdir(parents=True)
    (root / "flows.py").write_text(FLOW)
    (root / "helpers.py").write_text("def double(x):\n    return 2 * x\n")
    (root / "requirements.txt").write_text(REQUIREMENTS)


def one_round(scratch: Path, binary: str) -> dict[str, float | int]:
    process, host = _start(binary, scratch / "registry", auth=False)
    try:
        registry = Registry(host)
        base = push_base_image(registry)
        project = scratch / "project"
        make_project(project)
        os.environ["PUSHPOOL_LAYER_CACHE"] = str(scratch / "cache")
        image = DockerImage(f"{host}/bench/flows", base_image=base, backend="daemonless")
        figures: dict[str, float | int] = {}
        for label, change in (("cold", None), ("unchanged", None), ("code", "def double(x):\n    return x + x\n")):
            if change:
                (project / "helpers.py").write_text(change)
            started = time.perf_counter()
            report = image.build(project, quiet=True)
            figures[f"{label}_s"] = time.perf_counter() - started
            figures[f"{label}_pushed"] = sum(layer.size for layer in report.uploaded)
            figures[f"{label}_layers"] = len(report.uploaded)
            figures["size"] = report.size or figures.get("size", 0)
        return figures
    finally:
        process.terminate()
        process.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    binary = _binary()
    if binary is None:
        sys.exit("docker-registry is not installed and apt-get cannot install it")
    rounds = []
    for _ in range(args.repeat):
        scratch = Path(tempfile.mkdtemp(prefix="pushpool-bench-images-"))
        try:
            rounds.append(one_round(scratch, binary))
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def median(key: str) -> float:
        return statistics.median(r[key] for r in rounds)

    print(f"Machine: {os.cpu_count()} cores, {platform.system()} {platform.machine()}, Python "
          f"{platform.python_version()}; {args.repeat} rounds, medians; image {human_size(median('size'))} "
          "compressed (a tiny test base + runtime + 3 dependencies + code)\n")
    print("| build + push | time | pushed |")
    print("|---|---|---|")
    for label, what in (("cold", "cold (empty layer cache, fresh registry)"), ("unchanged", "unchanged project"),
                        ("code", "one source file changed")):
        print(f"| {what} | {median(f'{label}_s'):.2f} s | {int(median(f'{label}_layers'))} layer(s), "
              f"{human_size(median(f'{label}_pushed'))} |")


if __name__ == "__main__":
    main()
