"""A client for OCI registries (the distribution spec): blobs and manifests, with the spec's auth.

* Auth: anonymous first; a 401's ``WWW-Authenticate`` challenge decides — ``Basic`` sends the
  credentials, ``Bearer realm=…,service=…,scope=…`` exchanges them (or nothing, for public pulls)
  for a token at the realm. Tokens are kept per scope.
* Pushes send only what the registry lacks: ``HEAD`` each blob first, mount it from another
  repository of the same registry when it is there, else a monolithic upload (``POST`` then ``PUT``
  with the digest; the upload URL's own query is kept).
* ``localhost``/``127.0.0.1`` registries are spoken to over plain HTTP; everything else over HTTPS.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin

import httpx

from pushpool.control_plane.errors import PushpoolError
from pushpool.images.layers import DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST, Blob, sha256

MANIFEST_TYPES = ", ".join((OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST))


class RegistryError(PushpoolError):
    """A registry refused a request or answered something unusable; the message says which and why."""


def split_reference(reference: str) -> tuple[str, str, str]:
    """(registry host, repository, tag or digest) of ``host[:port]/repo[:tag|@digest]``."""
    if "@" in reference:
        name, _, ref = reference.partition("@")
    else:
        last = reference.rsplit("/", 1)[-1]
        name, ref = (reference.rsplit(":", 1) if ":" in last else (reference, "latest"))
    host, _, repository = name.partition("/")
    if not repository or not ("." in host or ":" in host or host == "localhost"):
        host, repository = "registry-1.docker.io", name if "/" in name else f"library/{name}"
    return host, repository, ref


def has_registry(name: str) -> bool:
    first = name.split("/", 1)[0]
    return "/" in name and ("." in first or ":" in first or first == "localhost")


def target_repository(name: str, namespace: str | None) -> tuple[str, str]:
    """(registry host, repository) an image ``name`` (no tag) is pushed to: a name without a registry goes
    under ``namespace`` (the profile's build namespace, set by provisioners) when there is one."""
    if not has_registry(name) and namespace:
        name = f"{namespace.rstrip('/')}/{name}"
    host, repository, _ = split_reference(name)
    return host, repository


@dataclass
class Registry:
    host: str
    credentials: tuple[str, str] | None = None
    timeout: float = 60.0
    _tokens: dict[str, str] = field(default_factory=dict)
    _basic: bool = False

    def __post_init__(self) -> None:
        local = self.host.split(":")[0] in ("localhost", "127.0.0.1")
        self.base = f"{'http' if local else 'https'}://{self.host}"
        self.http = httpx.Client(timeout=self.timeout, follow_redirects=True)

    def close(self) -> None:
        self.http.close()

    # ------------------------------------------------------------------ requests with auth
    def _request(self, method: str, url: str, scope: str, **kwargs: Any) -> httpx.Response:
        headers = dict(kwargs.pop("headers", {}) or {})
        content = kwargs.pop("content", None)
        for _ in range(2):
            if content is not None:  # a callable makes a fresh body (a generator) for each attempt
                kwargs["content"] = content() if callable(content) else content
            if scope in self._tokens:
                headers["Authorization"] = f"Bearer {self._tokens[scope]}"
            elif self._basic and self.credentials:
                kwargs["auth"] = httpx.BasicAuth(*self.credentials)
            try:
                response = self.http.request(method, url if "://" in url else self.base + url, headers=headers,
                                             **kwargs)
            except httpx.HTTPError as exc:
                raise RegistryError(f"registry {self.host}: {method} failed ({exc})") from exc
            if response.status_code != 401:
                return response
            self._answer_challenge(response.headers.get("WWW-Authenticate", ""), scope)
        raise RegistryError(f"registry {self.host} refused the credentials for {scope} (401): "
                            + ("check the username and password" if self.credentials else "log in first "
                               "(docker login, or the pool's registry credentials)"))

    def _answer_challenge(self, challenge: str, scope: str) -> None:
        scheme, _, params = challenge.partition(" ")
        if scheme.lower() == "basic":
            if not self.credentials:
                raise RegistryError(f"registry {self.host} needs a username and password (Basic auth)")
            self._basic = True
            return
        if scheme.lower() != "bearer":
            raise RegistryError(f"registry {self.host}: unsupported authentication challenge {challenge!r}")
        fields = dict(re.findall(r'(\w+)="([^"]*)"', params))
        query = {"service": fields.get("service", "")} | ({"scope": scope} if scope else {})
        auth = httpx.BasicAuth(*self.credentials) if self.credentials else None
        try:
            answer = self.http.get(fields["realm"], params=query, auth=auth)
        except (KeyError, httpx.HTTPError) as exc:
            raise RegistryError(f"registry {self.host}: token exchange failed ({exc})") from exc
        if answer.status_code != 200:
            raise RegistryError(f"registry {self.host}: the token service refused {scope} ({answer.status_code})")
        body = answer.json()
        self._tokens[scope] = body.get("token") or body.get("access_token") or ""

    @staticmethod
    def _scope(repository: str, push: bool) -> str:
        return f"repository:{repository}:{'pull,push' if push else 'pull'}"

    @staticmethod
    def _check(response: httpx.Response, what: str) -> httpx.Response:
        if response.status_code >= 400:
            detail = response.text[:300].strip()
            hint = ("; the repository does not exist (Amazon ECR and some others need it created first, e.g. "
                    "`aws ecr create-repository --repository-name NAME`)" if "NAME_UNKNOWN" in detail else "")
            raise RegistryError(f"{what}: {response.status_code} {detail}{hint}")
        return response

    # ------------------------------------------------------------------ blobs
    def has_blob(self, repository: str, digest: str, push: bool = False) -> bool:
        response = self._request("HEAD", f"/v2/{repository}/blobs/{digest}", self._scope(repository, push))
        return response.status_code == 200

    def push_blob(self, repository: str, blob: Blob, mount_from: str | None = None,
                  progress: Callable[[int], None] | None = None) -> str:
        """Make ``blob`` exist in ``repository``: "exists", "mounted" or "uploaded" (``progress`` is
        called with the number of bytes sent as the upload goes)."""
        scope = self._scope(repository, True)
        if self.has_blob(repository, blob.digest, push=True):
            return "exists"
        params = {"mount": blob.digest, "from": mount_from} if mount_from else None
        started = self._check(self._request("POST", f"/v2/{repository}/blobs/uploads/", scope, params=params),
                              f"starting the upload of {blob.digest} to {repository}")
        if started.status_code == 201:
            return "mounted"
        location = urljoin(self.base + "/", started.headers["Location"])
        location += ("&" if "?" in location else "?") + f"digest={blob.digest}"  # keep the upload's own query
        self._check(self._request("PUT", location, scope, content=lambda: _chunks(blob.data, progress),
                                  headers={"Content-Type": "application/octet-stream",
                                           "Content-Length": str(blob.size)}),
                    f"uploading {blob.digest} to {repository}")
        return "uploaded"

    def mount_blob(self, repository: str, digest: str, from_repository: str) -> bool:
        """Ask the registry to link ``digest`` from another of its repositories; True when it did."""
        response = self._request("POST", f"/v2/{repository}/blobs/uploads/", self._scope(repository, True),
                                 params={"mount": digest, "from": from_repository})
        if response.status_code == 202:  # no mount: an upload was started instead; leave it to expire
            return False
        return self._check(response, f"mounting {digest} into {repository}").status_code == 201

    def get_blob(self, repository: str, digest: str) -> bytes:
        response = self._check(self._request("GET", f"/v2/{repository}/blobs/{digest}", self._scope(repository, False)),
                               f"reading blob {digest} of {repository}")
        if sha256(response.content) != digest:
            raise RegistryError(f"registry {self.host} returned blob {digest} of {repository} with another digest")
        return response.content

    # ------------------------------------------------------------------ manifests
    def manifest_digest(self, repository: str, reference: str) -> str | None:
        """The digest of a tag (or digest) when the registry has it, else None."""
        response = self._request("HEAD", f"/v2/{repository}/manifests/{reference}", self._scope(repository, True),
                                 headers={"Accept": MANIFEST_TYPES})
        if response.status_code == 404:
            return None
        self._check(response, f"looking up {repository}:{reference}")
        return response.headers.get("Docker-Content-Digest")

    def get_manifest(self, repository: str, reference: str) -> tuple[dict[str, Any], str, str]:
        """(manifest, media type, digest) of a tag or digest."""
        response = self._check(self._request("GET", f"/v2/{repository}/manifests/{reference}",
                                             self._scope(repository, False), headers={"Accept": MANIFEST_TYPES}),
                               f"reading {repository}:{reference}")
        digest = response.headers.get("Docker-Content-Digest") or sha256(response.content)
        return response.json(), response.headers.get("Content-Type", "").split(";")[0], digest

    def push_manifest(self, repository: str, reference: str, manifest: Blob) -> str:
        """Store ``manifest`` as ``reference`` (a tag); returns its digest."""
        response = self._check(self._request("PUT", f"/v2/{repository}/manifests/{reference}",
                                             self._scope(repository, True), content=manifest.data,
                                             headers={"Content-Type": manifest.media_type}),
                               f"pushing {repository}:{reference}")
        return response.headers.get("Docker-Content-Digest") or manifest.digest

    def platform_manifest(self, repository: str, reference: str, platform: str = "linux/amd64"
                          ) -> tuple[dict[str, Any], str]:
        """The single-platform manifest of ``reference`` for ``platform`` (resolving an index), with its digest."""
        manifest, media_type, digest = self.get_manifest(repository, reference)
        if media_type not in (OCI_INDEX, DOCKER_LIST) and "manifests" not in manifest:
            return manifest, digest
        os_name, _, architecture = platform.partition("/")
        for entry in manifest.get("manifests", []):
            wanted = entry.get("platform") or {}
            if wanted.get("os") == os_name and wanted.get("architecture") == architecture:
                found, _, found_digest = self.get_manifest(repository, entry["digest"])
                return found, found_digest
        have = ", ".join(f"{(m.get('platform') or {}).get('os')}/{(m.get('platform') or {}).get('architecture')}"
                         for m in manifest.get("manifests", []))
        raise RegistryError(f"{self.host}/{repository}:{reference} has no {platform} image (it has: {have})")


CHUNK = 256 * 1024


def _chunks(data: bytes, progress: Callable[[int], None] | None) -> Iterator[bytes]:
    for start in range(0, len(data), CHUNK):
        chunk = data[start:start + CHUNK]
        yield chunk
        if progress:
            progress(len(chunk))
