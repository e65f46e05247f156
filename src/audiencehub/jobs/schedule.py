"""A daily schedule: calls its action once a day at a fixed UTC time while the server runs.

AEP evaluates batch segments once a day; ``AUDIENCEHUB_SEGMENT_SCHEDULE`` (``HH:MM`` UTC, or ``off``) says when.
A time that passes while the server is down is not caught up: the next one comes the next day.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)


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
    def __init__(self, at: dt.time, action: Callable[[], object], name: str) -> None:
        self._at = at
        self._action = action
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():  # a container closed before its app started never ran it
            self._thread.join(5)

    def _loop(self) -> None:
        due = next_run(self._at, dt.datetime.now(dt.UTC))
        while not self._stop.is_set():
            left = (due - dt.datetime.now(dt.UTC)).total_seconds()
            if left > 0:
                self._stop.wait(min(left, 60.0))  # re-reads the clock every minute: a clock change is noticed
                continue
            try:
                self._action()
            except Exception:  # one failed day must not stop the next ones
                log.exception("the scheduled action %s failed", self._thread.name)
            due = next_run(self._at, dt.datetime.now(dt.UTC))
