"""The job worker pool: threads that claim jobs from the job table, in the server or in ``audiencehub worker``.

Several pools (the server's and any number of worker processes) may share one metadata store. Each registers
itself in the ``workers`` table and heartbeats its row and its running jobs. A job is orphaned when its heartbeat
or its worker's is older than ``stale_after_s``, when its worker is not registered, or, for a pool that holds the
home's lock (the server), when its worker was an earlier holder of that lock on this host: the kernel dropped the
lock when that process ended, so its jobs are recovered at once on a restart, not after ``stale_after_s``.

An orphaned job is first taken over by one pool (a conditional UPDATE: two pools never recover the same job),
then re-queued when its handler is retryable and attempts are left, else handed to its handler's ``recover``
(roll forward or mark the resource FAILED) and failed with the reason "the worker running this job stopped".
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Connection

from audiencehub.errors import TransientError
from audiencehub.metadata import jobs
from audiencehub.metadata.store import MetadataStore, Row, Scope

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 3
STOPPED = "the worker running this job stopped"


@dataclass(frozen=True)
class Handler:
    execute: Callable[[str, Scope], None]
    """Does the work for the job's ``ref_id``; records its own outcome on the resource."""
    recover: Callable[[str, Scope], None]
    """The job's worker died: roll forward or mark the resource FAILED."""
    retryable: bool = False
    """Idempotent jobs are re-queued after a crash or a transient error instead of recovered."""


