"""The executor core: rows at their ticks as twists / pose targets, limits, watchdog, enable."""

import numpy as np
import pytest

from dp_ros.acting.action_convention import SIM_CONVENTION, quat_to_matrix
from dp_ros.acting.chunk_executor import (
    ChunkExecutor,
    ExecutorSettings,
)
from dp_ros.acting.chunk_timing import TimedChunk
from dp_ros.acting.executor_safety import SafetyLimits, Watchdog, limit_pose, limit_twist

MS = 1_000_000
PERIOD = 50 * MS
T0 = 1_000 * 1_000_000_000
IDENTITY = np.array([0.0, 0.0, 0.0, 1.0])
WIDE = SafetyLimits(max_linear_speed=10.0, max_angular_speed=100.0)


def rows(n: int, gripper: float = 1.0) -> np.ndarray:
    """Row i moves dx = 0.1 (i + 1) and drz = -0.1 (i + 1): 0.1 (i+1) m/s, -1 (i+1) rad/s."""
    out = np.zeros((n, 7), np.float32)
    out[:, 0] = 0.1 * np.arange(1, n + 1)
    out[:, 5] = -0.1 * np.arange(1, n + 1)
    out[:, 6] = gripper
    return out


def executor(interface: str = "twist", limits: SafetyLimits = WIDE, **kwargs) -> ChunkExecutor:
    settings = ExecutorSettings(interface, PERIOD, SIM_CONVENTION, limits, **kwargs)
    core = ChunkExecutor(settings)
    core.policy_status(True, T0)
    return core


# ---- limits ------------------------------------------------------------------------------------


def test_speed_caps_scale_the_vector_down_and_count():
    limits = SafetyLimits(max_linear_speed=1.0, max_angular_speed=2.0)
    linear, angular, hits = limit_twist([3.0, 4.0, 0.0], [0.0, 0.0, 1.0], limits, None, 0.05)
    np.testing.assert_allclose(linear, [0.6, 0.8, 0.0])
    np.testing.assert_allclose(angular, [0.0, 0.0, 1.0])
    assert hits == ["linear_speed_hits"]
    _, angular, hits = limit_twist([0, 0, 0], [0.0, 0.0, -4.0], limits, None, 0.05)
    np.testing.assert_allclose(angular, [0.0, 0.0, -2.0])
    assert hits == ["angular_speed_hits"]


def test_box_cuts_the_velocity_that_would_leave_it_and_never_pushes_back_in():
    limits = SafetyLimits((0.0, -0.5, 0.8), (0.6, 0.5, 1.0), 10.0, 10.0)
    # 0.02 m below the top face: 1 m/s for 50 ms would overshoot; cut to 0.02 / 0.05 = 0.4 m/s.
    linear, _, hits = limit_twist([0.2, 0.0, 1.0], [0, 0, 0], limits, [0.3, 0.0, 0.98], 0.05)
    np.testing.assert_allclose(linear, [0.2, 0.0, 0.4])
    assert hits == ["workspace_hits"]
    # Already above the box: further up is zeroed, going down is left as commanded.
    linear, _, _ = limit_twist([0.0, 0.0, 0.5], [0, 0, 0], limits, [0.3, 0.0, 1.1], 0.05)
    np.testing.assert_allclose(linear, [0.0, 0.0, 0.0])
    linear, _, hits = limit_twist([0.0, 0.0, -0.5], [0, 0, 0], limits, [0.3, 0.0, 1.1], 0.05)
    np.testing.assert_allclose(linear, [0.0, 0.0, -0.5])
    assert hits == []


