"""Deterministic image layers and OCI image documents: identical inputs give identical digests.

A layer is a gzipped tar whose entries are sorted, with mtime 0, uid/gid 0, no user or group names
and fixed modes (0755 for directories and executables, 0644 otherwise); gzip carries no file name
or time. The image config and manifest are JSON with sorted keys and no spaces.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Blob:
    data: bytes
    media_type: str

    @property
    def digest(self) -> str:
        return sha256(self.data)

    @property
    def size(self) -> int:
        return len(self.data)

    def descriptor(self) -> dict[str, Any]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size}


@dataclass(frozen=True)
class Layer(Blob):
    #: Digest of the uncompressed tar (the image config's ``rootfs.diff_ids``).
    diff_id: str = ""


def tar_layer(files: dict[str, bytes], executables: frozenset[str] = frozenset()) -> Layer:
    """A layer with ``files`` (path inside the image → content) and their parent directories."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        directories: set[str] = set()
        for path in files:
            clean = PurePosixPath("/", path).relative_to("/")
            directories.update(str(p) for p in clean.parents if str(p) != ".")
        entries = [(d, None) for d in directories] + [(str(PurePosixPath("/", p).relative_to("/")), c)
                                                      for p, c in files.items()]
        for name, content in sorted(entries, key=lambda e: e[0]):
            info = tarfile.TarInfo(name)
            info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
            if content is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            else:
                info.size = len(content)
                info.mode = 0o755 if name in executables else 0o644
                tar.addfile(info, io.BytesIO(content))
    uncompressed = raw.getvalue()
    compressed = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=compressed, mtime=0, compresslevel=6) as gz:
        gz.write(uncompressed)
    return Layer(compressed.getvalue(), OCI_LAYER, diff_id=sha256(uncompressed))


def canonical(document: dict[str, Any]) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def config_env(config: dict[str, Any]) -> dict[str, str]:
    """An image config's ``Env`` (``KEY=value`` strings) as a dict."""
    return dict(item.split("=", 1) for item in (config.get("config") or {}).get("Env") or [] if "=" in item)


def image_config(base: dict[str, Any] | None, layers: list[Layer], *, env: dict[str, str] | None = None,
                 cmd: list[str] | None = None, working_dir: str | None = None,
                 platform: str = "linux/amd64", entrypoint: list[str] | None = None, user: str | None = None,
                 exposed_ports: tuple[str, ...] = ()) -> Blob:
    """The image config: the base image's (its env, diff ids) with ``layers`` on top and our settings."""
    os_name, _, architecture = platform.partition("/")
    config = json.loads(json.dumps(base or {}))
    config.pop("history", None)
    config["os"], config["architecture"] = os_name, architecture
    merged = config_env(config)
    runtime = config.setdefault("config", {})
    merged.update(env or {})
    runtime["Env"] = [f"{k}={v}" for k, v in merged.items()]
    if cmd is not None:
        runtime["Cmd"], runtime["Entrypoint"] = list(cmd), list(entrypoint) if entrypoint else None
    if user:
        runtime["User"] = user
    if exposed_ports:
        runtime["ExposedPorts"] = {port: {} for port in exposed_ports}
    if working_dir:
        runtime["WorkingDir"] = working_dir
    rootfs = config.setdefault("rootfs", {"type": "layers", "diff_ids": []})
    rootfs["diff_ids"] = list(rootfs.get("diff_ids") or []) + [layer.diff_id for layer in layers]
    config.pop("created", None)  # no timestamps: the digest depends on the inputs only
    return Blob(canonical(config), OCI_CONFIG)


def image_manifest(config: Blob, layers: list[dict[str, Any]]) -> Blob:
    """An OCI image manifest for ``config`` and layer descriptors (the base image's, then ours)."""
    return Blob(canonical({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config.descriptor(),
                           "layers": layers}), OCI_MANIFEST)
