"""The outcome of an image build, whichever backend made it: what was pushed, under which digest."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pushpool.images.progress import human_size


@dataclass(frozen=True)
class LayerOutcome:
    name: str
    digest: str
    size: int
    #: "uploaded", "mounted" (linked from another repository of the registry) or "exists".
    outcome: str


@dataclass
class BuildReport:
    #: ``host/repository`` and the tag it was pushed as; deployments record ``reference`` (by digest).
    repository: str
    tag: str
    digest: str
    backend: str
    #: True when the content tag was already in the registry: nothing was built or pushed.
    up_to_date: bool = False
    layers: list[LayerOutcome] = field(default_factory=list)

    @property
    def tagged(self) -> str:
        return f"{self.repository}:{self.tag}"

    @property
    def reference(self) -> str:
        return f"{self.repository}@{self.digest}"

    @property
    def size(self) -> int:
        return sum(layer.size for layer in self.layers)

    @property
    def uploaded(self) -> list[LayerOutcome]:
        return [layer for layer in self.layers if layer.outcome == "uploaded"]

    def summary(self) -> str:
        if self.up_to_date:
            return f"{self.tagged} is up to date ({self.digest[:19]}…): nothing built or pushed"
        sent = self.uploaded
        kept = len(self.layers) - len(sent)
        return (f"{self.tagged} ({self.digest[:19]}…): {len(self.layers)} layers, {human_size(self.size)}; "
                f"pushed {len(sent)} ({human_size(sum(layer.size for layer in sent))})"
                + (f", {kept} already in the registry" if kept else ""))

    def as_dict(self) -> dict[str, Any]:
        return {"reference": self.reference, "tagged": self.tagged, "digest": self.digest, "backend": self.backend,
                "up_to_date": self.up_to_date, "size": self.size,
                "layers": [layer.__dict__ for layer in self.layers]}
