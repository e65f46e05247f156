"""Ingestion runs: source files → validated rows → dataset batch → profile store, atomically.

Commit protocol (one run, two stores):
1. everything is written under ``_staging/{runId}``, invisible to readers;
2. the profile store applies the run in one transaction that also records the run id;
3. the staged batch is moved into the dataset folder and the metadata store commits batch and run.
A crash before 2 leaves nothing (the run is reported FAILED on restart); a crash after 2 is
rolled forward on restart, because step 3 is idempotent and the profile store says the run applied.
"""

from __future__ import annotations

import csv
import gzip
import io
import logging
import threading
import time
import uuid
import zlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

from audiencehub.domain.audiences import DELETE_FIELD, AudienceField, CloudType, SourceParams, SourceSpec
from audiencehub.domain.connections import source_key
from audiencehub.domain.paths import landing_zone_key
from audiencehub.domain.runs import RunMetrics, Stage, StageState, Status
from audiencehub.domain.segments import SegmentCounts
from audiencehub.engines import ingest_sql as q
from audiencehub.engines.base import Engine, EngineSession
from audiencehub.errors import AudiencehubError
from audiencehub.metadata import evaluations
from audiencehub.metadata import tables as t
from audiencehub.metadata.store import MetadataStore, Row, Scope, get_row, insert_row, now, update_row
from audiencehub.profile.base import ApplyResult, AudienceRows, IdentityColumn, ProfileStore, ProfileStoreFailed
from audiencehub.services.lake import Lake
from audiencehub.sources.base import FileInfo, Source, SourceNotFound

log = logging.getLogger(__name__)

CSV_SUFFIXES = (".csv", ".csv.gz")
PROGRESS_EVERY_S = 1.0
ERRORS_CSV_HEADER = ",".join(q.ERROR_COLUMNS) + "\n"
"""What the errors download holds when a run rejected nothing."""
COMMIT_ATTEMPTS = 3


class RunFailed(Exception):
    """A run ends FAILED with this message; nothing is committed."""


@dataclass
class InputFile:
    info: FileInfo
    local: Path
    header: list[str]
    columns: list[q.Column]


@dataclass
class RunState:
    """One run as a job works on it: where it lives, its rows, and the stages and metrics it reports."""

    scope: Scope
    run: Row
    audience: Row
    stages: list[StageState]
    metrics: RunMetrics

    @property
    def run_id(self) -> str:
        run_id: str = self.run["id"]
        return run_id


class Hold:
    """Test fault injection: pause a run at a named checkpoint until its hold file is removed."""

    def __init__(self, folder: Path, at: str | None) -> None:
        self.folder = folder
        self.at = at

    def __call__(self, run_id: str, checkpoint: str) -> None:
        if self.at != checkpoint:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        marker = self.folder / f"{run_id}.{checkpoint}"
        marker.touch()
        deadline = time.monotonic() + 600
        while marker.exists() and time.monotonic() < deadline:
            time.sleep(0.05)


