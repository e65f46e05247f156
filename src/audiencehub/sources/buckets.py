"""The root of an object-store source: a bucket and a folder in it, or, with no bucket, the whole account."""

from __future__ import annotations

from audiencehub.domain.paths import validate_relative_path
from audiencehub.sources.base import SourceError


class BucketRoot:
    def __init__(self, label: str, bucket: str | None, folder: str) -> None:
        self.label = label
        self.bucket = bucket
        self.folder = folder.strip("/")

    def locate(self, path: str, *, folder: bool = False) -> tuple[str, str]:
        """(bucket, object key) of ``path`` under the root; a folder's key ends with "/".

        ValueError when the path is not acceptable (``..``, spaces, ...): it cannot leave the root.
        """
        rel = validate_relative_path(path.strip("/"), allow_empty=True)
        bucket = self.bucket
        if bucket is None:
            if not rel:
                raise SourceError(f"{self.label}: the connection names no bucket, so the path must start with one")
            bucket, _, rel = rel.partition("/")
        key = "/".join(p for p in (self.folder, rel) if p)
        if folder and key:
            key += "/"
        return bucket, key

    def relative(self, bucket: str, key: str) -> str:
        """The path under the root of the object ``key`` in ``bucket``."""
        rel = key[len(self.folder) + 1 :] if self.folder else key
        return rel if self.bucket is not None else f"{bucket}/{rel}"
