"""A daily schedule: calls its action once a day at a fixed UTC time while a process with job workers runs.

AEP evaluates batch segments once a day; ``AUDIENCEHUB_SEGMENT_SCHEDULE`` (``HH:MM`` UTC, or ``off``) says when.
A time that passes while every such process is down is not caught up: the next one comes the next day.

Every worker process and every server with job threads runs the schedule; the action runs once per day across
them all: each due time is a row in ``schedule_slots`` that one process inserts (the primary key refuses the
others). A slot whose process died before it marked the slot done is taken over by the next process that comes to
it when the dead one's registry heartbeat is stale, so a day is not lost to a crash (its action may then run twice
for what the first process had done: the segment job it enqueues is idempotent).
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable

from sqlalchemy import select, update

from audiencehub.metadata import tables as t
from audiencehub.metadata.store import IntegrityError, MetadataStore, insert_row

log = logging.getLogger(__name__)

RAN, DONE, HELD = "RAN", "DONE", "HELD"


def parse_time(text: str) -> dt.time | None:
    """``HH:MM`` (UTC) → a time; ``off`` → None; anything else raises ValueError naming the value."""
    if text.strip().lower() == "off":
        return None
    try:
        hours, minutes = text.strip().split(":")
        return dt.time(int(hours), int(minutes), tzinfo=dt.UTC)
    except ValueError:
        raise ValueError(f"segment schedule: expected HH:MM (UTC) or off, got {text!r}") from None


def next_run(at: dt.time, after: dt.datetime) -> dt.datetime:
    """The first time of day ``at`` strictly after ``after``."""
    candidate = dt.datetime.combine(after.date(), at.replace(tzinfo=None), tzinfo=dt.UTC)
    return candidate if candidate > after else candidate + dt.timedelta(days=1)


class DailySchedule:
    def __init__(
        self,
        at: dt.time,
        action: Callable[[], object],
        name: str,
        *,
        store: MetadataStore | None = None,
        worker_id: str = "",
        stale_after_s: float = 60.0,
    ) -> None:
        """With ``store``, each day's action runs in one process of all those sharing it; ``worker_id`` is this
        process's row in the ``workers`` table, which its job runner heartbeats."""
        self._at = at
        self._action = action
        self._name = name
        self._store = store
        self._worker_id = worker_id
        self._stale_after_s = stale_after_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():  # a container closed before its app started never ran it
            self._thread.join(5)

    def fire(self, due: dt.datetime) -> str:
        """Runs the action for the slot ``due`` unless another process has it: ``RAN``, ``DONE`` (another process
        ran it) or ``HELD`` (another live process is running it: ask again later, in case that one dies)."""
        slot = due.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%MZ")
        if self._store is not None:
            got = self._claim(slot)
            if got != RAN:
                log.info("the %s of %s runs in another process", self._name, slot)
                return got
        log.info("running the %s of %s", self._name, slot)
        try:
            self._action()
        finally:  # a failed day is logged by the caller; the others must not wait for it
            if self._store is not None:
                with self._store.tx() as conn:
                    conn.execute(
                        update(t.schedule_slots)
                        .where(t.schedule_slots.c.name == self._name, t.schedule_slots.c.slot == slot)
                        .values(done_at=time.time())
                    )
        return RAN

    def _claim(self, slot: str) -> str:
        assert self._store is not None
        values = {"name": self._name, "slot": slot, "worker_id": self._worker_id, "claimed_at": time.time()}
        try:
            with self._store.tx() as conn:
                insert_row(conn, t.schedule_slots, values)
            return RAN
        except IntegrityError:
            pass
        stale_before = time.time() - self._stale_after_s
        with self._store.tx() as conn:
            row = conn.execute(
                select(t.schedule_slots).where(t.schedule_slots.c.name == self._name, t.schedule_slots.c.slot == slot)
            ).first()
            if row is None or row.done_at is not None or row.worker_id == self._worker_id:
                return DONE
            holder = conn.execute(select(t.workers.c.heartbeat_at).where(t.workers.c.id == row.worker_id)).first()
            if holder is not None and holder.heartbeat_at >= stale_before:
                return HELD  # its process is alive and at it
            taken = conn.execute(
                update(t.schedule_slots)
                .where(
                    t.schedule_slots.c.name == self._name,
                    t.schedule_slots.c.slot == slot,
                    t.schedule_slots.c.worker_id == row.worker_id,
                    t.schedule_slots.c.done_at.is_(None),
                )
                .values(worker_id=self._worker_id, claimed_at=time.time())
            ).rowcount
        if not taken:
            return HELD
        log.warning("taking over the %s of %s from %s, which stopped", self._name, slot, row.worker_id)
        return RAN

    def _loop(self) -> None:
        due = next_run(self._at, dt.datetime.now(dt.UTC))
        while not self._stop.is_set():
            left = (due - dt.datetime.now(dt.UTC)).total_seconds()
            if left > 0:
                self._stop.wait(min(left, 60.0))  # re-reads the clock every minute: a clock change is noticed
                continue
            try:
                if self.fire(due) == HELD:
                    self._stop.wait(min(self._stale_after_s, 60.0))
                    continue
            except Exception:  # one failed day must not stop the next ones
                log.exception("the scheduled action %s failed", self._thread.name)
            due = next_run(self._at, max(due, dt.datetime.now(dt.UTC)))
