"""Chunk timing: late rows are never offered, drivers play rows at their instants."""

import numpy as np
import pytest

from dp_ros.acting.chunk_timing import ChunkPlayer, TimedChunk, schedule_executed_actions

MS = 1_000_000
T0 = 1_700_000_000 * 1_000_000_000


def rows(n: int, gripper: float = 1.0) -> np.ndarray:
    actions = np.zeros((n, 7), np.float32)
    actions[:, 0] = np.arange(n)  # row index in dx, to see which rows survive
    actions[:, 6] = gripper
    return actions


def test_rows_whose_instant_has_passed_are_dropped_and_stamp_is_first_kept():
    # 8 rows at 50 ms from the newest observation; inference finished 120 ms later, 10 ms latency.
    chunk = schedule_executed_actions(
        rows(8), T0, 50 * MS, now_ns=T0 + 120 * MS, exec_latency_ns=10 * MS
    )
    # Instants 0, 50, 100 ms are before 130 ms; 150 ms is the first kept.
    assert chunk.first_stamp_ns == T0 + 150 * MS
    assert chunk.rows[:, 0].tolist() == [3, 4, 5, 6, 7]
    assert chunk.period_ns == 50 * MS


def test_a_row_at_exactly_now_is_kept():
    # Simulated time: the clock still reads the newest observation's step, not yet executed.
    chunk = schedule_executed_actions(rows(8), T0, 50 * MS, now_ns=T0, exec_latency_ns=0)
    assert chunk.first_stamp_ns == T0 and len(chunk.rows) == 8
    chunk = schedule_executed_actions(rows(8), T0, 50 * MS, now_ns=T0 + 1, exec_latency_ns=0)
    assert chunk.first_stamp_ns == T0 + 50 * MS and len(chunk.rows) == 7


def test_all_rows_late_gives_none():
    assert schedule_executed_actions(rows(4), T0, 50 * MS, T0 + 1000 * MS, 0) is None


def test_player_plays_each_row_at_its_tick_then_holds_with_last_gripper():
    player = ChunkPlayer(control_period_ns=50 * MS)
    player.submit(TimedChunk(T0 + 100 * MS, 50 * MS, rows(3, gripper=1.0)))
    played = [player.action_at(T0 + k * 50 * MS) for k in range(6)]
    fresh = [is_fresh for _, is_fresh in played]
    assert fresh == [False, False, True, True, True, False]
    assert [action[0] for action, _ in played[2:5]] == [0, 1, 2]
    hold, _ = played[5]
    assert hold.tolist() == [0, 0, 0, 0, 0, 0, 1.0]  # zero motion, gripper stays closed
    assert (player.played_rows, player.dropped_rows) == (3, 0)


def test_late_rows_are_dropped_not_played_late():
    player = ChunkPlayer(control_period_ns=50 * MS)
    player.submit(TimedChunk(T0, 50 * MS, rows(5)))
    action, fresh = player.action_at(T0 + 120 * MS)  # rows at 0 and 50 ms missed; 100 ms is due
    assert fresh and action[0] == 2
    assert player.dropped_rows == 2


def test_newer_chunk_replaces_remainder_of_older():
    player = ChunkPlayer(control_period_ns=50 * MS)
    player.submit(TimedChunk(T0, 50 * MS, rows(8)))
    player.action_at(T0)
    newer = rows(2)
    newer[:, 0] = [100, 101]
    player.submit(TimedChunk(T0 + 50 * MS, 50 * MS, newer))
    assert [player.action_at(T0 + k * 50 * MS)[0][0] for k in (1, 2, 3)] == [100, 101, 0]
    assert player.pending_rows == 0


def test_player_refuses_wrong_width_and_chunk_refuses_empty():
    player = ChunkPlayer(control_period_ns=50 * MS)
    with pytest.raises(ValueError, match="3 action columns; driver expects 7"):
        player.submit(TimedChunk(T0, 50 * MS, np.zeros((2, 3), np.float32)))
    with pytest.raises(ValueError, match=r"shape \(0, 7\)"):
        TimedChunk(T0, 50 * MS, np.zeros((0, 7), np.float32))