class IngestionService:
    def __init__(
        self,
        store: MetadataStore,
        engine: Engine,
        profiles: ProfileStore,
        lake: Lake,
        source_for: Callable[[Scope, SourceSpec], Source],
        hold: Hold,
        on_commit: Callable[[Scope, str, str], object] = lambda scope, audience_id, run_id: None,
    ) -> None:
        self._on_commit = on_commit
        """Told (scope, audience id, run id) after a run commits: segmentation re-evaluates what reads it."""
        self._store = store
        self._engine = engine
        self._profiles = profiles
        self._lake = lake
        self._source_for = source_for
        self._hold = hold

    # -- the job -------------------------------------------------------------------------------

    def execute(self, run_id: str, scope: Scope) -> None:
        state = self._load(scope, run_id)
        if state is None:
            return
        run, audience, metrics = state.run, state.audience, state.metrics
        staging = self._lake.staging(scope, run_id)
        self._transition(state, Stage.DATASET_INGEST)
        try:
            files = self._select_files(scope, audience, run, staging)
            metrics.filesProcessed = len(files)
            with self._engine.session(progress=self._progress_writer(run_id)) as session:
                validated = self._dataset_stage(session, audience, run, files, staging, metrics)
            self._transition(state, Stage.PROFILE_STORE_INGEST)
            self._hold(run_id, "before_profile")
            rows = self._audience_rows(audience, run, validated)
            try:
                result = self._profiles.apply_audience(scope, rows)
            except ProfileStoreFailed:
                # The store failed at its commit (DuckDB invalidates a database whose COMMIT fails, e.g. out of
                # memory): the commit may have reached its log all the same. The store, opened again, knows.
                found = self._applied_after_failure(scope, run_id)
                if found is None:
                    raise
                result = found
        except Exception as exc:
            self._fail(state, exc)
            self._lake.remove(staging)
            return
        # The profile store has the run: from here the only way is forward.
        self._hold(run_id, "after_profile_commit")
        self._roll_forward(state, result.to_dict())

    def _applied_after_failure(self, scope: Scope, run_id: str) -> ApplyResult | None:
        try:
            found = self._profiles.applied(scope, run_id)
        except Exception:
            log.exception("asking the profile store whether run %s was applied failed", run_id)
            return None
        if found is not None:
            log.warning("the profile store failed at the end of run %s but had applied it; completing it", run_id)
        return found

    def recover(self, run_id: str, scope: Scope) -> None:
        """A run whose worker died: roll forward if the profile store applied it, else fail it."""
        state = self._load(scope, run_id)
        if state is None:
            return
        result = self._profiles.applied(scope, run_id)
        if result is not None:
            log.info("run %s was applied to the profile store before the stop; completing its commit", run_id)
            self._roll_forward(state, result.to_dict())
            return
        self._fail(
            state, RunFailed("the server stopped while this run was processing; nothing was committed, start a new run")
        )
        self._lake.remove(self._lake.staging(scope, run_id))

    def _roll_forward(self, state: RunState, profile_result: dict[str, int]) -> None:
        """Completes the commit of a run the profile store applied; retried, and never reported as nothing."""
        for attempt in range(COMMIT_ATTEMPTS):
            try:
                self._commit(state, profile_result)
                self._lake.remove(self._lake.staging(state.scope, state.run_id))
            except Exception as exc:
                log.exception("committing run %s failed (attempt %d of %d)", state.run_id, attempt + 1, COMMIT_ATTEMPTS)
                error = exc
                if attempt + 1 < COMMIT_ATTEMPTS:
                    time.sleep(0.5 * 2**attempt)
                continue
            try:
                self._on_commit(state.scope, state.audience["id"], state.run_id)
            except Exception:  # the run is committed; a missed re-evaluation waits for the daily job
                log.exception("re-evaluating the segments that read audience %s failed", state.audience["id"])
            return
        # The members are in the profile store; say so, and keep the staged batch for an operator.
        self._fail(
            state,
            RunFailed(
                "the profile store applied this run, but its dataset batch could not be committed "
                f"({public_reason(error)}); the staged batch is kept under "
                f"_staging/{state.run_id} for an operator"
            ),
        )

    # -- stages --------------------------------------------------------------------------------

    def _select_files(self, scope: Scope, audience: Row, run: Row, staging: Path) -> list[InputFile]:
        spec = SourceSpec.model_validate(audience["spec"]["sourceSpec"]).params
        with self._source_for(scope, SourceSpec(params=spec)) as source:
            return self._choose(source, spec, audience, run, staging)

    def _choose(self, source: Source, spec: SourceParams, audience: Row, run: Row, staging: Path) -> list[InputFile]:
        try:
            key = landing_zone_key(spec.path) if spec.resolved_cloud_type is CloudType.DLZ else source_key(spec.path)
        except ValueError as exc:
            raise RunFailed(f"sourceSpec.path: {exc}") from exc
        try:
            if spec.type == "file":
                found = [source.stat(key)]
            else:
                found = [f for f in source.list(key) if f.path.lower().endswith(CSV_SUFFIXES)]
        except SourceNotFound as exc:
            raise RunFailed(f"{exc.detail} (sourceSpec.path {spec.path!r})") from exc
        start, end = run["filter_start"], run["filter_end"]
        # Whole seconds: the window is in epoch seconds, and a file written this second is in it.
        chosen = sorted((f for f in found if start <= int(f.modified) <= end), key=lambda f: (f.modified, f.path))
        if not chosen:
            raise RunFailed(
                f"no file under {spec.path!r} in the {source.describe()} was modified between "
                f"dataFilterStartTime {start} and dataFilterEndTime {end} "
                f"({len(found)} file(s) found outside that window)"
            )
        fields = [AudienceField.model_validate(f) for f in audience["spec"]["fields"]]
        if source.supports_local_path:
            local = [source.local_path(info.path) for info in chosen]
        else:
            fetch = Fetcher(self._progress_writer(run["id"]), sum(f.size for f in chosen))
            local = [fetch(source, info, staging / "input", n) for n, info in enumerate(chosen)]
        return [self._input(info, fields, path) for info, path in zip(chosen, local, strict=True)]

    @staticmethod
    def _input(info: FileInfo, fields: list[AudienceField], local: Path) -> InputFile:
        header = read_header(local, info.path)
        positions: dict[str, int] = {}
        for i, name in enumerate(header):
            key = name.strip().lower()
            if key in positions:
                raise RunFailed(f"{info.path}: the header names the column {name.strip()!r} more than once")
            positions[key] = i
        missing = [f.name for f in fields if f.name.lower() not in positions]
        if missing:
            raise RunFailed(
                f"{info.path}: the header lacks the column(s) {', '.join(missing)} declared in fields "
                f"(header: {', '.join(h.strip() for h in header)})"
            )
        columns = [
            q.Column(f.name, f.type, f.namespace.rule if f.namespace else None, positions[f.name.lower()])
            for f in fields
        ]
        return InputFile(info, local, header, columns)

    def _dataset_stage(
        self,
        session: EngineSession,
        audience: Row,
        run: Row,
        files: list[InputFile],
        staging: Path,
        metrics: RunMetrics,
    ) -> list[Path]:
        validated = []
        for n, f in enumerate(files):
            out = staging / "validated" / f"{n:05d}.parquet"
            session.copy(q.validated_select(f.local, len(f.header), f.columns, n), out)
            validated.append(out)
        total, failed = session.query(q.counts_select(validated))[0]
        unclosed = session.query(q.unclosed_quote_select(len(files)))
        if unclosed:
            file_index, line = unclosed[0]
            raise RunFailed(
                f"{files[int(file_index)].info.path}: line {line} opens a quoted value that is never closed, "
                "so the lines after it cannot be told apart from that value; close the quote (a quote inside "
                'a quoted value is written "") and upload the file again. Nothing was committed.'
            )
        malformed = session.query(q.malformed_count_select(len(files)))[0][0] or 0
        metrics.recordsRead = int(total) + int(malformed)
        metrics.recordsFailed = int(failed) + int(malformed)
        metrics.recordsIngested = metrics.recordsRead - metrics.recordsFailed
        if metrics.recordsFailed:
            checks = q.checks_for(files[0].columns)
            named = [(f.info.path, v) for f, v in zip(files, validated, strict=True)]
            errors = staging / "errors.csv"
            session.copy(q.errors_select(named, checks, [f.header for f in files]), errors, fmt="csv")
            self._lake.publish(errors, self._lake.errors_file(_scope(run), run["id"]))
        threshold = float(run["options"].get("errorThresholdPercent", 5.0))
        if metrics.recordsRead and metrics.recordsFailed * 100.0 > threshold * metrics.recordsRead:
            share = 100.0 * metrics.recordsFailed / metrics.recordsRead
            raise RunFailed(
                f"{metrics.recordsFailed} of {metrics.recordsRead} records ({share:.2f}%) were rejected, more than "
                f"errorThresholdPercent {threshold:g}; nothing was committed. Download the reasons from "
                f"/data/core/ais/external-audience/{audience['id']}/runs/{run['id']}/errors"
            )
        names = [f["name"] for f in audience["spec"]["fields"]]
        session.copy(q.batch_select(validated, names), staging / "batch" / "part-00000.parquet")
        return validated

    @staticmethod
    def _audience_rows(audience: Row, run: Row, validated: list[Path]) -> AudienceRows:
        fields = [AudienceField.model_validate(f) for f in audience["spec"]["fields"]]
        delete = next(((f.name, f.type) for f in fields if f.name.lower() == DELETE_FIELD), None)
        return AudienceRows(
            run_id=run["id"],
            audience_id=audience["id"],
            namespace=audience["spec"]["namespace"],
            ttl_days=int(audience["spec"]["ttlInDays"]),
            files=validated,
            identities=[IdentityColumn(f.name, f.identityNs) for f in fields if f.identityNs],
            payload=[(f.name, f.type) for f in fields if not f.identityNs and f.name.lower() != DELETE_FIELD],
            delete_column=delete,
            replace=bool(run["replace_members"]),
            qualified_at=now(),
        )

    # -- bookkeeping ---------------------------------------------------------------------------

    def _load(self, scope: Scope, run_id: str) -> RunState | None:
        """The run as a job works on it; None when there is nothing left to do (gone, or already finished)."""
        with self._store.tx() as conn:
            run = get_row(conn, t.runs, scope, id=run_id)
            audience = get_row(conn, t.audiences, scope, id=run["audience_id"]) if run else None
        if run is None or audience is None or Status(run["status"]).finished:
            return None
        return RunState(
            scope=scope,
            run=run,
            audience=audience,
            stages=[StageState.from_dict(s) for s in run["stages"]],
            metrics=RunMetrics.from_dict(run["metrics"]),
        )

    def _transition(self, state: RunState, stage: Stage) -> None:
        """``stage`` starts; the stage before it, if still processing, has succeeded."""
        stamp = now()
        for s in state.stages:
            if s.status is Status.PROCESSING and s.stage is not stage:
                s.advance(Status.SUCCESS)
                s.finishedAt = stamp
            if s.stage is stage and s.status is Status.QUEUED:
                s.advance(Status.PROCESSING)
                s.startedAt = stamp
        with self._store.tx() as conn:
            update_row(
                conn,
                t.runs,
                state.run_id,
                {
                    "status": Status.PROCESSING.value,
                    "stages": [s.to_dict() for s in state.stages],
                    "metrics": state.metrics.to_dict(),
                    "progress": {"stage": stage.value, "percent": 0.0},
                    "updated_at": stamp,
                },
            )

    def _progress_writer(self, run_id: str) -> Progress:
        """Records, at most once a second, how far the current step is (the engine's statement, a fetch)."""
        last = [0.0]
        lock = threading.Lock()

        def report(percent: float, **extra: Any) -> None:
            with lock:
                if time.monotonic() - last[0] < PROGRESS_EVERY_S:
                    return
                last[0] = time.monotonic()
            progress = {"stage": Stage.DATASET_INGEST.value, "percent": round(percent, 1), **extra}
            with self._store.tx() as conn:
                update_row(conn, t.runs, run_id, {"progress": progress})

        return report

    def _commit(self, state: RunState, profile_result: dict[str, int]) -> None:
        """Publishes the staged batch and records batch and run as one metadata transaction; idempotent."""
        scope, run, run_id = state.scope, state.run, state.run_id
        dataset_id = state.audience["dataset_id"]
        batch_id = run["batch_id"] or str(uuid.uuid5(uuid.NAMESPACE_URL, f"audiencehub:batch:{run_id}"))
        final = self._lake.batch(scope, dataset_id, batch_id)
        self._lake.publish(self._lake.staging(scope, run_id) / "batch", final)
        size = sum(p.stat().st_size for p in final.glob("*.parquet"))
        metrics = replace(state.metrics, **profile_result)
        stamp = now()
        # Copies: the run's stages change only if this transaction commits (a failed attempt must leave
        # them as they were, for the next attempt or for _fail).
        stages = [replace(s) for s in state.stages]
        for s in stages:
            if s.status is Status.QUEUED:
                s.advance(Status.PROCESSING)
            if s.status is Status.PROCESSING:
                s.advance(Status.SUCCESS)
                s.finishedAt = stamp
        counts = self._profiles.counts(scope, state.audience["id"])  # the audience's size after this run
        with self._store.tx() as conn:
            # The run's row lock makes a repeated commit (a roll-forward beside a slow first one) see the first.
            current = get_row(conn, t.runs, scope, for_update=True, id=run_id)
            if current is None or current["status"] != Status.SUCCESS.value:
                evaluations.record(
                    conn,
                    scope,
                    state.audience["id"],
                    run_id,
                    SegmentCounts(realized=counts.get("realized", 0), exited=counts.get("exited", 0)),
                )
            if get_row(conn, t.batches, scope, id=batch_id) is None:
                insert_row(
                    conn,
                    t.batches,
                    {
                        "id": batch_id,
                        "org_id": scope.org_id,
                        "sandbox": scope.sandbox,
                        "dataset_id": dataset_id,
                        "status": "success",
                        "run_id": run_id,
                        "record_count": metrics.recordsIngested,
                        "size_bytes": size,
                        "created_at": run["created_at"],
                        "completed_at": stamp,
                    },
                )
            update_row(
                conn,
                t.runs,
                run_id,
                {
                    "status": Status.SUCCESS.value,
                    "stages": [s.to_dict() for s in stages],
                    "metrics": metrics.to_dict(),
                    "progress": None,
                    "batch_id": batch_id,
                    "updated_at": stamp,
                    "finished_at": stamp,
                },
            )
        state.stages, state.metrics = stages, metrics

    def _fail(self, state: RunState, exc: BaseException) -> None:
        if isinstance(exc, RunFailed):
            message = str(exc)
        elif isinstance(exc, AudiencehubError):
            message = exc.detail
        else:
            log.exception("run %s failed", state.run_id)
            message = f"internal error ({public_reason(exc)}); the server log has the details"
        stamp = now()
        for s in state.stages:
            if s.status is Status.PROCESSING:
                s.advance(Status.FAILED)
                s.error = message
                s.finishedAt = stamp
            elif s.status is Status.QUEUED:
                s.advance(Status.SKIPPED)
        with self._store.tx() as conn:
            update_row(
                conn,
                t.runs,
                state.run_id,
                {
                    "status": Status.FAILED.value,
                    "stages": [s.to_dict() for s in state.stages],
                    "metrics": state.metrics.to_dict(),
                    "progress": None,
                    "error": message,
                    "updated_at": stamp,
                    "finished_at": stamp,
                },
            )


