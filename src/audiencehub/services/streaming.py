"""Streaming ingestion: HTTP API inlets take XDM messages; a dataset's records become batches every few seconds.

A message's envelope is checked when it arrives (its org, its dataset, the schema it names) and its
record is appended to a write-ahead log of its dataset, fsync'd before the answer: a record answered
200 survives kill -9 and power loss. Appends that arrive together share one fsync (group commit).

    lake/{org}/{sandbox}/_streaming/{datasetId}/{openedNs}.{owner}_{logId}.log.open        being appended
    lake/{org}/{sandbox}/_streaming/{datasetId}/{openedNs}.{owner}_{logId}.log             sealed
    lake/{org}/{sandbox}/_streaming/{datasetId}/{openedNs}.{owner}_{logId}.{lane}.jsonl    split: one batch each

``owner`` names the process that owns the files (16 hex digits derived from its id in the ``workers``
registry); a process seals, splits and commits only its own. Files whose owner is dead are adopted
(``streaming_owners``: renamed to the adopter's owner, under an ``flock`` on the sandbox's
``_streaming/.adopt.lock``, so that two adopters never share a file) and then handled as the adopter's own.
A server that holds the home's lock is alone: every other owner is dead, and it adopts everything at its start.
API replicas (no home lock) take an owner for dead when it is not registered or its heartbeat is stale, at start
and every few seconds after.
A batch id derives from the part's name without its owner, so an adopted part is the same batch.

A flusher thread seals a log ``flush_seconds`` after its first record (or at ``flush_records``
records), validates its records against the dataset's schema in one engine call, and splits it: valid
records go to the ``records`` part, the others to the ``rejected`` part (fsync'd, then the log is
removed). Each part is handed to the batch ingestion service as the batch whose id is derived from the
part's name: a crash anywhere repeats the same split and the same batches, which the batch service
commits once. A log a dead process left open is sealed when adopted (a torn last line, never
acknowledged, is cut off) and everything waiting is handed over again.

Validation follows AEP. By default (asynchronous) a record is validated with its micro-batch, not on
the request: a record that breaks the schema is still answered 200 and ends in a failed batch with its
reasons (failed-batch diagnostics); the valid records of the same seconds are a batch of their own, so
one bad record never fails good ones. With ``syncValidation=true`` the record is validated before the
answer and, when invalid, answered 400 with the reasons and dropped. An engine call has a fixed cost
(tens of milliseconds) that one per request would pay for every record; one per micro-batch does not.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from audiencehub.errors import AudiencehubError, BadRequest, MissingHeader, NotFound, TransientError
from audiencehub.metadata import tables as t
from audiencehub.metadata.store import MetadataStore, Row, Scope, get_row
from audiencehub.services.auth import Principal
from audiencehub.services.connections import ConnectionService, Inlet
from audiencehub.services.home import owner_token
from audiencehub.services.streaming_owners import (
    FAILED,
    LOG,
    OPEN,
    ORPHANED,
    PART,
    TMP,
    adopt_dead,
    fsync_dir,
    owner_of,
    without_owner,
)

log = logging.getLogger(__name__)

RECORDS, REJECTED = "records", "rejected"
DATASET_ID = re.compile(r"[A-Za-z0-9_\-]{1,64}")
INLET_ID = re.compile(r"[0-9a-f]{64}")
RETRY_MAX_S = 60.0
BATCH_IDS = uuid.UUID("5c2b0f55-8a7e-4d51-9a43-3f1f2f6b8e10")
"""The uuid5 namespace of batch ids derived from part names."""
ADOPT_EVERY_S = 5.0


class InletUnavailable(TransientError):
    """The log could not be written (disk full, I/O error): AEP's 503, which clients retry with backoff."""

    code = "100970-503"
    status = 503
    title = "SERVICE_UNAVAILABLE"


class InvalidRecord(BadRequest):
    """``syncValidation=true``: the record does not fit its dataset's schema; ``reasons`` say where and why."""

    def __init__(self, detail: str, reasons: list[str], inlet_id: str, org_id: str) -> None:
        super().__init__(detail)
        self.reasons = reasons
        self.inlet_id = inlet_id
        self.org_id = org_id


