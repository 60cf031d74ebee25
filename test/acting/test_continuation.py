"""Continuation planning on stamps (ROS-free): which rows of the next chunk are held, and how."""

import numpy as np
import pytest

from dp_ros.acting.chunk_timing import TimedChunk
from dp_ros.acting.continuation import (
    ContinuationConfig,
    freeze_until,
    overlap_weights,
    plan_held_actions,
)

MS = 1_000_000
PERIOD = 50 * MS
T0 = 1_000 * 1_000_000_000
ON = ContinuationConfig(mode="inpaint", overlap_steps=3, schedule="linear")


def committed_chunk(first_ns: int = T0, rows: int = 16) -> TimedChunk:
    values = np.arange(rows * 7, dtype=np.float32).reshape(rows, 7)
    return TimedChunk(first_ns, PERIOD, values)


def test_rows_before_the_takeover_are_frozen_and_an_overlap_follows():
    current = committed_chunk()
    # The new horizon starts 4 steps later; the next chunk takes over 3 steps after that.
    held = plan_held_actions(current, T0 + 4 * PERIOD, 16, T0 + 7 * PERIOD, ON)
    np.testing.assert_array_equal(held.weights[:3], [1, 1, 1])
    np.testing.assert_allclose(held.weights[3:6], [0.75, 0.5, 0.25])
    assert not held.weights[6:].any()
    np.testing.assert_array_equal(held.actions[:6], current.rows[4:10])  # same instants
    assert not held.actions[6:].any()


def test_only_instants_the_current_chunk_covers_are_held():
    current = committed_chunk(rows=6)  # covers T0 .. T0 + 5 periods
    held = plan_held_actions(current, T0 + 4 * PERIOD, 16, T0 + 10 * PERIOD, ON)
    np.testing.assert_array_equal(held.weights[:2], [1, 1])
    assert not held.weights[2:].any()


@pytest.mark.parametrize(
    "config, current",
    [
        (ContinuationConfig(mode="none"), committed_chunk()),
        (ON, None),
        (ON, committed_chunk(first_ns=T0 - 100 * PERIOD)),  # long over
    ],
)
def test_nothing_is_held_without_continuation_or_a_current_chunk(config, current):
    assert plan_held_actions(current, T0, 16, T0 + 3 * PERIOD, config) is None


def test_hard_schedule_has_no_overlap_and_exponential_decays_faster():
    current = committed_chunk()
    hard = ContinuationConfig(mode="inpaint", overlap_steps=3, schedule="hard")
    held = plan_held_actions(current, T0, 16, T0 + 2 * PERIOD, hard)
    np.testing.assert_array_equal(held.weights[:3], [1, 1, 0])
    linear, exponential = overlap_weights(4, "linear"), overlap_weights(4, "exponential")
    assert np.all(np.diff(exponential) < 0) and np.all(exponential <= linear)
    assert 0 < exponential[-1] < linear[-1] < 1


def test_freeze_until_rounds_latency_up_to_whole_steps_and_adds_the_driver_latency():
    assert freeze_until(T0, 0, PERIOD) == T0
    assert freeze_until(T0, PERIOD + 1, PERIOD) == T0 + 2 * PERIOD
    assert freeze_until(T0, 2 * PERIOD, PERIOD, margin_ns=30 * MS) == T0 + 2 * PERIOD + 30 * MS


def test_bad_settings_are_refused_with_the_parameter_named():
    with pytest.raises(ValueError, match="continuation='always'"):
        ContinuationConfig(mode="always")
    with pytest.raises(ValueError, match="continuation_schedule='cosine'"):
        ContinuationConfig(schedule="cosine")
    with pytest.raises(ValueError, match="overlap_steps=-1"):
        ContinuationConfig(overlap_steps=-1)
