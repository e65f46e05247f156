"""Google Cloud Storage through its JSON API, authenticated with a service-account key (httpx).

Requests carry a self-signed JWT (RS256, signed with the key's private key, audience the storage
API): no token exchange, so nothing but the storage endpoint is contacted. HMAC keys go through
GCS's S3-compatible XML API instead (:mod:`audiencehub.sources.s3`).
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import Any, BinaryIO
from urllib.parse import quote

import httpx
import jwt

from audiencehub.sources.base import FileInfo, PieceStream, Source, SourceError, SourceNotFound, SourceUnavailable
from audiencehub.sources.buckets import BucketRoot

JSON_API = "https://storage.googleapis.com"
AUDIENCE = "https://storage.googleapis.com/"
TOKEN_TTL_S = 3600
CHUNK = 256 << 10


def parse_service_account(value: Any) -> dict[str, Any]:
    """The key file's fields, or ValueError saying which is missing (never the key's content)."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError as exc:
            raise ValueError("auth.params.serviceAccountKey: not valid JSON (paste the key file's content)") from exc
    if not isinstance(value, dict):
        raise ValueError("auth.params.serviceAccountKey: must be the key file's JSON object")
    missing = [k for k in ("client_email", "private_key") if not isinstance(value.get(k), str) or not value[k]]
    if missing:
        raise ValueError(f"auth.params.serviceAccountKey: the key lacks {', '.join(missing)}")
    try:
        jwt.encode({"probe": 1}, value["private_key"], algorithm="RS256")
    except Exception as exc:
        raise ValueError("auth.params.serviceAccountKey: private_key is not a PEM RSA private key") from exc
    return value


