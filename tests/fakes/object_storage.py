"""Object stores the official clients talk to, for result storage: Google Cloud Storage's JSON API (the media
upload and download ``google-cloud-storage`` uses) and Azure Blob Storage (what ``azure-storage-blob`` sends
for block blobs, path-style as Azurite serves it).

Both are as strict as the services where it matters here. GCS: the bucket must exist; object names are 1–1,024
bytes of UTF-8 without CR/LF and not ``.``/``..``; an upload's CRC32C and MD5, when the client sends them,
must match the data (400 otherwise); a download carries ``x-goog-hash`` so the client checks what it read.
Azure: every request is signed with SharedKey (the signature is verified, ``x-ms-date`` must be within 15
minutes and ``x-ms-version`` present: 403 ``AuthenticationFailed`` otherwise); the container must exist;
a Put Blob must say ``x-ms-blob-type: BlockBlob`` and at most 5,000 MiB; a Content-MD5 must match; errors
carry ``x-ms-error-code`` and an XML body. (GCS runs in the client's emulator mode, which sends no
credentials: that fake cannot check them.)
"""

from __future__ import annotations

import base64
import email.utils
import hashlib
import hmac
import json
import os
import re
import threading
import time
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qsl, unquote, urlparse

import google_crc32c

from tests.fakes.json_api import LoopbackServer


class _Server(LoopbackServer):
    """A threaded HTTP server on 127.0.0.1 whose handler calls ``self.handle(method, path, query, headers,
    body) -> (status, headers, body)``."""

    def __init__(self) -> None:
        fake = self
        self.calls: list[str] = []
        self._lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _serve(self) -> None:
                url = urlparse(self.path)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with fake._lock:
                    status, headers, data = fake.handle(self.command, url.path, dict(parse_qsl(url.query)),
                                                        self.headers, body)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _serve

        self._serve_with(Handler)

    def handle(self, method: str, path: str, query: dict[str, str], headers: Any,
               body: bytes) -> tuple[int, dict[str, str], bytes]:
        raise NotImplementedError


def _crc32c(data: bytes) -> str:
    return base64.b64encode(google_crc32c.Checksum(data).digest()).decode()


