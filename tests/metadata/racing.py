"""Two transactions racing, deterministically: one holds a row lock while a contender runs into it.

``race(store, hold, contender)`` runs ``hold(conn)`` in a write transaction (it locks and changes rows the way a
competing use case's transaction would), starts ``contender`` in a thread, and commits only once the contender
waits for it: on PostgreSQL, once another backend waits for a lock (``pg_stat_activity``); on SQLite, whose write
transactions are serial, once the thread has started. A use case that reads without locking the row it then
changes would, on PostgreSQL, decide on the state before ``hold`` and overwrite it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg
from sqlalchemy import Connection

from audiencehub.metadata.store import MetadataStore
from tests.conftest import wait_for


@dataclass
class Outcome:
    value: Any = None
    error: BaseException | None = None


def lock_waiters(url: str) -> int:
    """How many sessions of this database wait for a lock right now."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        ).fetchone()
    return int(row[0]) if row else 0


def race(store: MetadataStore, hold: Callable[[Connection], None], contender: Callable[[], Any]) -> Outcome:
    outcome = Outcome()
    started = threading.Event()

    def run() -> None:
        started.set()
        try:
            outcome.value = contender()
        except BaseException as exc:
            outcome.error = exc

    thread = threading.Thread(target=run, name="contender")
    with store.tx() as conn:
        hold(conn)
        thread.start()
        assert started.wait(10), "the contender did not start"
        if store.dialect == "postgresql":
            # Done waiting as soon as the contender blocks on our lock, or finishes without (the bug this catches).
            wait_for(
                lambda: not thread.is_alive() or lock_waiters(store.url) > 0,
                timeout=20,
                what="the contender to wait for the held lock",
            )
    thread.join(timeout=60)
    assert not thread.is_alive(), "the contender is still running a minute after the holder committed"
    return outcome