class BatchWriter(Protocol):
    """What streaming needs of the batch ingestion service."""

    def ingest_file(
        self, scope: Scope, dataset_id: str, path: Path, *, batch_id: str, fmt: str = "json", source: str = "streaming"
    ) -> str: ...

    def validate(self, scope: Scope, dataset_id: str, records: list[Any]) -> list[list[str]]: ...


@dataclass
class _Parsed:
    """One message that passed the envelope checks: its record and where it goes."""

    index: int
    dataset_id: str
    schema_ref: str
    entity: dict[str, Any]
    line: bytes
    """The record as it is written to the log: one line of JSON."""


@dataclass
class _Answer:
    """The outcome of one message: accepted, or why it was refused."""

    accepted: bool = False
    error: str | None = None
    reasons: list[str] = field(default_factory=list)


def _write_durably(path: Path, data: bytes) -> None:
    """``path`` holds ``data`` on disk, or still holds what it held: written aside, fsync'd, renamed."""
    tmp = path.with_name(path.name + TMP)
    with tmp.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class _Log:
    """One write-ahead log open for appends; appends waiting for durability share one fsync."""

    def __init__(self, folder: Path, owner: str) -> None:
        self.opened = time.monotonic()
        self.sealed_path = folder / f"{time.time_ns():020d}.{owner}_{uuid.uuid4()}{LOG}"
        self.path = self.sealed_path.with_name(self.sealed_path.name + OPEN)
        folder.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC, 0o600)
        fsync_dir(folder)  # the file's name must survive a power loss as well as its bytes
        self.records = 0
        self._size = 0
        self._synced = 0
        self._sync_lock = threading.Lock()

    def write(self, data: bytes, count: int) -> int:
        """Appends ``data`` (the dataset's lock is held); returns the size that :meth:`sync` must reach."""
        done = 0
        try:
            while done < len(data):
                done += os.write(self._fd, data[done:])
        except OSError as exc:
            # No torn line may stay for the next append to follow.
            os.ftruncate(self._fd, self._size)
            raise InletUnavailable(f"the streaming log could not be written ({exc.strerror}); retry later") from exc
        self._size += len(data)
        self.records += count
        return self._size

    def sync(self, upto: int) -> None:
        """Returns once the first ``upto`` bytes are on disk: one fsync covers every append before it."""
        with self._sync_lock:
            if self._synced >= upto:
                return
            size = self._size  # appends that returned before this line are covered by the fsync below
            try:
                os.fsync(self._fd)
            except OSError as exc:
                raise InletUnavailable(f"the streaming log could not be synced ({exc.strerror}); retry later") from exc
            self._synced = size

    def seal(self) -> None:
        """Closes the log for good (no append starts after: the dataset let go of it) and renames it sealed."""
        with self._sync_lock:
            os.fsync(self._fd)
            self._synced = self._size
            os.close(self._fd)
        try:
            os.replace(self.path, self.sealed_path)
        except FileNotFoundError:
            # A peer took this process for dead (its heartbeats were late) and adopted the log.
            log.error("streaming: log %s was adopted by a peer that took this process for dead", self.path.name)
            return
        fsync_dir(self.path.parent)


@dataclass
class _Dataset:
    """A dataset's streaming state: its open log, and a lock each for appending and for committing."""

    folder: Path
    lock: threading.Lock = field(default_factory=threading.Lock)
    current: _Log | None = None
    committing: threading.Lock = field(default_factory=threading.Lock)


def batch_id_of(part: Path) -> str:
    """The batch a part becomes, derived from its name without its owner: a part handed over again (or adopted
    by another process) is the same batch."""
    return str(uuid.uuid5(BATCH_IDS, without_owner(part.name)))