def worker_name() -> str:
    """``host:pid:random``: what the logs and the ``workers`` table call this pool (at most 52 characters)."""
    return f"{socket.gethostname()[:32]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class JobRunner:
    def __init__(
        self,
        store: MetadataStore,
        handlers: dict[str, Handler],
        *,
        workers: int,
        heartbeat_s: float,
        stale_after_s: float,
        poll_s: float = 1.0,
        home: Path | None = None,
        hold: Callable[[str, str], None] | None = None,
        announce: bool = False,
    ) -> None:
        """``workers`` threads (0: this process runs no jobs); ``poll_s``: how often an idle thread looks at the
        job table for jobs that other processes enqueued; ``home``: the home whose lock this process holds;
        ``hold``: test fault injection, called with (job id, ``job.{kind}.claimed`` or ``job.{kind}.executed``);
        ``announce``: register and heartbeat even with no job threads (an API replica, so that its peers know it
        lives and leave its streaming logs and uploads alone)."""
        self._announce = announce
        self._hold = hold or (lambda job_id, checkpoint: None)
        self._store = store
        self._handlers = handlers
        self._workers = workers
        self._heartbeat_s = heartbeat_s
        self._stale_after_s = stale_after_s
        self._poll_s = poll_s
        self._home = str(home.resolve()) if home is not None else None
        self._host = socket.gethostname()[:255]
        self.worker_id = worker_name()
        self._wake = threading.Condition()
        self._wakes = 0  # counts wake() calls, so a worker never sleeps through one that came while it looked
        self._stopping = threading.Event()  # no more claims
        self._stopped = threading.Event()  # the heartbeat ends too
        self._running: set[str] = set()
        self._running_lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._keeper: threading.Thread | None = None
        self._started = False

    def running(self) -> list[str]:
        """The ids of the jobs this pool runs now."""
        with self._running_lock:
            return sorted(self._running)

    def live(self) -> frozenset[str]:
        """The registry ids of the processes alive now: registered, with a heartbeat fresher than ``stale_after_s``."""
        stale_before = time.time() - self._stale_after_s
        with self._store.read() as conn:
            found = jobs.workers(conn)
        return frozenset(w["id"] for w in found if (w["heartbeat_at"] or 0) >= stale_before)

    def start(self) -> None:
        if self._started:
            return
        if self._workers == 0:
            log.info("no job threads in this process: jobs wait for `audiencehub worker` processes")
            if self._announce:
                self._started = True
                with self._store.tx() as conn:
                    self._register(conn)
                log.info("process %s registered (no job threads)", self.worker_id)
                self._keeper = threading.Thread(target=self._keep_alive, name="job-heartbeat", daemon=True)
                self._keeper.start()
            return
        self._started = True
        with self._store.tx() as conn:
            self._register(conn)
        log.info("job worker %s started with %d threads", self.worker_id, self._workers)
        self._sweep()
        for n in range(self._workers):
            thread = threading.Thread(target=self._work, name=f"job-worker-{n}", daemon=True)
            thread.start()
            self._threads.append(thread)
        self._keeper = threading.Thread(target=self._keep_alive, name="job-heartbeat", daemon=True)
        self._keeper.start()
        # Apart from the heartbeat: a handler's recover() may take long, and heartbeats must not wait for it.
        sweeper = threading.Thread(target=self._sweep_loop, name="job-sweeper", daemon=True)
        sweeper.start()
        self._threads.append(sweeper)

    def _register(self, conn: Connection) -> None:
        jobs.register(conn, self.worker_id, host=self._host, pid=os.getpid(), home=self._home, threads=self._workers)

    def wake(self) -> None:
        with self._wake:
            self._wakes += 1
            self._wake.notify_all()

    def stop(self, timeout: float = 10.0) -> list[str]:
        """Stops claiming, waits up to ``timeout`` s for running jobs to end; returns the ids still running.

        Those keep their RUNNING row: once the process is gone, their heartbeat goes stale and a peer (or this
        server's next start) recovers them. Heartbeats go on while the jobs finish.
        """
        if self._stopped.is_set():
            return self.running()  # stopped before: what was left then is recovery's now
        self._stopping.set()
        self.wake()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        self._stopped.set()
        if self._keeper is not None:
            self._keeper.join(5.0)
        left = self.running()
        if not self._started:
            return left
        self._started = False
        if left:
            log.warning("job worker %s stopped with jobs still running, left to recovery: %s", self.worker_id, left)
            return left
        try:
            with self._store.tx() as conn:
                jobs.unregister(conn, self.worker_id)
        except Exception:  # its row goes stale and is pruned by a peer
            log.exception("unregistering job worker %s failed", self.worker_id)
        log.info("job worker %s stopped", self.worker_id)
        return left

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
                self._stopping.wait(self._poll_s)
                continue
            if job is None:
                with self._wake:
                    if self._wakes == seen and not self._stopping.is_set():
                        self._wake.wait(self._poll_s)  # another process's jobs are seen on the next poll
                continue
            try:
                self._run(job)
            finally:
                self._forget(job["id"])

    def _run(self, job: Row) -> None:
        started = time.monotonic()
        log.info(
            "job %s (%s %s) claimed by %s, attempt %d",
            job["id"],
            job["kind"],
            job["ref_id"],
            self.worker_id,
            job["attempts"],
        )
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
            self._hold(job["id"], f"job.{job['kind']}.claimed")
            handler.execute(job["ref_id"], scope)
            self._hold(job["id"], f"job.{job['kind']}.executed")
        except TransientError as exc:
            if handler.retryable and job["attempts"] < MAX_ATTEMPTS:
                log.warning("job %s (%s) hit a transient error, retrying: %s", job["id"], job["kind"], exc.detail)
                self._stopped.wait(min(2 ** job["attempts"], 30))
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
        log.info("job %s (%s) ended %s in %.2fs", job["id"], job["kind"], status, time.monotonic() - started)

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
                    held = jobs.requeue(conn, job["id"], worker_id=self.worker_id)
                else:
                    held = jobs.finish(conn, job["id"], status, error, worker_id=self.worker_id)
            if not held:
                log.warning("job %s was taken over by another worker after its heartbeat went stale", job["id"])
        except Exception:
            # The job stays RUNNING without a heartbeat: the stale sweep recovers it.
            log.exception("recording the end of job %s failed", job["id"])

    def _forget(self, job_id: str) -> None:
        with self._running_lock:
            self._running.discard(job_id)

    def _keep_alive(self) -> None:
        while not self._stopped.wait(self._heartbeat_s):
            try:
                with self._store.tx() as conn:
                    if not jobs.beat(conn, self.worker_id, self.running()):
                        log.warning(
                            "job worker %s was taken for dead (late heartbeats): registering again", self.worker_id
                        )
                        self._register(conn)
            except Exception:  # a failed heartbeat must not kill the keeper; the next one retries
                log.exception("job heartbeat failed")

    def _sweep_loop(self) -> None:
        while not self._stopping.wait(self._heartbeat_s):
            try:
                self._sweep()
            except Exception:
                log.exception("looking for jobs whose worker stopped failed")

    def _dead(self) -> frozenset[str]:
        """Workers that held this home's lock on this host before us: they ended, or we would not hold it."""
        if self._home is None:
            return frozenset()
        with self._store.read() as conn:
            found = jobs.workers(conn)
        return frozenset(
            w["id"] for w in found if w["home"] == self._home and w["host"] == self._host and w["id"] != self.worker_id
        )

    def _sweep(self) -> None:
        stale_before = time.time() - self._stale_after_s
        dead = self._dead()
        with self._store.read() as conn:
            found = jobs.orphans(conn, stale_before=stale_before, worker_id=self.worker_id, dead=dead)
        self._recover(found)
        with self._store.tx() as conn:
            jobs.prune(conn, stale_before=stale_before, dead=dead)

    def _recover(self, orphans: list[Row]) -> None:
        for job in orphans:
            with self._store.tx() as conn:
                if not jobs.take_over(conn, job, self.worker_id):
                    continue  # a peer recovers it, or its worker is alive after all
            with self._running_lock:
                self._running.add(job["id"])  # heartbeated while its handler recovers it
            try:
                self._recover_orphan(job)
            finally:
                self._forget(job["id"])
        if orphans:
            self.wake()

    def _recover_orphan(self, job: Row) -> None:
        handler = self._handlers.get(job["kind"])
        scope = Scope(job["org_id"], job["sandbox"])
        if handler is not None and handler.retryable and job["attempts"] < MAX_ATTEMPTS:
            log.warning("re-queueing job %s (%s) whose worker %s stopped", job["id"], job["kind"], job["worker_id"])
            self._settle(job, requeue=True)
            return
        log.warning("recovering job %s (%s) whose worker %s stopped", job["id"], job["kind"], job["worker_id"])
        self._recover_one(job, handler, scope)
        self._settle(job, error=STOPPED)
