"""The daily segment schedule runs in every process with job threads, and its action once per day across them."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import update

from audiencehub.jobs.schedule import DONE, HELD, RAN, DailySchedule
from audiencehub.metadata import jobs
from audiencehub.metadata import tables as t
from audiencehub.metadata.store import MetadataStore

DUE = dt.datetime(2026, 11, 25, 0, 0, tzinfo=dt.UTC)


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MetadataStore]:
    url = (
        f"sqlite:///{tmp_path / 'metadata.db'}"
        if request.param == "sqlite"
        else request.getfixturevalue("postgres_url")
    )
    found = MetadataStore(url)
    found.create_all()
    yield found
    found.dispose()


def _schedule(store: MetadataStore, worker: str, action: list[str], *, heartbeat_age: float = 0.0) -> DailySchedule:
    with store.tx() as conn:
        jobs.register(conn, worker, host="h", pid=1, home=None, threads=1)
        stamp = time.time() - heartbeat_age
        conn.execute(update(t.workers).where(t.workers.c.id == worker).values(heartbeat_at=stamp))
    return DailySchedule(
        dt.time(0, 0, tzinfo=dt.UTC),
        lambda: action.append(worker),
        "segment-schedule",
        store=store,
        worker_id=worker,
        stale_after_s=5.0,
    )


def test_processes_that_come_to_the_same_time_run_the_action_once(store: MetadataStore) -> None:
    ran: list[str] = []
    schedules = [_schedule(store, f"w{n}", ran) for n in range(3)]
    outcomes: list[str] = []
    gate = threading.Barrier(3)

    def fire(schedule: DailySchedule) -> None:
        gate.wait()
        outcomes.append(schedule.fire(DUE))

    threads = [threading.Thread(target=fire, args=(s,)) for s in schedules]
    for th in threads:
        th.start()
    for th in threads:
        th.join(30)
    assert len(ran) == 1
    assert sorted(outcomes).count(RAN) == 1 and set(outcomes) <= {RAN, DONE, HELD}
    assert schedules[0].fire(DUE) == DONE  # asked again later: done
    assert schedules[0].fire(DUE + dt.timedelta(days=1)) == RAN  # the next day is a new slot
    assert len(ran) == 2


def test_a_slot_whose_process_died_half_way_is_taken_over(store: MetadataStore) -> None:
    ran: list[str] = []

    dead = _schedule(store, "dead", ran)
    assert dead._claim("2026-11-25T00:00Z") == RAN  # then killed: its action never ran, its slot is not done
    alive = _schedule(store, "alive", ran)
    assert alive.fire(DUE) == HELD  # "dead" still heartbeats: its slot is held
    with store.tx() as conn:
        conn.execute(update(t.workers).where(t.workers.c.id == "dead").values(heartbeat_at=time.time() - 60))
    assert alive.fire(DUE) == RAN
    assert ran == ["alive"]
    assert alive.fire(DUE) == DONE
