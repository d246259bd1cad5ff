"""The software-environment half of the fake Coiled API (tests/fakes/coiled_api.py): environments from a
container or from packages, package uploads to a presigned URL (Content-MD5 checked, as S3 does; kept by digest,
as Coiled does), and builds that go queued → building → built (or error, for a requirement no index has) as the
client polls."""

from __future__ import annotations

import base64
import hashlib
import re
from typing import Any

from tests.fakes.json_api import ApiError, Reply

#: Coiled's names: lowercase letters, digits, dashes and underscores, starting with a letter or digit.
NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,127}$")


class SoftwareEnvironments:
    """Mixed into FakeCoiledApi, which provides ``state``, ``url``, ``_ids`` and ``_member``."""

    state: Any
    url: str
    _ids: Any

    def _member(self, workspace: str) -> str:  # pragma: no cover - FakeCoiledApi's
        raise NotImplementedError

    def create_software(self, workspace: str, query: dict, body: Any) -> dict[str, Any]:
        self._member(workspace)
        name = body.get("name") or ""
        if not NAME.match(name):
            raise ApiError(400, f"Invalid software environment name {name!r}")
        if body.get("container") and not re.match(r"^[\w.-]+(:\d+)?(/[\w.-]+)+(:[\w.-]+|@sha256:[0-9a-f]{64})?$",
                                                    body["container"]):
            raise ApiError(400, f"Invalid container image reference {body['container']!r}")
        if body.get("container") and body.get("packages"):
            raise ApiError(400, "a software environment has either a container or packages")
        for package in body.get("packages") or []:
            upload = self.state.packages.get(package.get("file")) if package.get("file") is not None else None
            if package.get("file") is not None and (upload is None or upload["workspace"] != workspace
                                                    or "data" not in upload):
                raise ApiError(400, f"package {package.get('name')!r}: file {package.get('file')} was never uploaded")
        existing = self.state.software.get((workspace, name))
        if existing and existing.get("md5") == body.get("md5") and not body.get("force_rebuild"):
            return self._alias(existing)  # the same spec: Coiled keeps the environment (and its build)
        alias_id = next(self._ids)
        senv = {**body, "id": alias_id}
        if body.get("packages"):
            build_id = next(self._ids)
            missing = sorted(p["name"] for p in body["packages"] if p["name"] in self.state.unknown_requirements)
            self.state.builds[build_id] = {
                "workspace": workspace, "software": name, "state": "queued", "polls": 0,
                "reason": f"No matching distribution found for {', '.join(missing)}" if missing else "",
                "log": [f"Installing {len(body['packages'])} packages"]}
            senv["build_id"] = build_id
        self.state.software[(workspace, name)] = senv
        return self._alias(senv)

    def _alias(self, senv: dict[str, Any]) -> dict[str, Any]:
        build = self.state.builds.get(senv.get("build_id", -1))
        spec = {"id": senv["id"], "latest_build": {"id": senv["build_id"], "state": build["state"]}} if build else None
        return {"id": senv["id"], "name": senv["name"], "latest_spec": spec}

    def package_upload(self, workspace: str, query: dict, body: Any) -> dict[str, Any]:
        self._member(workspace)
        if not re.fullmatch(r"[\w.+-]+\.(whl|tar\.gz)", body.get("name") or ""):
            raise ApiError(400, f"package name {body.get('name')!r} is not a wheel or sdist file name")
        for package_id, known in self.state.packages.items():  # Coiled keeps an uploaded package by its digest
            if (known["workspace"], known["name"], known["md5"]) == (workspace, body["name"], body["wheel_md5"]) \
                    and "data" in known:
                return {"id": package_id, "should_upload": False, "upload_url": None}
        package_id = next(self._ids)
        self.state.packages[package_id] = {"workspace": workspace, "name": body["name"], "md5": body["wheel_md5"]}
        return {"id": package_id, "should_upload": True, "upload_url": f"{self.url}/fake-bucket/{package_id}"}

    def put_package(self, package_id: str, query: dict, body: Any) -> Reply:
        upload = self.state.packages.get(int(package_id))
        if upload is None:
            raise ApiError(403, "AccessDenied: no such presigned upload")
        digest = base64.b64encode(hashlib.md5(body["data"]).digest()).decode()
        if body["content_md5"] != upload["md5"] or digest != upload["md5"]:
            raise ApiError(400, "BadDigest: the Content-MD5 you specified did not match what was received")
        upload["data"] = body["data"]
        return Reply({}, status=200)

    def software_build(self, key: str, query: dict, body: Any) -> dict[str, Any]:
        workspace, _, build_id = key.split("/")
        build = self.state.builds.get(int(build_id))
        if build is None or build["workspace"] != self._member(workspace):
            raise ApiError(404, "Not found.")
        build["polls"] += 1  # queued → building → built (or error) as the client polls, like a real build
        if build["state"] == "queued":
            build["state"] = "building"
        elif build["state"] == "building" and build["polls"] >= 2:
            build["state"] = "error" if build["reason"] else "built"
            build["log"].append(build["reason"] or "Environment built")
        return {"id": int(build_id), "state": build["state"], "reason": build["reason"]}

    def software_build_logs(self, key: str, query: dict, body: Any) -> dict[str, Any]:
        workspace, _, _, build_id = key.split("/")
        build = self.state.builds.get(int(build_id))
        if build is None or build["workspace"] != self._member(workspace):
            raise ApiError(404, "Not found.")
        events = [{"eventId": str(index), "message": line} for index, line in enumerate(build["log"])]
        return {"events": events, "nextToken": str(len(events))}

    def software_wheel(self, workspace: str, name: str) -> bytes | None:
        """The uploaded package of a software environment (what its VMs have installed), if it has one."""
        for package in self.state.software[(workspace, name)].get("packages") or []:
            if package.get("file") is not None:
                return self.state.packages[package["file"]]["data"]
        return None

    def software_by_name(self, key: str, query: dict, body: Any) -> dict[str, Any]:
        workspace, _, _, _, name = key.split("/")
        found = self.state.software.get((self._member(workspace), name))
        if found is None:
            raise ApiError(404, "Not found.")
        return {"id": found["id"], "name": name}