def test_pose_target_is_clamped_into_the_box_and_to_one_periods_travel():
    limits = SafetyLimits((0.0, -0.5, 0.8), (0.6, 0.5, 1.0), 0.5, 2.0)
    # Target 0.1 m up, 0.05 m past the top face: clamped to z = 1.0, then 0.5 m/s * 50 ms.
    position, quat, hits = limit_pose(
        [0.3, 0.0, 1.05], IDENTITY, [0.3, 0.0, 0.95], IDENTITY, limits, 0.05
    )
    np.testing.assert_allclose(position, [0.3, 0.0, 0.975])
    assert hits == ["workspace_hits", "linear_speed_hits"]
    # 1 rad about z asked, 2 rad/s * 50 ms = 0.1 rad allowed.
    turn = np.array([0.0, 0.0, np.sin(0.5), np.cos(0.5)])
    _, quat, hits = limit_pose([0.3, 0, 0.9], turn, [0.3, 0, 0.9], IDENTITY, limits, 0.05)
    np.testing.assert_allclose(quat, [0.0, 0.0, np.sin(0.05), np.cos(0.05)], atol=1e-12)
    assert hits == ["angular_speed_hits"]


def test_bad_limits_are_refused_by_name():
    with pytest.raises(ValueError, match="workspace_min=\\[0.0, 0.0\\]"):
        SafetyLimits((0.0, 0.0), (1.0, 1.0))
    with pytest.raises(ValueError, match="must be below workspace_max"):
        SafetyLimits((0.0, 0.0, 1.0), (1.0, 1.0, 0.5))
    with pytest.raises(ValueError, match="max_linear_speed=0"):
        SafetyLimits(max_linear_speed=0)


# ---- watchdog ----------------------------------------------------------------------------------


def test_watchdog_names_a_missing_stale_or_idle_policy():
    dog = Watchdog(1_000 * MS)
    assert dog.reason(T0) == "no policy status received"
    dog.policy_status(True, T0)
    assert dog.reason(T0 + 900 * MS) == ""
    assert dog.reason(T0 + 1_500 * MS) == "policy status stale: none for 1.50 s"
    for k in range(1, 13):  # HOLDING every 0.1 s: fresh, but not acting
        dog.policy_status(False, T0 + k * 100 * MS)
    assert dog.reason(T0 + 1_000 * MS) == ""
    assert dog.reason(T0 + 1_200 * MS) == "policy not ACTING for 1.20 s"


# ---- the executor ------------------------------------------------------------------------------


def test_twist_mode_plays_each_row_at_its_tick_then_holds_still():
    core = executor()
    core.submit(TimedChunk(T0 + 2 * PERIOD, PERIOD, rows(3)), observation_ns=T0)
    commands = [core.tick(T0 + k * PERIOD) for k in range(6)]
    assert [c.fresh for c in commands] == [False, False, True, True, True, False]
    for i, command in enumerate(commands[2:5]):
        # 0.1 (i+1) units * 0.05 m / 0.05 s; -0.1 (i+1) units * 0.5 rad / 0.05 s.
        np.testing.assert_allclose(command.linear, [0.1 * (i + 1), 0, 0], atol=1e-6)
        np.testing.assert_allclose(command.angular, [0, 0, -(i + 1)], atol=1e-6)
        assert command.stamp_ns == T0 + (2 + i) * PERIOD
    hold = commands[5]
    assert hold.linear.tolist() == [0, 0, 0] and hold.angular.tolist() == [0, 0, 0]
    assert hold.gripper == 1.0  # the last row's gripper stays
    assert core.counts["rows_played"] == 3 and core.counts["hold_ticks"] == 3


def test_a_chunk_of_any_length_is_played_and_late_rows_are_dropped():
    core = executor()
    core.submit(TimedChunk(T0, PERIOD, rows(15)), observation_ns=T0)
    command = core.tick(T0 + 4 * PERIOD)  # rows 0-3 missed
    np.testing.assert_allclose(command.linear, [0.5, 0, 0], atol=1e-6)
    played = [core.tick(T0 + k * PERIOD).fresh for k in range(5, 16)]
    assert played == [True] * 10 + [False]
    assert core.counts["rows_dropped_late"] == 4 and core.counts["rows_played"] == 11