class GcsSource(Source):
    def __init__(
        self,
        label: str,
        *,
        service_account: Any,
        endpoint: str | None = None,
        bucket: str | None = None,
        folder: str = "",
        timeout: float = 60.0,
    ) -> None:
        self.label = label
        self.bucket = bucket
        self.root = BucketRoot(label, bucket, folder)
        self._key = parse_service_account(service_account)
        self._endpoint = (endpoint or JSON_API).rstrip("/")
        self._http = httpx.Client(timeout=httpx.Timeout(timeout, connect=10.0))
        self._token: tuple[str, float] | None = None

    def describe(self) -> str:
        return self.label

    def _auth(self) -> dict[str, str]:
        stamp = time.time()
        if self._token is None or self._token[1] < stamp + 60:
            claims = {
                "iss": self._key["client_email"],
                "sub": self._key["client_email"],
                "aud": AUDIENCE,
                "iat": int(stamp),
                "exp": int(stamp) + TOKEN_TTL_S,
            }
            headers = {"kid": self._key["private_key_id"]} if self._key.get("private_key_id") else None
            token = jwt.encode(claims, self._key["private_key"], algorithm="RS256", headers=headers)
            self._token = (token, stamp + TOKEN_TTL_S)
        return {"Authorization": f"Bearer {self._token[0]}"}

    def _object_url(self, bucket: str, name: str) -> str:
        return f"{self._endpoint}/storage/v1/b/{quote(bucket, safe='')}/o/{quote(name, safe='')}"

    def _request(self, method: str, url: str, where: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, url, headers={**self._auth(), **kwargs.pop("headers", {})}, **kwargs)
        except httpx.TransportError as exc:
            raise SourceUnavailable(
                f"{self.label}: {where}: the connection failed ({type(exc).__name__}: {exc})"
            ) from exc
        if response.status_code >= 400:
            raise self._error(response, where)
        return response

    def _transport(self, exc: httpx.TransportError, where: str) -> SourceUnavailable:
        return SourceUnavailable(f"{self.label}: {where}: the connection failed ({type(exc).__name__}: {exc})")

    def _error(self, response: httpx.Response, where: str) -> Exception:
        status = response.status_code
        try:
            message = response.json().get("error", {}).get("message", "")
        except ValueError:
            message = response.text[:200]
        said = f"the server said HTTP {status}" + (f": {message}" if message else "")
        full = f"{self.label}: {where}"
        if status == 404:
            return SourceNotFound(f"{full}: no such bucket, file or folder; {said}")
        if status == 412:
            return SourceError(f"{full}: the file changed while it was being read; start a new run ({said})")
        if status in (408, 429) or status >= 500:
            return SourceUnavailable(f"{full}: {said}")
        if status in (401, 403):
            return SourceError(f"{full}: access refused, check the service account and its permissions; {said}")
        return SourceError(f"{full}: {said}")

    def _info(self, bucket: str, item: dict[str, Any]) -> FileInfo:
        updated = datetime.fromisoformat(item["updated"].replace("Z", "+00:00")).timestamp()
        return FileInfo(
            path=self.root.relative(bucket, item["name"]),
            size=int(item.get("size", 0)),
            modified=updated,
            version=str(item["generation"]) if item.get("generation") else None,
        )

    def stat(self, path: str) -> FileInfo:
        bucket, name = self.root.locate(path)
        if not name or name.endswith("/"):
            raise SourceNotFound(f"{self.label}: {path!r} is a folder, not a file")
        where = f"gs://{bucket}/{name}"
        return self._info(bucket, self._request("GET", self._object_url(bucket, name), where).json())

    def list(self, path: str, *, recursive: bool = False) -> list[FileInfo]:
        bucket, prefix = self.root.locate(path, folder=True)
        where = f"gs://{bucket}/{prefix}"
        params: dict[str, Any] = {"prefix": prefix, "maxResults": 1000}
        if not recursive:
            params["delimiter"] = "/"
        out: list[FileInfo] = []
        seen_any = False
        url = f"{self._endpoint}/storage/v1/b/{quote(bucket, safe='')}/o"
        while True:
            page = self._request("GET", url, where, params=params).json()
            seen_any = seen_any or bool(page.get("items") or page.get("prefixes"))
            out.extend(self._info(bucket, item) for item in page.get("items", []) if not item["name"].endswith("/"))
            token = page.get("nextPageToken")
            if not token:
                break
            params["pageToken"] = token
        if not seen_any and path.strip("/"):  # an empty root is a root with no files yet
            raise SourceNotFound(f"{self.label}: no folder at {where}")
        return sorted(out, key=lambda f: f.path)

    def open(self, path: str, *, offset: int = 0, version: str | None = None) -> BinaryIO:
        bucket, name = self.root.locate(path)
        where = f"gs://{bucket}/{name}"
        params: dict[str, Any] = {"alt": "media"}
        if version:
            params["ifGenerationMatch"] = version
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        request = self._http.build_request(
            "GET", self._object_url(bucket, name), params=params, headers={**self._auth(), **headers}
        )
        try:
            response = self._http.send(request, stream=True)
        except httpx.TransportError as exc:
            raise SourceUnavailable(
                f"{self.label}: {where}: the connection failed ({type(exc).__name__}: {exc})"
            ) from exc
        if response.status_code == 416 and offset:
            response.close()
            return PieceStream.empty()  # type: ignore[return-value]
        if response.status_code >= 400:
            response.read()
            response.close()
            raise self._error(response, where)
        if offset and response.status_code != 206:
            response.close()
            raise SourceError(f"{self.label}: {where}: the server ignored a ranged read (HTTP {response.status_code})")
        chunks = response.iter_raw(CHUNK)
        pending = [b""]

        def piece(n: int) -> bytes:
            if not pending[0]:
                try:
                    pending[0] = next(chunks, b"")
                except httpx.TransportError as exc:
                    raise self._transport(exc, where) from exc
            data, pending[0] = pending[0][:n], pending[0][n:]
            return data

        return PieceStream(piece, response.close, CHUNK)  # type: ignore[return-value]

    def check(self) -> int:
        if self.bucket is None:
            raise SourceError(f"{self.label}: name a bucket (bucketName) to test a service-account connection")
        return super().check()

    def close(self) -> None:
        self._http.close()
