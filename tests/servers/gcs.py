"""gcp-storage-emulator (GCS's JSON API) in a subprocess, in memory.

Found by experiment against gcp-storage-emulator 2026.7.19 (HTTP/1.0, one request at a time: a single-threaded
``http.server``; every response closes the connection):

Served correctly:

* bucket create: ``POST /storage/v1/b?project=P`` with ``{"name": ...}`` -> 200 bucket resource; 409 JSON error
  when it exists.
* upload: ``POST /upload/storage/v1/b/{bucket}/o?uploadType=media&name=N`` -> 200 object resource
  (names with ``/``, spaces, ``#``, ``?`` and non-ASCII work when URL-encoded).
* list: ``GET /storage/v1/b/{bucket}/o?prefix=&delimiter=`` -> ``{"kind", "prefixes", "items"}``, items sorted by
  name, prefixes sorted; both keys always present (empty lists when nothing matches).
* object metadata: ``GET /storage/v1/b/{bucket}/o/{url-encoded name}`` -> ``size`` (a string, as in GCS),
  ``updated``, ``timeCreated``, ``generation`` (a string), ``metageneration``, ``md5Hash``, ``crc32c``,
  ``contentType``, ``mediaLink``.
* media download: ``GET .../o/{name}?alt=media`` (also ``/download/storage/v1/...``) -> 200 with
  ``x-goog-hash: crc32c=...,md5=...``; with ``Range: bytes=N-`` or ``bytes=N-M`` -> 206 with
  ``Content-Range: bytes N-END/SIZE`` and the right slice (no ``x-goog-hash`` then).

Not like GCS:

* no paging: ``maxResults`` and ``pageToken`` are ignored; every list returns all matches and never a
  ``nextPageToken``.
* missing object, missing bucket (metadata, media or list): 404 with an EMPTY body (GCS sends a JSON error).
* ``Range`` past the end -> 206 with an empty body and ``Content-Range: bytes 1000-35/36`` (GCS: 416);
  suffix ranges (``bytes=-N``) and multi-ranges are ignored -> 200 with the whole object.
* ``Authorization`` is never checked: no header, ``Bearer garbage`` or any string all work.
* ``fields=`` and ``ifGenerationMatch`` (on download) are ignored.
* the S3-style XML API (what botocore speaks to GCS with HMAC keys) is barely there: GetObject (with ``Range``)
  and PutObject on ``/{bucket}/{name}`` work, any signature accepted; ListObjects, ListObjectsV2 and HeadObject
  answer 501 Not Implemented.
"""

from __future__ import annotations

import sys
import uuid
from pathlib import Path
from urllib.parse import quote

import httpx

from tests.servers._process import LOOPBACK, ServerProcess, clean_env, http_ok


class GcsEmulator:
    """gcp-storage-emulator on 127.0.0.1, in memory; :attr:`endpoint` is the JSON API root (no auth needed)."""

    project = "test-project"

    def __init__(self) -> None:
        exe = Path(sys.executable).parent / "gcp-storage-emulator"
        self._process, self.port = ServerProcess.launch(
            "gcp-storage-emulator",
            lambda port: [str(exe), "start", "--host", LOOPBACK, "--port", str(port), "--in-memory"],
            lambda port: http_ok(f"http://{LOOPBACK}:{port}/"),  # the emulator's health check
            env=clean_env(),
        )
        self.endpoint = f"http://{LOOPBACK}:{self.port}"
        self._http = httpx.Client(base_url=self.endpoint, timeout=30.0)

    def make_bucket(self, name: str | None = None) -> str:
        """Creates a bucket (a unique name when none is given) and returns its name."""
        name = name or f"test-{uuid.uuid4().hex[:16]}"
        response = self._http.post("/storage/v1/b", params={"project": self.project}, json={"name": name})
        response.raise_for_status()
        return name

    def put(self, bucket: str, name: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        response = self._http.post(
            f"/upload/storage/v1/b/{bucket}/o",
            params={"uploadType": "media", "name": name},
            content=data,
            headers={"Content-Type": content_type},
        )
        response.raise_for_status()

    def object_url(self, bucket: str, name: str) -> str:
        """The JSON API URL of an object's metadata (add ``?alt=media`` for its content)."""
        return f"{self.endpoint}/storage/v1/b/{bucket}/o/{quote(name, safe='')}"

    def stop(self) -> None:
        self._http.close()
        self._process.stop()

    def log(self) -> str:
        return self._process.log()
