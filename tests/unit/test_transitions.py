"""The one table of allowed status transitions, walked pair by pair."""

from __future__ import annotations

import itertools

import pytest

from audiencehub.domain.runs import TRANSITIONS, Stage, StageState, Status, check_transition
from audiencehub.errors import IllegalTransition

PAIRS = list(itertools.product(Status, Status))


def test_the_table_covers_every_status() -> None:
    assert set(TRANSITIONS) == set(Status)
    for targets in TRANSITIONS.values():
        assert targets <= set(Status)


@pytest.mark.parametrize(("current", "new"), PAIRS, ids=[f"{a.value}->{b.value}" for a, b in PAIRS])
def test_check_transition_allows_exactly_the_table(current: Status, new: Status) -> None:
    if new in TRANSITIONS[current]:
        check_transition(current, new)
    else:
        with pytest.raises(IllegalTransition, match=f"{current.value} -> {new.value}"):
            check_transition(current, new)


def test_finished_states_are_final() -> None:
    for status in Status:
        if status.finished:
            assert TRANSITIONS[status] == frozenset(), status
        else:
            assert TRANSITIONS[status], status


def test_no_status_moves_to_itself() -> None:
    for status in Status:
        assert status not in TRANSITIONS[status]


@pytest.mark.parametrize(("current", "new"), PAIRS, ids=[f"{a.value}->{b.value}" for a, b in PAIRS])
def test_stage_state_advances_through_the_same_check(current: Status, new: Status) -> None:
    state = StageState(Stage.DATASET_INGEST, current, "flow-run")
    if new in TRANSITIONS[current]:
        state.advance(new)
        assert state.status is new
    else:
        with pytest.raises(IllegalTransition):
            state.advance(new)
        assert state.status is current


def test_queued_reads_as_processing() -> None:
    assert Status.QUEUED.public == "PROCESSING"
    assert {s.public for s in Status if s is not Status.QUEUED} == {s.value for s in Status if s is not Status.QUEUED}
