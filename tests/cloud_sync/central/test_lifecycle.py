"""The fold of an alert's events into its current state (pure): event numbers, and the same state
from any order of any part of an alert's history (a repeat never reaches the fold: the database
holds an event once)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cloud_sync.central.alert_store import event_row
from cloud_sync.central.lifecycle import LEGACY_N, Event, event_number, fold
from cloud_sync.schemas import INT64_MAX
from tests.cloud_sync.conftest import T0, alert_story


@pytest.mark.parametrize(
    ("event_id", "alert_id", "n"),
    [
        ("a.b.1", "a.b", 1),
        ("a.b.0", "a.b", 0),
        ("a.b.007", "a.b", 7),
        (f"a.{INT64_MAX}", "a", INT64_MAX),
        (f"a.{INT64_MAX + 1}", "a", None),
        ("a.b.1", "a", None),  # "b.1" is not a number
        ("a.b", "a.b", None),
        ("a.b.", "a.b", None),
        ("x.1", "a", None),
        ("a.-1", "a", None),
        ("a.1e3", "a", None),
        ("a.\u0661", "a", None),  # an Arabic-Indic digit: not ASCII
    ],
)
def test_event_numbers(event_id: str, alert_id: str, n: int | None) -> None:
    assert event_number(event_id, alert_id) == n


def _events() -> list[Event]:
    origin = {"record_id": "r", "site_id": "s", "gateway_id": "g", "received_at": T0}
    rows = [event_row(record, origin) for record in alert_story()]
    return [Event.from_row(row | {"seq": 100 - i}) for i, row in enumerate(rows)]


STORY = _events()


@settings(max_examples=200, deadline=None, database=None, derandomize=True)
@given(
    picked=st.sets(st.sampled_from(range(len(STORY))), min_size=1).flatmap(
        lambda part: st.permutations(sorted(part))
    ),
)
def test_any_part_of_a_history_in_any_order_folds_to_its_latest_state(picked: list[int]) -> None:
    events = [STORY[i] for i in picked]
    state = fold(events)
    assert state == fold([STORY[i] for i in sorted(picked)])  # the order makes no difference
    latest = max(set(picked))  # the story is in order of n
    assert (state.condition, state.human_state, state.last_event) == (
        STORY[latest].condition,
        STORY[latest].human_state,
        STORY[latest].event,
    )
    assert state.events == len(set(picked))
    assert (state.acknowledged_by is not None) == (2 in picked)
    assert (state.outcome == "resident_ok") == (4 in picked)
    assert (state.cleared_at == T0 + timedelta(minutes=4)) == (3 in picked)
    assert state.seq == max(STORY[i].seq for i in picked)


def test_a_legacy_clear_wins_over_its_raise_and_any_alert_event_over_both() -> None:
    raised = replace(STORY[0], n=LEGACY_N["raised"], event_id=None, seq=2)
    cleared = replace(
        STORY[0], n=LEGACY_N["cleared"], event="cleared", condition="cleared", event_id=None, seq=1
    )
    assert (fold([cleared, raised]).condition, fold([raised, cleared]).condition) == (
        "cleared",
        "cleared",
    )
    assert fold([raised, cleared, STORY[1]]).last_event == "escalated"
