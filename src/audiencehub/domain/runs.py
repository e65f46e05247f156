"""Runs, operations and jobs: their states and the one table of allowed transitions for each."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

from audiencehub.errors import IllegalTransition


class Status(StrEnum):
    """What AEP reports for operations, runs and their stages."""

    QUEUED = "QUEUED"  # shown as PROCESSING: AEP has no queued state
    PROCESSING = "PROCESSING"
    SUCCESS = "SUCCESS"
    FAILED = "FAILED"
    SKIPPED = "SKIPPED"  # a stage that never started because an earlier one failed

    @property
    def public(self) -> str:
        return Status.PROCESSING.value if self is Status.QUEUED else self.value

    @property
    def finished(self) -> bool:
        return self in (Status.SUCCESS, Status.FAILED, Status.SKIPPED)


TRANSITIONS: dict[Status, frozenset[Status]] = {
    Status.QUEUED: frozenset({Status.PROCESSING, Status.FAILED, Status.SKIPPED}),
    Status.PROCESSING: frozenset({Status.SUCCESS, Status.FAILED}),
    Status.SUCCESS: frozenset(),
    Status.FAILED: frozenset(),
    Status.SKIPPED: frozenset(),
}


def check_transition(current: Status, new: Status) -> None:
    if new not in TRANSITIONS[current]:
        raise IllegalTransition(f"{current.value} -> {new.value}")


class Stage(StrEnum):
    DATASET_INGEST = "DATASET_INGEST"
    PROFILE_STORE_INGEST = "PROFILE_STORE_INGEST"


@dataclass
class RunMetrics:
    """The extension ``metrics`` object of a run."""

    filesProcessed: int = 0
    recordsRead: int = 0
    recordsIngested: int = 0
    recordsFailed: int = 0
    profilesCreated: int = 0
    profilesUpdated: int = 0
    membersRealized: int = 0
    membersExited: int = 0

    def to_dict(self) -> dict[str, int]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> RunMetrics:
        known = {k: int(v) for k, v in (data or {}).items() if k in cls.__dataclass_fields__}
        return cls(**known)


@dataclass
class StageState:
    stage: Stage
    status: Status
    flowRunId: str
    startedAt: int | None = None
    finishedAt: int | None = None
    error: str | None = None

    def advance(self, new: Status) -> None:
        check_transition(self.status, new)
        self.status = new

    def public(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "stage": self.stage.value,
            "status": self.status.public,
            "flowRunId": self.flowRunId,
        }
        if self.startedAt is not None:
            body["startedAt"] = self.startedAt
        if self.finishedAt is not None:
            body["finishedAt"] = self.finishedAt
        if self.error:
            body["error"] = self.error
        return body

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["stage"] = self.stage.value
        data["status"] = self.status.value
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StageState:
        return cls(
            stage=Stage(data["stage"]),
            status=Status(data["status"]),
            flowRunId=data["flowRunId"],
            startedAt=data.get("startedAt"),
            finishedAt=data.get("finishedAt"),
            error=data.get("error"),
        )