def _md5(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()  # noqa: S324 - the services' own checksum


class FakeGcs(_Server):
    """``/upload/storage/v1/b/B/o?uploadType=multipart`` and ``/download/storage/v1/b/B/o/NAME?alt=media``."""

    def __init__(self, buckets: tuple[str, ...] = ()) -> None:
        super().__init__()
        self.objects: dict[str, dict[str, bytes]] = {bucket: {} for bucket in buckets}
        self.uploads: list[dict[str, Any]] = []  # the metadata part of each upload
        #: Serve the next download with a byte flipped (its ``x-goog-hash`` still that of the stored data).
        self.corrupt_next_download = False
        self._generation = int(time.time() * 1e6)

    @staticmethod
    def _error(status: int, message: str) -> tuple[int, dict[str, str], bytes]:
        body = {"error": {"code": status, "message": message, "errors": [{"message": message}]}}
        return status, {"Content-Type": "application/json"}, json.dumps(body).encode()

    def handle(self, method, path, query, headers, body):
        upload = re.fullmatch(r"/upload/storage/v1/b/([^/]+)/o", path)
        download = re.fullmatch(r"/(?:download/)?storage/v1/b/([^/]+)/o/(.+)", path)
        if method == "POST" and upload and query.get("uploadType") == "multipart":
            self.calls.append("upload")
            return self._upload(upload.group(1), headers, body)
        if method == "GET" and download and query.get("alt") == "media":
            self.calls.append("download")
            bucket, name = download.group(1), unquote(download.group(2))
            if bucket not in self.objects:
                return self._error(404, "The specified bucket does not exist.")
            if name not in self.objects[bucket]:
                return self._error(404, f"No such object: {bucket}/{name}")
            data = self.objects[bucket][name]
            sent = data
            if self.corrupt_next_download:
                self.corrupt_next_download, sent = False, bytes([data[0] ^ 1]) + data[1:]
            return 200, {"Content-Type": "application/octet-stream", "x-goog-generation": str(self._generation),
                         "x-goog-hash": f"crc32c={_crc32c(data)},md5={_md5(data)}"}, sent
        return self._error(404, f"no route for {method} {path} in this fake")

    def _upload(self, bucket: str, headers: Any, body: bytes) -> tuple[int, dict[str, str], bytes]:
        boundary = re.search(r'boundary="?([^";]+)"?', headers.get("Content-Type", ""))
        if not boundary:
            return self._error(400, "Invalid multipart request: no boundary")
        parts = [part for part in body.split(b"--" + boundary.group(1).encode())[1:-1]]
        if len(parts) != 2:
            return self._error(400, f"Invalid multipart request with {len(parts)} parts")
        metadata = json.loads(parts[0].split(b"\r\n\r\n", 1)[1].rstrip(b"\r\n"))
        self.uploads.append(metadata)
        data = parts[1].split(b"\r\n\r\n", 1)[1].removesuffix(b"\r\n")
        name = metadata.get("name", "")
        if bucket not in self.objects:
            return self._error(404, "The specified bucket does not exist.")
        if not 1 <= len(name.encode()) <= 1024 or "\r" in name or "\n" in name or name in (".", ".."):
            return self._error(400, f"The object name {name!r} is invalid.")
        for field, actual in (("crc32c", _crc32c(data)), ("md5Hash", _md5(data))):
            if field in metadata and metadata[field] != actual:
                return self._error(400, f"Provided {field} \"{metadata[field]}\" doesn't match calculated "
                                        f"\"{actual}\".")
        self.objects[bucket][name] = data
        self._generation += 1
        resource = {"kind": "storage#object", "bucket": bucket, "name": name, "size": str(len(data)),
                    "generation": str(self._generation), "crc32c": _crc32c(data), "md5Hash": _md5(data)}
        return 200, {"Content-Type": "application/json"}, json.dumps(resource).encode()


#: The account name Azurite serves; the key is made per test session.
AZURE_ACCOUNT = "devstoreaccount1"
AZURE_KEY = base64.b64encode(os.urandom(64)).decode()
_SIGNED_HEADERS = ("content-encoding", "content-language", "content-length", "content-md5", "content-type", "date",
                   "if-modified-since", "if-match", "if-none-match", "if-unmodified-since", "range")
MAX_PUT_BLOB_BYTES = 5000 * 1024 * 1024


class FakeBlobService(_Server):
    """``PUT``/``GET`` ``/devstoreaccount1/CONTAINER/BLOB``, SharedKey-signed."""

    def __init__(self, containers: tuple[str, ...] = ()) -> None:
        super().__init__()
        self.blobs: dict[str, dict[str, bytes]] = {container: {} for container in containers}

    def connection_string(self) -> str:
        return (f"DefaultEndpointsProtocol=http;AccountName={AZURE_ACCOUNT};AccountKey={AZURE_KEY};"
                f"BlobEndpoint={self.url}/{AZURE_ACCOUNT};")

    @staticmethod
    def _error(status: int, code: str, message: str) -> tuple[int, dict[str, str], bytes]:
        body = (f'<?xml version="1.0" encoding="utf-8"?><Error><Code>{code}</Code><Message>{message}</Message>'
                "</Error>").encode()
        return status, {"Content-Type": "application/xml", "x-ms-error-code": code}, body

    def _signature_ok(self, method: str, path: str, query: dict[str, str], headers: Any) -> str | None:
        """``None`` when the request is signed by the account's key, else why not."""
        lower = {name.lower(): value for name, value in headers.items()}
        if "x-ms-version" not in lower:
            return "x-ms-version is required"
        sent = lower.get("x-ms-date") or lower.get("date")
        if not sent or abs(email.utils.parsedate_to_datetime(sent).timestamp() - time.time()) > 15 * 60:
            return "x-ms-date is missing or more than 15 minutes from the server's time"
        signed = {name: ("" if name == "content-length" and lower.get(name) == "0" else lower.get(name, ""))
                  for name in _SIGNED_HEADERS}
        if "x-ms-date" in lower:
            signed["date"] = ""
        canonical_headers = "".join(f"{name}:{lower[name].strip()}\n" for name in sorted(lower)
                                    if name.startswith("x-ms-"))
        resource = f"/{AZURE_ACCOUNT}{path}" + "".join(f"\n{name.lower()}:{value}"
                                                      for name, value in sorted(query.items()))
        to_sign = "\n".join([method, *signed.values()]) + "\n" + canonical_headers + resource
        expected = base64.b64encode(hmac.new(base64.b64decode(AZURE_KEY), to_sign.encode(),
                                             hashlib.sha256).digest()).decode()
        if lower.get("authorization") != f"SharedKey {AZURE_ACCOUNT}:{expected}":
            return "the signature does not match"
        return None

    def handle(self, method, path, query, headers, body):
        self.calls.append(f"{method} {path}")
        why = self._signature_ok(method, path, query, headers)
        if why is not None:
            return self._error(403, "AuthenticationFailed", f"Server failed to authenticate the request: {why}.")
        match = re.fullmatch(rf"/{AZURE_ACCOUNT}/([^/]+)/(.+)", path)
        if not match or query.get("comp"):
            return self._error(400, "UnsupportedHttpVerb", f"{method} {path} is not served by this fake")
        container, name = match.group(1), unquote(match.group(2))
        if container not in self.blobs:
            return self._error(404, "ContainerNotFound", "The specified container does not exist.")
        if method == "PUT":
            if headers.get("x-ms-blob-type") != "BlockBlob":
                return self._error(400, "InvalidHeaderValue", "x-ms-blob-type must be BlockBlob for this fake.")
            if len(body) > MAX_PUT_BLOB_BYTES:
                return self._error(413, "RequestBodyTooLarge", "The request body is too large.")
            if headers.get("Content-MD5") and headers["Content-MD5"] != _md5(body):
                return self._error(400, "Md5Mismatch", "The MD5 value specified in the request did not match.")
            self.blobs[container][name] = body
            return 201, {"ETag": f'"0x{hashlib.sha256(body).hexdigest()[:16].upper()}"',
                         "Last-Modified": email.utils.formatdate(usegmt=True), "Content-MD5": _md5(body)}, b""
        if method == "GET":
            if name not in self.blobs[container]:
                return self._error(404, "BlobNotFound", "The specified blob does not exist.")
            data = self.blobs[container][name]
            answer = {"Content-Type": "application/octet-stream", "x-ms-blob-type": "BlockBlob",
                      "ETag": f'"0x{hashlib.sha256(data).hexdigest()[:16].upper()}"',
                      "Last-Modified": email.utils.formatdate(usegmt=True)}
            wanted = re.fullmatch(r"bytes=(\d+)-(\d*)", headers.get("x-ms-range") or headers.get("Range") or "")
            if wanted:
                start = int(wanted.group(1))
                end = min(int(wanted.group(2) or len(data) - 1), len(data) - 1)
                if data and start >= len(data):
                    return self._error(416, "InvalidRange", "The range specified is invalid for the current size.")
                answer["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
                return 206, answer, data[start:end + 1]
            return 200, answer, data
        return self._error(400, "UnsupportedHttpVerb", f"{method} is not served by this fake")
