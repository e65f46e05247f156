"""``audiencehub worker``: a process that runs jobs from the shared metadata store until SIGTERM or SIGINT.

On the signal it stops claiming, lets running jobs finish for up to a grace period, and exits; jobs still running
then keep their RUNNING rows, and another worker recovers them once their heartbeat is stale.
"""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType

from audiencehub.jobs.runner import JobRunner
from audiencehub.jobs.schedule import DailySchedule

log = logging.getLogger(__name__)

SIGNALS = (signal.SIGTERM, signal.SIGINT)


def run_until_signalled(runner: JobRunner, schedule: DailySchedule | None, *, grace_s: float) -> list[str]:
    """Runs ``runner`` (and ``schedule``) until SIGTERM or SIGINT; returns the ids of jobs left running."""
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        if not stop.is_set():
            log.info(
                "job worker %s got %s: no more claims; running jobs have %.0fs to finish",
                runner.worker_id,
                signal.Signals(signum).name,
                grace_s,
            )
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in SIGNALS}
    try:
        runner.start()
        if schedule is not None:
            schedule.start()
        while not stop.wait(1.0):  # a timeout, so that the signal handler runs promptly in this (main) thread
            pass
        if schedule is not None:
            schedule.stop()
        return runner.stop(grace_s)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