def test_speed_limit_hits_are_counted_in_the_executor():
    core = executor(limits=SafetyLimits(max_linear_speed=0.15, max_angular_speed=100.0))
    core.submit(TimedChunk(T0, PERIOD, rows(3)), observation_ns=T0)
    speeds = [float(np.linalg.norm(core.tick(T0 + k * PERIOD).linear)) for k in range(3)]
    np.testing.assert_allclose(speeds, [0.1, 0.15, 0.15], atol=1e-6)
    assert core.counts["linear_speed_hits"] == 2


def test_box_without_a_recent_pose_does_not_move():
    limits = SafetyLimits((-1.0, -1.0, 0.0), (1.0, 1.0, 2.0), 10.0, 100.0)
    core = executor(limits=limits)
    core.submit(TimedChunk(T0, PERIOD, rows(2)), observation_ns=T0)
    assert core.tick(T0).linear.tolist() == [0, 0, 0]
    assert core.counts["workspace_unknown_ticks"] == 1
    core.add_eef_pose(T0 + PERIOD, [0.0, 0.0, 1.0], IDENTITY)
    np.testing.assert_allclose(core.tick(T0 + PERIOD).linear, [0.2, 0, 0], atol=1e-6)


def test_pose_mode_waits_for_the_pose_of_its_instant_and_composes_with_it():
    core = executor("pose")
    core.add_eef_pose(T0 - PERIOD, [0.5, 0.0, 1.0], IDENTITY)  # the previous step's pose
    core.submit(TimedChunk(T0, PERIOD, rows(2)), observation_ns=T0)
    assert core.tick(T0) is None  # no pose of this instant yet
    command = core.add_eef_pose(T0, [0.51, 0.0, 1.0], IDENTITY)
    # Composed with the pose of T0: x 0.51 + 0.1 * 0.05; -0.05 rad about z.
    np.testing.assert_allclose(command.position, [0.515, 0.0, 1.0], atol=1e-7)
    np.testing.assert_allclose(
        quat_to_matrix(command.quaternion)[:2, :2],
        [[np.cos(0.05), np.sin(0.05)], [-np.sin(0.05), np.cos(0.05)]],
        atol=1e-7,
    )
    assert command.stamp_ns == T0 and command.fresh
    # The next tick's pose never comes: that tick sends nothing, and the next one counts it.
    assert core.tick(T0 + PERIOD) is None
    assert core.tick(T0 + 2 * PERIOD) is None
    assert core.counts["pose_unmatched_ticks"] == 1
    # A hold repeats the last target.
    hold = core.add_eef_pose(T0 + 2 * PERIOD, [0.52, 0.0, 1.0], IDENTITY)
    assert not hold.fresh
    np.testing.assert_allclose(hold.position, command.position)


def test_watchdog_stop_latches_drops_pending_rows_and_enable_resumes():
    core = executor(watchdog_timeout_ns=200 * MS, latch=True)
    core.submit(TimedChunk(T0, PERIOD, rows(15)), observation_ns=T0)
    assert core.tick(T0).fresh
    # No status since T0: at T0 + 250 ms it is stale.
    stopped = core.tick(T0 + 5 * PERIOD)
    assert not stopped.fresh and stopped.linear.tolist() == [0, 0, 0]
    assert stopped.reason.startswith("policy status stale") and "~/enable" in stopped.reason
    assert core.player.pending_rows == 0 and not core.enabled
    # The policy is back, but a latched stop waits for ~/enable; new chunks are not taken.
    core.policy_status(True, T0 + 6 * PERIOD)
    core.submit(TimedChunk(T0 + 7 * PERIOD, PERIOD, rows(2)), observation_ns=T0 + 6 * PERIOD)
    assert not core.tick(T0 + 7 * PERIOD).fresh
    core.set_enabled(True)
    core.submit(TimedChunk(T0 + 8 * PERIOD, PERIOD, rows(2)), observation_ns=T0 + 7 * PERIOD)
    resumed = core.tick(T0 + 8 * PERIOD)
    assert resumed.fresh and resumed.reason == ""
    assert core.counts["watchdog_trips"] == 1