def _line(entity: dict[str, Any]) -> bytes:
    return json.dumps(entity, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode() + b"\n"


class StreamingService:
    def __init__(
        self,
        lake_root: Path,
        store: MetadataStore,
        connections: ConnectionService,
        batches: BatchWriter,
        *,
        flush_seconds: float,
        flush_records: int,
        owner_id: str | None = None,
        live_owners: Callable[[], Iterable[str]] | None = None,
        adopt_every_s: float = ADOPT_EVERY_S,
    ) -> None:
        """``owner_id``: this process's registry id (its files are named after it); ``live_owners``: the registry
        ids of the processes alive now, for API replicas that share the home; None when this process holds the
        home's lock, so that every other owner is dead (adopted at start only)."""
        self._owner = owner_token(owner_id or str(uuid.uuid4()))
        self._live_owners = live_owners
        self._adopt_every_s = adopt_every_s
        self._root = lake_root
        self._store = store
        self._connections = connections
        self._batches = batches
        self._flush_seconds = flush_seconds
        self._flush_records = flush_records
        self._datasets: dict[tuple[Scope, str], _Dataset] = {}
        self._lock = threading.Lock()
        self._pending: set[tuple[Scope, str]] = set()
        self._retry_at: dict[tuple[Scope, str], tuple[float, float]] = {}
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._node = int(self._owner, 16) % 10000  # replicas on several hosts may share a pid, not an owner
        self._counter = itertools.count(1)

    # -- inlets and messages -----------------------------------------------------------------

    def inlet(self, inlet_id: str) -> Inlet:
        found = self._connections.inlet(inlet_id) if INLET_ID.fullmatch(inlet_id) else None
        if found is None:
            raise NotFound(f"no streaming connection has the inlet id {inlet_id!r}")
        return found

    @staticmethod
    def authorize(inlet: Inlet, caller: Principal | None) -> None:
        """An inlet with ``authenticationRequired`` takes data only from its own org and sandbox's clients."""
        if not inlet.authentication_required:
            return
        if caller is None:
            raise MissingHeader(f"inlet {inlet.inlet_id} requires authentication: send the four AEP headers")
        if caller.scope != inlet.scope:
            raise NotFound(f"no streaming connection has the inlet id {inlet.inlet_id!r} in this sandbox")

    def collect(self, inlet: Inlet, message: Any, *, sync: bool) -> dict[str, Any]:
        """One message (``POST /collection/{inletId}``): its record is on disk when this returns."""
        received = _millis()
        [answer] = self._accept(inlet, [message], where="", sync=sync)
        if answer.error is not None:
            if answer.reasons:
                raise InvalidRecord(answer.error, answer.reasons, inlet.inlet_id, inlet.scope.org_id)
            raise BadRequest(answer.error)
        return {
            "inletId": inlet.inlet_id,
            "xactionId": self._xaction(received),
            "receivedTimeMs": received,
            "syncValidation": {"status": "pass"} if sync else {"skipped": True},
        }

    def collect_batch(self, inlet: Inlet, body: Any) -> dict[str, Any]:
        """Several messages (``POST /collection/batch/{inletId}``): an answer per message, in their order."""
        received = _millis()
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            raise BadRequest('body: must be an object with "messages", an array of messages')
        if not body["messages"]:
            raise BadRequest("messages: at least one message is required")
        batch_id = self._xaction(received)
        responses: list[dict[str, Any]] = []
        # NOTE: AEP offers syncValidation on the single-message endpoint only.
        for i, answer in enumerate(self._accept(inlet, body["messages"], where="messages[{}].", sync=False)):
            if answer.accepted:
                responses.append({"xactionId": f"{batch_id}:{i}"})
            else:
                prefix = f"inletId: [{inlet.inlet_id}] imsOrgId: [{inlet.scope.org_id}]"
                responses.append({"statusCode": 400, "message": f"{prefix} {answer.error}"})
        return {"inletId": inlet.inlet_id, "batchId": batch_id, "receivedTimeMs": received, "responses": responses}

    def _accept(self, inlet: Inlet, messages: list[Any], *, where: str, sync: bool) -> list[_Answer]:
        """Checks the messages and logs the records of those accepted; ``where`` prefixes a message's fields."""
        answers = [_Answer() for _ in messages]
        by_dataset: dict[str, list[_Parsed]] = {}
        for i, message in enumerate(messages):
            try:
                parsed = _parse(i, message, inlet, where.format(i))
            except BadRequest as exc:
                answers[i].error = exc.detail
                continue
            by_dataset.setdefault(parsed.dataset_id, []).append(parsed)
        for dataset_id, group in by_dataset.items():
            taken = self._check(inlet.scope, dataset_id, group, answers, where, sync=sync)
            if taken:
                self._append(inlet.scope, dataset_id, [p.line for p in taken])
                for p in taken:
                    answers[p.index].accepted = True
        return answers

    def _check(
        self, scope: Scope, dataset_id: str, group: list[_Parsed], answers: list[_Answer], where: str, *, sync: bool
    ) -> list[_Parsed]:
        """The messages of one dataset that may be logged; the others' answers say why not."""
        dataset = self._dataset(scope, dataset_id)
        if dataset is None:
            for p in group:
                field_name = f"{where.format(p.index)}header.datasetId"
                answers[p.index].error = f"{field_name}: no dataset {dataset_id!r} in the inlet's sandbox"
            return []
        refs = _schema_refs(dataset)
        fitting = []
        for p in group:
            if p.schema_ref in refs:
                fitting.append(p)
            else:
                answers[p.index].error = (
                    f"{where.format(p.index)}header.schemaRef.id: {p.schema_ref!r} is not the schema of dataset "
                    f"{dataset_id} ({dataset['schema_id']})"
                )
        if not sync or not fitting:
            return fitting
        problems = self._batches.validate(scope, dataset_id, [p.entity for p in fitting])
        valid = []
        for p, reasons in zip(fitting, problems, strict=True):
            if reasons:
                answers[p.index].error = (
                    f"{where.format(p.index)}body.xdmEntity: {len(reasons)} schema violation(s) found: "
                    + "; ".join(reasons)
                )
                answers[p.index].reasons = list(reasons)
            else:
                valid.append(p)
        return valid

    def _dataset(self, scope: Scope, dataset_id: str) -> Row | None:
        with self._store.read() as conn:
            return get_row(conn, t.datasets, scope, id=dataset_id)

    def _xaction(self, millis: int) -> str:
        # AEP's shape: receivedMs:node:sequence.
        return f"{millis}:{self._node}:{next(self._counter)}"

    # -- the write-ahead log -----------------------------------------------------------------

    def folder(self, scope: Scope, dataset_id: str) -> Path:
        return self._root / scope.org_id / scope.sandbox / "_streaming" / dataset_id

    def _state(self, scope: Scope, dataset_id: str) -> _Dataset:
        with self._lock:
            found = self._datasets.get((scope, dataset_id))
            if found is None:
                found = self._datasets[(scope, dataset_id)] = _Dataset(self.folder(scope, dataset_id))
            return found

    def _append(self, scope: Scope, dataset_id: str, lines: list[bytes]) -> None:
        data = b"".join(lines)
        state = self._state(scope, dataset_id)
        with state.lock:
            if state.current is None:
                state.current = _Log(state.folder, self._owner)
                self._wake.set()  # a new deadline for the flusher
            wal = state.current
            upto = wal.write(data, len(lines))
            if wal.records >= self._flush_records:
                self._wake.set()
        wal.sync(upto)

    def _seal(self, scope: Scope, dataset_id: str) -> None:
        state = self._state(scope, dataset_id)
        with state.lock:
            wal, state.current = state.current, None
        if wal is not None:
            wal.seal()
            with self._lock:
                self._pending.add((scope, dataset_id))

    def _seal_due(self) -> float:
        """Seals the logs whose time or size has come; returns the seconds until the next one is due."""
        now = time.monotonic()
        wait = self._flush_seconds
        with self._lock:
            states = list(self._datasets.items())
        for (scope, dataset_id), state in states:
            wal = state.current
            if wal is None:
                continue
            due = wal.opened + self._flush_seconds
            if due <= now or wal.records >= self._flush_records:
                self._seal(scope, dataset_id)
            else:
                wait = min(wait, due - now)
        return wait

    # -- batches -----------------------------------------------------------------------------

    def _commit(self, scope: Scope, dataset_id: str) -> dict[str, str]:
        """Splits the dataset's sealed logs and hands their parts to the batch service, oldest first.

        Stops at the first failure, so that a dataset's batches keep the order of their records.
        """
        state = self._state(scope, dataset_id)
        results: dict[str, str] = {}
        with state.committing:
            names = [p.name for p in state.folder.glob("*")] if state.folder.exists() else []
            stems = sorted(
                {".".join(n.split(".")[:2]) for n in names if n.endswith((LOG, PART)) and owner_of(n) == self._owner}
            )
            for stem in stems:
                sealed = state.folder / (stem + LOG)
                try:
                    if sealed.exists():
                        self._split(scope, dataset_id, sealed)
                    for lane in (RECORDS, REJECTED):
                        part = state.folder / f"{stem}.{lane}{PART}"
                        if part.exists():
                            results[batch_id_of(part)] = self._ingest(scope, dataset_id, part)
                except NotFound as exc:
                    # The dataset is gone: nothing can take these records; an operator can.
                    for left in state.folder.glob(stem + ".*"):
                        if not left.name.endswith(ORPHANED):
                            left.rename(left.with_name(left.name + ORPHANED))
                    log.error("streaming: records of %s/%s/%s kept aside: %s", *_where(scope), dataset_id, exc.detail)
        return results

    def _split(self, scope: Scope, dataset_id: str, sealed: Path) -> None:
        """The sealed log's records, validated in one call, written as its parts; then the log is removed."""
        lines = sealed.read_bytes().splitlines()
        problems = self._batches.validate(scope, dataset_id, [json.loads(line) for line in lines]) if lines else []
        parts: dict[str, list[bytes]] = {RECORDS: [], REJECTED: []}
        for line, reasons in zip(lines, problems, strict=True):
            parts[REJECTED if reasons else RECORDS].append(line)
        stem = sealed.name.removesuffix(LOG)
        for lane, chosen in parts.items():
            if chosen:
                _write_durably(sealed.with_name(f"{stem}.{lane}{PART}"), b"\n".join(chosen) + b"\n")
        fsync_dir(sealed.parent)
        sealed.unlink()
        fsync_dir(sealed.parent)

    def _ingest(self, scope: Scope, dataset_id: str, part: Path) -> str:
        batch_id = batch_id_of(part)
        status = self._batches.ingest_file(scope, dataset_id, part, batch_id=batch_id, fmt="json", source="streaming")
        if status == "failed" and part.name.endswith(f".{RECORDS}{PART}"):
            # Records that passed validation at the split, in a failed batch: kept for an operator.
            kept = part.rename(part.with_name(part.name + FAILED))
            log.warning("streaming batch %s of %s failed; its records are kept in %s", batch_id, dataset_id, kept)
        else:
            part.unlink()
            log.info("streaming batch %s of dataset %s: %s", batch_id, dataset_id, status)
        return status

    def flush(self, scope: Scope, dataset_id: str) -> dict[str, str]:
        """Seals the dataset's open log now and commits everything waiting; answers each batch's status by id."""
        self._seal(scope, dataset_id)
        with self._lock:
            self._pending.discard((scope, dataset_id))
        return self._commit(scope, dataset_id)

    def _commit_pending(self) -> None:
        now = time.monotonic()
        with self._lock:
            due = sorted(
                (k for k in self._pending if self._retry_at.get(k, (0.0, 0.0))[0] <= now),
                key=lambda k: (k[0].org_id, k[0].sandbox, k[1]),
            )
            # Taken off before the commit: a log sealed meanwhile puts its dataset back.
            self._pending.difference_update(due)
        for key in due:
            try:
                self._commit(*key)
            except Exception as exc:
                delay = min(max(self._retry_at.get(key, (0.0, 0.0))[1] * 2, 0.5), RETRY_MAX_S)
                self._retry_at[key] = (time.monotonic() + delay, delay)
                with self._lock:
                    self._pending.add(key)
                detail = exc.detail if isinstance(exc, AudiencehubError) else repr(exc)
                log.warning("streaming batches of %s/%s/%s wait %.1fs: %s", *_where(key[0]), key[1], delay, detail)
                continue
            self._retry_at.pop(key, None)

    # -- lifecycle ---------------------------------------------------------------------------

    def recover(self) -> int:
        """Adopts the files of dead processes (their open logs sealed) and queues what waits; answers how many
        files were adopted."""
        adopted, folders = adopt_dead(self._root, self._owner, self._live_owners)
        for folder in folders:
            if any(p.name.endswith((LOG, PART)) and owner_of(p.name) == self._owner for p in folder.iterdir()):
                with self._lock:
                    self._pending.add((Scope(folder.parts[-4], folder.parts[-3]), folder.name))
        if adopted:
            log.info("streaming: %d file(s) left by stopped processes will be committed", adopted)
        return adopted

    def start(self) -> None:
        self.recover()
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="streaming-flusher", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        adopt_at = time.monotonic() + self._adopt_every_s
        while not self._stopping.is_set():
            try:
                if self._live_owners is not None and time.monotonic() >= adopt_at:
                    adopt_at = time.monotonic() + self._adopt_every_s
                    self.recover()  # what replicas that stopped since left behind
                wait = self._seal_due()
                self._commit_pending()
            except Exception:
                log.exception("streaming flusher")
                wait = self._flush_seconds
            if self._pending:
                wait = min(wait, 1.0)  # retries, and work a failure left behind
            if self._live_owners is not None:
                wait = min(wait, max(0.0, adopt_at - time.monotonic()))
            self._wake.wait(wait)
            self._wake.clear()

    def stop(self, timeout: float = 30.0) -> None:
        """Stops the flusher, then seals and commits what waits; what cannot be done waits for the next start."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        with self._lock:
            keys = list(self._datasets)
        for scope, dataset_id in keys:
            try:
                self._seal(scope, dataset_id)
            except OSError:
                log.exception("streaming: the log of %s is sealed at the next start instead", dataset_id)
        with self._lock:
            pending = list(self._pending)
        for key in pending:
            try:
                self._commit(*key)
            except Exception:
                log.exception("streaming: the batches of %s wait for the next start", key[1])


def _where(scope: Scope) -> tuple[str, str]:
    return scope.org_id, scope.sandbox


def _schema_refs(dataset: Row) -> set[str]:
    """What a message may call the dataset's schema: its ``$id``, or the reference the dataset was created with."""
    refs = {dataset["schema_id"]}
    ref = ((dataset.get("props") or {}).get("schemaRef") or {}).get("id")
    if isinstance(ref, str):
        refs.add(ref)
    return refs


def _parse(index: int, message: Any, inlet: Inlet, where: str) -> _Parsed:
    """The envelope's checks (AEP's DCCS checks): header, org, dataset, schema reference, body."""
    if not isinstance(message, dict):
        raise BadRequest(f"{where.rstrip('.') or 'body'}: a message must be an object with header and body")
    header, body = message.get("header"), message.get("body")
    if not isinstance(header, dict):
        raise BadRequest(f"{where}header: required, an object with schemaRef and datasetId")
    if not isinstance(body, dict):
        raise BadRequest(f"{where}body: required, an object with xdmMeta and xdmEntity")
    org = header.get("imsOrgId")
    # NOTE: AEP fills in a missing imsOrgId from the inlet; a wrong one is refused.
    if org is not None and org != inlet.scope.org_id:
        raise BadRequest(f"{where}header.imsOrgId: {org!r} is not the org of this inlet ({inlet.scope.org_id})")
    dataset_id = header.get("datasetId")
    if not isinstance(dataset_id, str) or not dataset_id.strip():
        raise BadRequest(f"{where}header.datasetId: required, the id of the dataset to write to; got {dataset_id!r}")
    if not DATASET_ID.fullmatch(dataset_id.strip()):
        raise BadRequest(f"{where}header.datasetId: {dataset_id!r} is not a dataset id")
    schema_ref = _schema_ref(header, f"{where}header.schemaRef")
    meta = body.get("xdmMeta")
    if not isinstance(meta, dict):
        raise BadRequest(f"{where}body.xdmMeta: required, an object with the schemaRef of the header")
    meta_ref = _schema_ref(meta, f"{where}body.xdmMeta.schemaRef")
    if meta_ref != schema_ref:
        raise BadRequest(
            f"{where}body.xdmMeta.schemaRef.id: {meta_ref!r} differs from header.schemaRef.id ({schema_ref!r})"
        )
    entity = body.get("xdmEntity")
    if not isinstance(entity, dict):
        raise BadRequest(f"{where}body.xdmEntity: required, the record as an object; got {type(entity).__name__}")
    try:
        line = _line(entity)
    except ValueError as exc:
        raise BadRequest(f"{where}body.xdmEntity: NaN and Infinity are not JSON values") from exc
    return _Parsed(index, dataset_id.strip(), schema_ref, entity, line)


def _schema_ref(holder: dict[str, Any], where: str) -> str:
    ref = holder.get("schemaRef")
    if not isinstance(ref, dict) or not isinstance(ref.get("id"), str) or not ref["id"].strip():
        raise BadRequest(f"{where}.id: required, the $id of the dataset's schema")
    return str(ref["id"]).strip()


def _millis() -> int:
    return int(time.time() * 1000)