def public_reason(exc: BaseException) -> str:
    """What a user may read of an unexpected error: its kind, and an OS error's reason without paths.

    Exception texts can carry server paths or SQL; the log keeps them whole.
    """
    if isinstance(exc, OSError) and exc.strerror:
        return f"{type(exc).__name__}: {exc.strerror}"
    return type(exc).__name__


def _scope(row: Row) -> Scope:
    return Scope(row["org_id"], row["sandbox"])


MAX_HEADER_BYTES = 1 << 20
FETCH_CHUNK = 8 << 20


class Progress(Protocol):
    def __call__(self, percent: float, **extra: Any) -> None: ...


class Fetcher:
    """Copies files from a remote source into the run's staging area, in chunks, reporting bytes done.

    The engine then reads local files: in parallel, more than once (header, rows, errors), and from
    one snapshot even if the remote file changes meanwhile. Memory stays at one chunk; the
    source's stream resumes at the byte it reached when a connection fails.
    """

    def __init__(self, report: Progress, total: int) -> None:
        self._report = report
        self._total = max(total, 1)
        self._done = 0

    def __call__(self, source: Source, info: FileInfo, folder: Path, n: int) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        name = info.path.rsplit("/", 1)[-1]
        target = folder / f"{n:05d}{_suffix(name)}"
        with source.open(info.path, version=info.version) as stream, target.open("wb") as out:
            while chunk := stream.read(FETCH_CHUNK):
                out.write(chunk)
                self._done += len(chunk)
                self._report(
                    100.0 * self._done / self._total, step="fetch", bytesFetched=self._done, bytesTotal=self._total
                )
        size = target.stat().st_size
        if size != info.size:
            raise RunFailed(
                f"{source.describe()}: {info.path}: read {size} bytes where the listing said {info.size}; "
                "the file changed while it was being read, start a new run"
            )
        return target


