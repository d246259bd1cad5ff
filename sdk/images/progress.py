"""What a build tells its user while it works: steps, a progress bar per layer upload, a summary.

Output goes to stderr (stdout stays for ``--json`` and scripts); ``quiet`` keeps it silent.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from types import TracebackType


def human_size(size: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} GB"


class BuildProgress(AbstractContextManager["BuildProgress"]):
    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet
        self._progress = None
        if not quiet:
            from rich.console import Console
            from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

            self.console = Console(stderr=True)
            self._progress = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                                      TransferSpeedColumn(), console=self.console, transient=False)

    def __enter__(self) -> BuildProgress:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        if self._progress is not None:
            self._progress.stop()

    def step(self, message: str) -> None:
        if self._progress is not None:
            self._progress.console.print(f"[dim]•[/dim] {message}", highlight=False)

    def summary(self, message: str) -> None:
        """The build's last line, once the bars are done."""
        if not self.quiet:
            self.console.print(f"[green]✓[/green] {message}", highlight=False)

    def upload(self, name: str, size: int) -> Callable[[int], None]:
        """A callback advancing a new bar for ``name`` by the bytes sent."""
        if self._progress is None:
            return lambda sent: None
        task = self._progress.add_task(f"  pushing {name}", total=size)
        return lambda sent: self._progress.advance(task, sent)  # type: ignore[union-attr]