def test_without_latch_the_executor_holds_only_while_the_policy_is_not_acting():
    core = executor(watchdog_timeout_ns=200 * MS, latch=False)
    for k in range(6):
        core.policy_status(False, T0 + k * PERIOD)  # HOLDING: fresh status, not acting
    assert core.tick(T0 + 5 * PERIOD).reason == "policy not ACTING for 0.25 s"
    core.policy_status(True, T0 + 6 * PERIOD)
    core.submit(TimedChunk(T0 + 6 * PERIOD, PERIOD, rows(1)), observation_ns=T0 + 5 * PERIOD)
    assert core.tick(T0 + 6 * PERIOD).fresh and core.enabled


def test_disable_stops_and_rows_of_an_ended_episode_are_not_played():
    core = executor()
    core.submit(TimedChunk(T0, PERIOD, rows(4)), observation_ns=T0)
    core.set_enabled(False)
    assert not core.tick(T0).fresh and core.stop_reason == "disabled"
    core.set_enabled(True)
    core.episode_ended(T0 + PERIOD)
    assert not core.submit(TimedChunk(T0 + 2 * PERIOD, PERIOD, rows(2)), observation_ns=T0)
    hold = core.tick(T0 + 2 * PERIOD)
    assert not hold.fresh and hold.gripper == -1.0  # open, as the sim starts an episode
    assert core.counts["chunks_ignored_old_episode"] == 1


def test_before_the_policy_first_acts_the_executor_holds_without_a_trip():
    settings = ExecutorSettings("twist", PERIOD, SIM_CONVENTION, WIDE, watchdog_timeout_ns=PERIOD)
    core = ChunkExecutor(settings)
    assert core.tick(T0).reason == "no policy status received"
    core.policy_status(False, T0 + PERIOD)  # INACTIVE: configured, not yet acting
    assert core.tick(T0 + PERIOD).reason == "policy has not been ACTING"
    assert core.enabled and core.counts["watchdog_trips"] == 0
    core.policy_status(True, T0 + 2 * PERIOD)
    core.submit(TimedChunk(T0 + 2 * PERIOD, PERIOD, rows(1)), observation_ns=T0 + PERIOD)
    assert core.tick(T0 + 2 * PERIOD).fresh


def test_a_chunk_arriving_just_after_a_held_tick_plays_that_ticks_row_at_once():
    core = executor()
    assert not core.tick(T0).fresh  # nothing to play yet
    core.submit(TimedChunk(T0, PERIOD, rows(3)), observation_ns=T0 - PERIOD)
    late = core.catch_up(T0 + 10 * MS)  # 10 ms into the tick's window: row 0 is still due
    assert late.fresh and late.stamp_ns == T0
    np.testing.assert_allclose(late.linear, [0.1, 0, 0], atol=1e-6)
    assert core.catch_up(T0 + 12 * MS) is None  # one row per tick
    np.testing.assert_allclose(core.tick(T0 + PERIOD).linear, [0.2, 0, 0], atol=1e-6)
    assert core.counts["hold_ticks"] == 0 and core.counts["rows_played"] == 2
    # Past the window, the row is late: dropped at the next tick, not played.
    core.tick(T0 + 2 * PERIOD)
    core.tick(T0 + 3 * PERIOD)
    core.submit(TimedChunk(T0 + 3 * PERIOD, PERIOD, rows(2)), observation_ns=T0)
    assert core.catch_up(T0 + 3 * PERIOD + 30 * MS) is None
    np.testing.assert_allclose(core.tick(T0 + 4 * PERIOD).linear, [0.2, 0, 0], atol=1e-6)
    assert core.counts["rows_dropped_late"] == 1