def _suffix(name: str) -> str:
    low = name.lower()
    return next((s for s in sorted(CSV_SUFFIXES, key=len, reverse=True) if low.endswith(s)), ".csv")


def read_header(local: Path, path: str) -> list[str]:
    """The first record of the CSV file at ``local`` (UTF-8, BOM or not, gzip when ``path`` ends in .gz).

    Only the header's own bytes are decoded: a bad byte in a data row is that row's problem (it is
    rejected with its line number), not a reason to refuse the file. ``path`` names it in messages.
    """
    with local.open("rb") as raw:
        stream: Any = gzip.open(raw) if path.lower().endswith(".gz") else raw  # noqa: SIM115 (closed with raw)
        try:
            data = b""
            # A header may quote a line break: read lines until its quotes balance.
            while True:
                line = stream.readline(MAX_HEADER_BYTES + 1 - len(data))
                data += line
                if len(data) > MAX_HEADER_BYTES:
                    raise RunFailed(f"{path}: the header row is longer than {MAX_HEADER_BYTES} bytes")
                if not line or data.count(b'"') % 2 == 0:
                    break
            text = data.decode("utf-8-sig")
            header = next(csv.reader(io.StringIO(text, newline="")), None)
        except (UnicodeDecodeError, gzip.BadGzipFile, EOFError, csv.Error, zlib.error) as exc:
            raise RunFailed(f"{path}: the header row cannot be read ({exc})") from exc
    if not header or not any(h.strip() for h in header):
        raise RunFailed(f"{path}: the file is empty; the first row must name the columns")
    return header
