"""Batch ingestion (``/data/foundation/import``): create a batch, upload files into it, complete it.

Completing queues a job that validates every record against the dataset's schema in one engine pass
(``engines/xdm_sql``). A batch succeeds or fails as a whole: when any record breaks the schema, the
batch is ``failed`` and its failed records, each with its ``_errors``, are kept for AEP's failed-batch
diagnostics (``/data/foundation/export/batches/{id}/failed``). A successful batch is written to the
dataset's folder in the lake, applied to the profile store when the dataset is profile-enabled, and
only then marked ``success`` in the catalog (one transaction): readers never see half a batch.

Steps are idempotent per batch id, so a job interrupted by a crash is simply run again.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import logging
import shutil
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import Connection

from audiencehub.domain.namespaces import Rule
from audiencehub.domain.paths import landing_zone_key
from audiencehub.domain.xdm import ResolvedSchema
from audiencehub.engines.base import Engine, EngineError, EngineInputError
from audiencehub.engines.ingest_sql import lit
from audiencehub.engines.xdm_sql import (
    CODE_INVALID,
    ERRORS,
    IdentitySource,
    InputFile,
    Validation,
    dataset_select,
    failed_select,
    leaves,
    validated_select,
)
from audiencehub.errors import AudiencehubError, BadRequest, Duplicate, NotFound
from audiencehub.metadata import jobs
from audiencehub.metadata import tables as t
from audiencehub.metadata.store import MetadataStore, Row, Scope, delete_rows, get_row, insert_row, now
from audiencehub.profile.base import FragmentBatch, ProfileStore
from audiencehub.services.auth import Principal
from audiencehub.services.catalog import KIND_AUDIENCE, CatalogService, created_ms, describe_batch
from audiencehub.services.lake import Lake
from audiencehub.services.landing_zone import Upload

log = logging.getLogger(__name__)

JOB_BATCH = "batch-ingest"
FORMATS = ("json", "csv", "parquet")
LOADING, QUEUED, PROCESSING, SUCCESS, FAILED, ABORTED = (
    "loading",
    "queued",
    "processing",
    "success",
    "failed",
    "aborted",
)
FAILED_FILE = "failed_records_0.json"
SEGMENT_CLASS = "https://ns.adobe.com/xdm/context/segmentdefinition"
EVENT_CLASS = "https://ns.adobe.com/xdm/context/experienceevent"


def _ms() -> int:
    return int(time.time() * 1000)


def _file_key(path: str) -> str:
    try:
        return landing_zone_key(path)
    except ValueError as exc:
        raise BadRequest(f"filePath: {exc}") from exc


class BatchIngestionService:
    def __init__(
        self,
        store: MetadataStore,
        engine: Engine,
        lake: Lake,
        catalog: CatalogService,
        profiles: ProfileStore,
        *,
        schema_of: Callable[[Scope, str], ResolvedSchema],
        namespace_rules: Callable[[Scope], dict[str, Rule]],
        max_upload_bytes: int,
        wake: Callable[[], None] = lambda: None,
        on_profile_change: Callable[[Scope, str], object] = lambda scope, dataset_id: None,
    ) -> None:
        self._on_profile_change = on_profile_change
        """Told (scope, dataset id) after a batch changed the profile store: continuous segments re-evaluate."""
        self._store = store
        self._engine = engine
        self._lake = lake
        self._catalog = catalog
        self._profiles = profiles
        self._schema_of = schema_of
        self._rules = namespace_rules
        self._max_bytes = max_upload_bytes
        self._wake = wake

    # ----- the API's steps -----

    def create(self, caller: Principal, body: dict[str, Any]) -> dict[str, Any]:
        scope = caller.scope
        dataset_id = body.get("datasetId")
        if not isinstance(dataset_id, str) or not dataset_id:
            raise BadRequest(f"datasetId: a dataset id is required, got {dataset_id!r}")
        fmt_body = body.get("inputFormat") or {}
        if not isinstance(fmt_body, dict):
            raise BadRequest(f"inputFormat: must be an object, got {fmt_body!r}")
        fmt = str(fmt_body.get("format", "json")).lower()
        if fmt not in FORMATS:
            raise BadRequest(f"inputFormat.format: must be one of {', '.join(FORMATS)}, got {fmt_body.get('format')!r}")
        dataset = self._catalog.get_row(scope, dataset_id)
        if dataset["kind"] == KIND_AUDIENCE:
            raise BadRequest(
                f"datasetId: dataset {dataset_id!r} belongs to an external audience; ingest through its runs"
            )
        batch_id = str(uuid.uuid4())
        self._insert(scope, batch_id, dataset_id, fmt, fmt_body, caller.user, caller.client_id, "api")
        return self.describe(scope, batch_id)

    def _insert(
        self,
        scope: Scope,
        batch_id: str,
        dataset_id: str,
        fmt: str,
        fmt_body: dict[str, Any],
        user: str,
        client: str,
        source: str,
    ) -> None:
        stamp = _ms()
        with self._store.tx() as conn:
            insert_row(
                conn,
                t.batches,
                {
                    "id": batch_id,
                    "org_id": scope.org_id,
                    "sandbox": scope.sandbox,
                    "dataset_id": dataset_id,
                    "status": LOADING,
                    "record_count": 0,
                    "size_bytes": 0,
                    "created_at": now(),
                    "created_ms": created_ms(),
                    "props": {
                        "inputFormat": {**fmt_body, "format": fmt},
                        "createdUser": user,
                        "createdClient": client,
                        "updated": stamp,
                        "source": source,
                    },
                },
            )

    def describe(self, scope: Scope, batch_id: str) -> dict[str, Any]:
        return describe_batch(scope, self._row(scope, batch_id))

    def _row(self, scope: Scope, batch_id: str) -> Row:
        with self._store.read() as conn:
            row = get_row(conn, t.batches, scope, id=batch_id)
        if row is None or row["run_id"]:
            raise NotFound(f"batch {batch_id!r} was not found")
        return row

    def files_dir(self, scope: Scope, batch_id: str) -> Path:
        return self._lake.staging(scope, batch_id) / "files"

    def begin_upload(self, scope: Scope, batch_id: str, dataset_id: str, file_path: str) -> Upload:
        row = self._row(scope, batch_id)
        if row["dataset_id"] != dataset_id:
            raise NotFound(f"batch {batch_id!r} has no dataset {dataset_id!r}")
        if row["status"] != LOADING:
            raise BadRequest(f"batch {batch_id!r} is {row['status']}: files can be added only while it is loading")
        return Upload(self.files_dir(scope, batch_id) / _file_key(file_path), self._max_bytes)

    def complete(self, scope: Scope, batch_id: str) -> dict[str, Any]:
        with self._store.tx() as conn:
            # Each status change locks the batch's row first: a COMPLETE and an ABORT never both win (PostgreSQL).
            row = get_row(conn, t.batches, scope, for_update=True, id=batch_id)
            if row is None or row["run_id"]:
                raise NotFound(f"batch {batch_id!r} was not found")
            if row["status"] != LOADING:
                raise Duplicate(f"batch {batch_id!r} is already {row['status']}")
            folder = self.files_dir(scope, batch_id)
            if not folder.is_dir() or not any(p.is_file() for p in folder.rglob("*")):
                raise BadRequest(f"batch {batch_id!r} has no files: upload at least one before COMPLETE")
            props = {**(row["props"] or {}), "updated": _ms()}
            conn.execute(t.batches.update().where(t.batches.c.id == batch_id).values(status=QUEUED, props=props))
            jobs.enqueue(conn, scope, JOB_BATCH, batch_id)
        self._wake()
        return self.describe(scope, batch_id)

    def abort(self, scope: Scope, batch_id: str) -> dict[str, Any]:
        with self._store.tx() as conn:
            row = get_row(conn, t.batches, scope, for_update=True, id=batch_id)
            if row is None or row["run_id"]:
                raise NotFound(f"batch {batch_id!r} was not found")
            if row["status"] != LOADING:
                raise Duplicate(f"batch {batch_id!r} is {row['status']}: only a loading batch can be aborted")
            props = {**(row["props"] or {}), "updated": _ms()}
            conn.execute(t.batches.update().where(t.batches.c.id == batch_id).values(status=ABORTED, props=props))
        self._lake.remove(self._lake.staging(scope, batch_id))
        return self.describe(scope, batch_id)

    # ----- failed-batch diagnostics -----

    def failed_dir(self, scope: Scope, batch_id: str) -> Path:
        return self._lake.run_dir(scope, batch_id) / "failed"

    def failed_files(self, scope: Scope, batch_id: str) -> list[dict[str, Any]]:
        self._row(scope, batch_id)
        folder = self.failed_dir(scope, batch_id)
        files = sorted(p for p in folder.glob("*") if p.is_file()) if folder.is_dir() else []
        return [{"name": p.name, "length": str(p.stat().st_size)} for p in files]

    def failed_file(self, scope: Scope, batch_id: str, name: str) -> Path:
        self._row(scope, batch_id)
        path = self.failed_dir(scope, batch_id) / _file_key(name)
        if not path.is_file():
            raise NotFound(f"batch {batch_id!r} has no failed-records file {name!r}")
        return path

    # ----- one call: streaming's micro-batches -----

    def ingest_file(
        self, scope: Scope, dataset_id: str, path: Path, *, batch_id: str, fmt: str = "json", source: str = "streaming"
    ) -> str:
        """Creates (if new), validates and commits one batch from a local file; answers its final status.

        Idempotent per ``batch_id``: a finished batch is not written twice.
        """
        with self._store.read() as conn:
            row = get_row(conn, t.batches, scope, id=batch_id)
        if row is not None and row["status"] in (SUCCESS, FAILED, ABORTED):
            return str(row["status"])
        if row is None:
            self._catalog.get_row(scope, dataset_id)
            self._insert(scope, batch_id, dataset_id, fmt, {}, "audiencehub", "audiencehub", source)
        target = self.files_dir(scope, batch_id) / path.name
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
        self.execute(batch_id, scope)
        return str(self._row(scope, batch_id)["status"])

    def validate(self, scope: Scope, dataset_id: str, records: list[Any]) -> list[list[str]]:
        """Per record, what is wrong with it against the dataset's schema (an empty list: nothing)."""
        dataset = self._catalog.get_row(scope, dataset_id)
        if not records:
            return []
        v = self._validation(scope, dataset, self._schema_of(scope, dataset["schema_id"]))
        with self._engine.session() as session:
            scratch = self._lake.staging(scope, f"validate-{uuid.uuid4().hex}")
            try:
                scratch.mkdir(parents=True, exist_ok=True)
                lines = scratch / "records.json"
                lines.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
                sql = validated_select([InputFile(lines, "json")], v)
                got = session.query(f"SELECT {ERRORS} FROM ({sql}) ORDER BY __ah_rn")
            finally:
                self._lake.remove(scratch)
        return [list(r[0]) for r in got]

    # ----- the job -----

    def execute(self, batch_id: str, scope: Scope) -> None:
        with self._store.tx() as conn:
            row = get_row(conn, t.batches, scope, for_update=True, id=batch_id)
            if row is None or row["status"] in (SUCCESS, FAILED, ABORTED):
                return
            props = {**(row["props"] or {}), "started": (row["props"] or {}).get("started") or _ms()}
            conn.execute(t.batches.update().where(t.batches.c.id == batch_id).values(status=PROCESSING, props=props))
        try:
            self._process(scope, row)
        except (EngineInputError, BadRequest) as exc:
            self._finish(scope, batch_id, FAILED, errors=[{"code": CODE_INVALID, "description": exc.detail}])
        except AudiencehubError as exc:  # e.g. the dataset or its schema was deleted meanwhile
            self._finish(scope, batch_id, FAILED, errors=[{"code": exc.code, "description": exc.detail}])
        except Exception as exc:
            if self._in_profile_store(scope, row["dataset_id"], batch_id):
                raise  # the profile store has it: only rolling forward (the job is retried) keeps them in step
            # Never leave a batch "processing" forever: say it failed, keep the details for the log.
            log.exception("batch %s failed", batch_id)
            reason = str(exc) if isinstance(exc, EngineError) else f"internal error ({type(exc).__name__})"
            self._finish(scope, batch_id, FAILED, errors=[{"code": "INGEST-1001-500", "description": reason}])
            self._lake.remove(self._lake.staging(scope, batch_id))

    def _in_profile_store(self, scope: Scope, dataset_id: str, batch_id: str) -> bool:
        """Whether the profile store holds the batch; only a Profile-enabled dataset's batches go there (a worker
        process may not be able to open the embedded store at all)."""
        try:
            dataset = self._catalog.get_row(scope, dataset_id)
        except AudiencehubError:  # deleted meanwhile
            return False
        return self._catalog.profile_enabled(dataset) and self._profiles.batch_applied(scope, batch_id)

    def recover(self, batch_id: str, scope: Scope) -> None:
        """A worker died while the batch processed: every step is idempotent, so process it again."""
        self.execute(batch_id, scope)

    def _validation(self, scope: Scope, dataset: Row, schema: ResolvedSchema) -> Validation:
        """How the dataset's records are checked; values convert to the schema's types as AEP documents."""
        return Validation(
            properties=schema.properties,
            required=schema.required,
            identity_fields=tuple(IdentitySource(i.path, i.namespace, i.primary) for i in schema.identities),
            rules=self._rules(scope),
            needs_identity=self._catalog.profile_enabled(dataset),
            lenient=True,
        )

    def _inputs(self, folder: Path, fmt: str, multiline: bool) -> list[InputFile]:
        files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
        out = []
        for p in files:
            packed = _is_gzip(p)
            if fmt == "json":
                first = _first_byte(p, packed)
                json_format = "array" if first == b"[" else "unstructured" if multiline else "newline_delimited"
                out.append(InputFile(p, "json", json_format, gzip=packed))
            elif fmt == "csv":
                header = _csv_header(p, packed)
                out.append(InputFile(p, "csv", width=len(header), header=tuple(header), gzip=packed))
            else:
                out.append(InputFile(p, "parquet"))
        return out

    def _process(self, scope: Scope, row: Row) -> None:
        batch_id = row["id"]
        dataset = self._catalog.get_row(scope, row["dataset_id"])
        props = row["props"] or {}
        fmt_body = props.get("inputFormat") or {}
        fmt = fmt_body.get("format", "json")
        staging = self._lake.staging(scope, batch_id)
        inputs = self._inputs(self.files_dir(scope, batch_id), fmt, bool(fmt_body.get("isMultiLineJson")))
        if not inputs:
            raise BadRequest(f"batch {batch_id!r} has no files")
        schema = self._schema_of(scope, dataset["schema_id"])
        v = self._validation(scope, dataset, schema)
        validated = staging / "validated.parquet"
        size = sum(f.path.stat().st_size for f in inputs)
        with self._engine.session() as session:
            session.copy(validated_select(inputs, v), validated)
            counted = session.query(
                f"SELECT count(*), count(*) FILTER (WHERE len({ERRORS}) > 0), "
                f"first({ERRORS}[1] ORDER BY __ah_file, __ah_rn) FILTER (WHERE len({ERRORS}) > 0) "
                f"FROM read_parquet({lit(str(validated))})"
            )[0]
            total, failed, first = int(counted[0]), int(counted[1]), counted[2]
            if failed:
                out = self.failed_dir(scope, batch_id) / FAILED_FILE
                folder = self.files_dir(scope, batch_id)
                names = [str(f.path.relative_to(folder)) for f in inputs]
                session.copy(failed_select(validated, names), out, "json")
                message = (
                    f"{failed} of {total} records failed validation against schema {schema.title!r}; "
                    f"the first: {first}. Read them all at /data/foundation/export/batches/{batch_id}/failed"
                )
                self._finish(
                    scope,
                    batch_id,
                    FAILED,
                    errors=[{"code": CODE_INVALID, "description": message, "recordCount": failed}],
                    records=total,
                    failed=failed,
                    size=size,
                )
                self._lake.remove(staging)
                return
            part = staging / "out" / "part-00000.parquet"
            session.copy(dataset_select(validated, schema.properties), part)
        if self._catalog.profile_enabled(dataset):
            self._profiles.apply_fragments(scope, self._fragments(batch_id, dataset["id"], schema, validated))
        final = self._lake.batch(scope, dataset["id"], batch_id)
        self._lake.publish(staging / "out", final)
        done = self._finish(scope, batch_id, SUCCESS, records=total, size=size, dataset_id=dataset["id"])
        self._lake.remove(staging)
        if done and self._catalog.profile_enabled(dataset):
            try:
                self._on_profile_change(scope, dataset["id"])
            except Exception:  # the batch is committed; the daily job evaluates what this missed
                log.exception("re-evaluating continuous segments after batch %s failed", batch_id)

    @staticmethod
    def _fragments(batch_id: str, dataset_id: str, schema: ResolvedSchema, validated: Path) -> FragmentBatch:
        kept = [
            (leaf.name, leaf.type, leaf.access())
            for leaf in leaves(schema.properties)
            if leaf.path != ("identityMap",)  # identities live in the graph
        ]
        if schema.class_id == SEGMENT_CLASS:
            batch_kind = "entity"  # segment definitions: kept apart from people profiles (seed 000)
        elif schema.class_id == EVENT_CLASS:
            batch_kind = "event"
        else:
            batch_kind = "profile"
        return FragmentBatch(batch_id, dataset_id, batch_kind, validated, kept, time.time())

    def _finish(
        self,
        scope: Scope,
        batch_id: str,
        status: str,
        *,
        errors: list[dict[str, Any]] | None = None,
        records: int = 0,
        failed: int = 0,
        size: int = 0,
        dataset_id: str | None = None,
    ) -> bool:
        """Records the batch's outcome; False when the batch (or, given ``dataset_id``, its dataset) is gone."""
        with self._store.tx() as conn:
            # The dataset's row lock orders the commit against a delete of the dataset (catalog.delete_dataset).
            gone = dataset_id is not None and get_row(conn, t.datasets, scope, for_update=True, id=dataset_id) is None
            row = get_row(conn, t.batches, scope, for_update=True, id=batch_id)
            if gone:
                delete_rows(conn, t.batches, id=batch_id)
            elif row is None:
                return False
            else:
                self._record(conn, row, status, errors=errors, records=records, failed=failed, size=size)
        if gone:
            # The dataset was deleted while the batch processed: what the batch wrote goes with it.
            assert dataset_id is not None
            self._profiles.remove_dataset(scope, dataset_id)
            self._lake.remove(self._lake.dataset(scope, dataset_id))
            return False
        return True

    @staticmethod
    def _record(
        conn: Connection,
        row: Row,
        status: str,
        *,
        errors: list[dict[str, Any]] | None,
        records: int,
        failed: int,
        size: int,
    ) -> None:
        stamp = _ms()
        props = {
            **(row["props"] or {}),
            "updated": stamp,
            "completed": stamp,
            "failedRecordCount": failed,
            "recordsRead": records,
            "errors": errors or [],
        }
        conn.execute(
            t.batches.update()
            .where(t.batches.c.id == row["id"])
            .values(
                status=status,
                record_count=records,
                size_bytes=size,
                completed_at=now(),
                error=errors[0]["description"] if errors else None,
                props=props,
            )
        )


def _is_gzip(path: Path) -> bool:
    """Told by the file's first two bytes (gzip's magic number), not by its name."""
    with path.open("rb") as fh:
        return fh.read(2) == b"\x1f\x8b"


def _first_byte(path: Path, packed: bool) -> bytes:
    opener = gzip.open if packed else open
    with opener(path, "rb") as fh:
        head = fh.read(4096).removeprefix(b"\xef\xbb\xbf").lstrip()
    return head[:1]


def _csv_header(path: Path, packed: bool) -> list[str]:
    opener = gzip.open if packed else open
    with opener(path, "rb") as fh:
        line = fh.readline(1 << 20)
    text = line.decode("utf-8-sig", errors="replace")
    header = next(csv.reader(io.StringIO(text)), [])
    if not header:
        raise BadRequest(f"{path.name}: the CSV file has no header line")
    for name in header:
        if not name.strip() or any(not part for part in name.split(".")):
            raise BadRequest(f"{path.name}: header {name!r} is not a field path (person.name.firstName)")
    return header
