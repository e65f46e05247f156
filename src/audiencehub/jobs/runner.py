"""The embedded worker pool: threads in the server process that claim jobs from the job table.

Each job heartbeats while it runs. On start, jobs left RUNNING by a previous process are handed
to their handler's ``recover`` (roll forward or fail) or re-queued when the handler is idempotent;
a sweep does the same for jobs whose heartbeat went stale while this process runs.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from audiencehub.errors import TransientError
from audiencehub.metadata import jobs
from audiencehub.metadata.store import MetadataStore, Row, Scope

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 3
IDLE_WAIT_S = 1.0


@dataclass(frozen=True)
class Handler:
    execute: Callable[[str, Scope], None]
    """Does the work for the job's ``ref_id``; records its own outcome on the resource."""
    recover: Callable[[str, Scope], None]
    """The job's worker died: roll forward or mark the resource FAILED."""
    retryable: bool = False
    """Idempotent jobs are re-queued after a crash or a transient error instead of recovered."""


class JobRunner:
    def __init__(
        self,
        store: MetadataStore,
        handlers: dict[str, Handler],
        *,
        workers: int,
        heartbeat_s: float,
        stale_after_s: float,
    ) -> None:
        self._store = store
        self._handlers = handlers
        self._workers = workers
        self._heartbeat_s = heartbeat_s
        self._stale_after_s = stale_after_s
        self.worker_id = f"embedded-{uuid.uuid4().hex[:12]}"
        self._wake = threading.Condition()
        self._wakes = 0  # counts wake() calls, so a worker never sleeps through one that came while it looked
        self._stopping = threading.Event()
        self._running: set[str] = set()
        self._running_lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        self._recover(self._orphans(at_start=True))
        for n in range(self._workers):
            thread = threading.Thread(target=self._work, name=f"job-worker-{n}", daemon=True)
            thread.start()
            self._threads.append(thread)
        keeper = threading.Thread(target=self._keep_alive, name="job-heartbeat", daemon=True)
        keeper.start()
        self._threads.append(keeper)

    def wake(self) -> None:
        with self._wake:
            self._wakes += 1
            self._wake.notify_all()

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping.set()
        self.wake()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    # -- internals ------------------------------------------------------------------------------

    def _work(self) -> None:
        # Nothing a job or the database raises may end this loop: a dead worker strands its job.
        while not self._stopping.is_set():
            with self._wake:
                seen = self._wakes
            try:
                with self._store.tx() as conn:
                    job = jobs.claim(conn, self.worker_id)
            except Exception:
                log.exception("claiming a job failed; trying again")
                self._stopping.wait(IDLE_WAIT_S)
                continue
            if job is None:
                with self._wake:
                    if self._wakes == seen and not self._stopping.is_set():
                        self._wake.wait(IDLE_WAIT_S)
                continue
            try:
                self._run(job)
            finally:
                self._forget(job["id"])

    def _run(self, job: Row) -> None:
        handler = self._handlers.get(job["kind"])
        if handler is None:
            log.error("job %s has an unknown kind %r", job["id"], job["kind"])
            self._settle(job, error=f"no handler for job kind {job['kind']!r}")
            return
        scope = Scope(job["org_id"], job["sandbox"])
        with self._running_lock:
            self._running.add(job["id"])
        status, error = jobs.SUCCEEDED, None
        try:
            handler.execute(job["ref_id"], scope)
        except TransientError as exc:
            if handler.retryable and job["attempts"] < MAX_ATTEMPTS:
                log.warning("job %s (%s) hit a transient error, retrying: %s", job["id"], job["kind"], exc.detail)
                time.sleep(min(2 ** job["attempts"], 30))
                # Forget it before it is claimable again, or the heartbeat of its next run would be dropped.
                self._forget(job["id"])
                self._settle(job, requeue=True)
                self.wake()
                return
            status, error = jobs.FAILED, exc.detail
            self._recover_one(job, handler, scope)
        except Exception as exc:
            log.exception("job %s (%s) failed", job["id"], job["kind"])
            status, error = jobs.FAILED, f"{type(exc).__name__}: {exc}"
            self._recover_one(job, handler, scope)
        self._settle(job, status=status, error=error)

    def _recover_one(self, job: Row, handler: Handler | None, scope: Scope) -> None:
        """Hands a failed or orphaned job to its handler; a handler that fails too is logged, not fatal."""
        if handler is None:
            return
        try:
            handler.recover(job["ref_id"], scope)
        except Exception:
            log.exception("recovering job %s (%s) failed; its resource may need attention", job["id"], job["kind"])

    def _settle(self, job: Row, *, status: str = jobs.FAILED, error: str | None = None, requeue: bool = False) -> None:
        try:
            with self._store.tx() as conn:
                if requeue:
                    jobs.requeue(conn, job["id"])
                else:
                    jobs.finish(conn, job["id"], status, error)
        except Exception:
            # The job stays RUNNING without a heartbeat: the stale sweep recovers it.
            log.exception("recording the end of job %s failed", job["id"])

    def _forget(self, job_id: str) -> None:
        with self._running_lock:
            self._running.discard(job_id)

    def _keep_alive(self) -> None:
        while not self._stopping.wait(self._heartbeat_s):
            with self._running_lock:
                running = list(self._running)
            try:
                with self._store.tx() as conn:
                    jobs.heartbeat(conn, running, self.worker_id)
                self._recover(self._orphans(at_start=False))
            except Exception:  # a failed heartbeat must not kill the keeper; the next one retries
                log.exception("job heartbeat failed")

    def _orphans(self, *, at_start: bool) -> list[Row]:
        stale_before = time.time() - self._stale_after_s
        with self._store.tx() as conn:
            found = jobs.orphans(conn, stale_before=stale_before, not_worker=self.worker_id if at_start else None)
        with self._running_lock:
            return [j for j in found if j["id"] not in self._running]

    def _recover(self, orphans: list[Row]) -> None:
        for job in orphans:
            handler = self._handlers.get(job["kind"])
            scope = Scope(job["org_id"], job["sandbox"])
            if handler is not None and handler.retryable and job["attempts"] < MAX_ATTEMPTS:
                log.warning("re-queueing job %s (%s) whose worker stopped", job["id"], job["kind"])
                self._settle(job, requeue=True)
                continue
            log.warning("recovering job %s (%s) whose worker stopped", job["id"], job["kind"])
            self._recover_one(job, handler, scope)
            self._settle(job, error="the worker running this job stopped")
        if orphans:
            self.wake()
