"""Amazon S3 and S3-compatible stores (MinIO, GCS's interoperability XML API) as a source, with botocore.

The root is a bucket and an optional folder (``bucketName``/``folderPath`` of the connection); with
no bucket, a path's first segment names it. botocore's own retries are off: the one retry policy
is :mod:`audiencehub.sources.retry`'s.
"""

from __future__ import annotations

from typing import Any, BinaryIO

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError, IncompleteReadError
from botocore.exceptions import ConnectionError as BotoConnectionError

from audiencehub.sources.base import FileInfo, PieceStream, Source, SourceError, SourceNotFound, SourceUnavailable
from audiencehub.sources.buckets import BucketRoot

TRANSIENT_CODES = frozenset(
    {"SlowDown", "Throttling", "ThrottlingException", "RequestTimeout", "InternalError", "ServiceUnavailable"}
)
PIECE = 256 << 10
"""Bytes asked of a response body at a time: what a broken connection can cost before a resume."""
NOT_FOUND_CODES = frozenset({"NoSuchKey", "NotFound", "404", "NoSuchBucket"})


class S3Source(Source):
    def __init__(
        self,
        label: str,
        *,
        access_key: str,
        secret_key: str,
        session_token: str | None = None,
        endpoint_url: str | None = None,
        region: str | None = None,
        bucket: str | None = None,
        folder: str = "",
        connect_timeout: float = 10.0,
        read_timeout: float = 60.0,
    ) -> None:
        self.label = label
        self.bucket = bucket
        self.root = BucketRoot(label, bucket, folder)
        config = Config(
            signature_version="s3v4",
            s3={"addressing_style": "path" if endpoint_url else "auto"},
            retries={"total_max_attempts": 1},
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
        )
        # A session of its own: never the process's environment, ~/.aws files or instance profile.
        session = boto3.session.Session(
            aws_access_key_id=access_key,
            aws_secret_access_key=secret_key,
            aws_session_token=session_token,
            region_name=region or "us-east-1",
        )
        self._client = session.client("s3", endpoint_url=endpoint_url, config=config)

    def describe(self) -> str:
        return self.label

    # -- paths -------------------------------------------------------------------------------

    def _where(self, bucket: str, key: str) -> str:
        return f"s3://{bucket}/{key}"

    # -- operations --------------------------------------------------------------------------

    def stat(self, path: str) -> FileInfo:
        bucket, key = self.root.locate(path)
        if not key or key.endswith("/"):
            raise SourceNotFound(f"{self.label}: {path!r} is a folder, not a file")
        try:
            head = self._client.head_object(Bucket=bucket, Key=key)
        except (BotoCoreError, ClientError) as exc:
            raise self._error(exc, bucket, key) from exc
        return FileInfo(
            path=self.root.relative(bucket, key),
            size=int(head["ContentLength"]),
            modified=head["LastModified"].timestamp(),
            version=head.get("ETag"),
        )

    def list(self, path: str, *, recursive: bool = False) -> list[FileInfo]:
        bucket, prefix = self.root.locate(path, folder=True)
        args: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix}
        if not recursive:
            args["Delimiter"] = "/"
        out: list[FileInfo] = []
        seen_any = False
        try:
            for page in self._client.get_paginator("list_objects_v2").paginate(**args):
                seen_any = seen_any or bool(page.get("Contents") or page.get("CommonPrefixes"))
                for obj in page.get("Contents", []):
                    if obj["Key"].endswith("/"):  # a folder marker
                        continue
                    out.append(
                        FileInfo(
                            path=self.root.relative(bucket, obj["Key"]),
                            size=int(obj["Size"]),
                            modified=obj["LastModified"].timestamp(),
                            version=obj.get("ETag"),
                        )
                    )
        except (BotoCoreError, ClientError) as exc:
            raise self._error(exc, bucket, prefix) from exc
        if not seen_any and path.strip("/"):  # an empty root is a root with no files yet
            raise SourceNotFound(f"{self.label}: no folder at {self._where(bucket, prefix)}")
        return sorted(out, key=lambda f: f.path)

    def open(self, path: str, *, offset: int = 0, version: str | None = None) -> BinaryIO:
        bucket, key = self.root.locate(path)
        args: dict[str, Any] = {"Bucket": bucket, "Key": key}
        if offset:
            args["Range"] = f"bytes={offset}-"
        if version:
            args["IfMatch"] = version
        try:
            body = self._client.get_object(**args)["Body"]
        except ClientError as exc:
            if offset and exc.response.get("Error", {}).get("Code") == "InvalidRange":
                return PieceStream.empty()  # type: ignore[return-value]  # the whole file was read
            raise self._error(exc, bucket, key) from exc
        except BotoCoreError as exc:
            raise self._error(exc, bucket, key) from exc

        def piece(n: int) -> bytes:
            try:
                data: bytes = body.read(n)
                return data
            except (BotoCoreError, ClientError) as exc:
                raise self._error(exc, bucket, key) from exc

        return PieceStream(piece, body.close, PIECE)  # type: ignore[return-value]

    def check(self) -> int:
        if self.bucket is None:
            try:
                return len(self._client.list_buckets().get("Buckets", []))
            except (BotoCoreError, ClientError) as exc:
                raise self._error(exc, "", "") from exc
        return super().check()

    def close(self) -> None:
        self._client.close()

    # -- errors ------------------------------------------------------------------------------

    def _error(self, exc: Exception, bucket: str, key: str) -> Exception:
        where = f"{self.label}: {self._where(bucket, key)}" if bucket else self.label
        if isinstance(exc, HTTPClientError | BotoConnectionError | IncompleteReadError):
            return SourceUnavailable(f"{where}: the connection failed ({type(exc).__name__}: {exc})")
        if isinstance(exc, ClientError):
            err = exc.response.get("Error", {})
            code = str(err.get("Code", ""))
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
            message = err.get("Message") or ""
            said = f"the server said {code or status}" + (f": {message}" if message else "") + f" (HTTP {status})"
            if code == "NoSuchBucket":
                return SourceNotFound(f"{where}: the bucket {bucket!r} does not exist; {said}")
            if code in NOT_FOUND_CODES or status == 404:
                return SourceNotFound(f"{where}: no such file or folder; {said}")
            if code in ("PreconditionFailed", "412") or status == 412:
                return SourceError(f"{where}: the file changed while it was being read; start a new run ({said})")
            if code in TRANSIENT_CODES or status in (429, 500, 502, 503, 504):
                return SourceUnavailable(f"{where}: {said}")
            if status in (401, 403):
                return SourceError(f"{where}: access refused, check the connection's keys and permissions; {said}")
            return SourceError(f"{where}: {said}")
        return SourceError(f"{where}: {type(exc).__name__}: {exc}")
