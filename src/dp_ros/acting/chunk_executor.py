"""A chunk executor, ROS-free: plays chunk rows at their stamps as commands a standard ROS 2
controller takes, inside safety limits.

Per control tick (`ChunkExecutor.tick(now_ns)`), the row due now comes from the same ChunkPlayer
sim_node uses (late rows dropped and counted, a newer chunk replaces the rest, hold when empty).
It becomes, by `interface`:
  - `twist`: linear and angular velocity = delta / period, in the convention's frame (the input
    of MoveIt Servo and Cartesian velocity controllers); a hold is a zero twist;
  - `pose`: the target = the end-effector pose stamped at this tick composed with the delta (for
    Cartesian pose / impedance controllers); a hold repeats the last target. The tick waits for
    the pose of its instant (within `pose_tolerance_ns`): composing with an older pose would
    count motion the arm already made as still to come. `add_eef_pose` completes a waiting tick.
The gripper command (action units, -1 open .. +1 closed) comes with every command.

Safety, in this order: the commanded position is kept inside a workspace box (a twist loses the
velocity components that would leave it, a pose target is clamped into it), then the speed is
capped (a twist's linear and angular norms; a target's distance and angle from the current
pose, per period). A watchdog stops the arm (hold, pending rows dropped) while the policy's
status is stale or not ACTING for longer than `watchdog_timeout_ns`; when that loses a policy
that was acting, it counts a trip and, with `latch`, disables the executor until
`set_enabled(True)`. Every limit hit is counted in `counts`.
"""

from dataclasses import dataclass, field

import numpy as np

from dp_ros.acting.action_convention import (
    ActionConvention,
    compose_pose,
    delta_to_twist,
    quat_to_matrix,
)
from dp_ros.acting.chunk_timing import GRIPPER_COLUMN, ChunkPlayer, TimedChunk
from dp_ros.acting.executor_safety import (
    NS,
    SafetyLimits,
    Watchdog,
    limit_pose,
    limit_twist,
)

INTERFACES = ("twist", "pose")
COUNTERS = (
    "rows_played",
    "rows_dropped_late",
    "hold_ticks",
    "chunks_ignored_old_episode",
    "workspace_hits",
    "linear_speed_hits",
    "angular_speed_hits",
    "watchdog_trips",
    "pose_unmatched_ticks",
    "workspace_unknown_ticks",
)


@dataclass(frozen=True)
class ExecutorSettings:
    interface: str
    period_ns: int
    convention: ActionConvention
    limits: SafetyLimits = field(default_factory=SafetyLimits)
    watchdog_timeout_ns: int | None = NS  # None: no policy status is watched
    latch: bool = True  # a watchdog stop disables the executor until re-enabled
    pose_tolerance_ns: int | None = None  # None: half a period
    max_pose_age_ns: int = NS // 2  # twist mode: older poses do not count for the box

    def __post_init__(self) -> None:
        if self.interface not in INTERFACES:
            raise ValueError(f"interface={self.interface!r}: must be one of {list(INTERFACES)}")
        if self.period_ns <= 0:
            raise ValueError(f"period_ns={self.period_ns}: must be > 0")

    @property
    def tolerance_ns(self) -> int:
        return self.period_ns // 2 if self.pose_tolerance_ns is None else self.pose_tolerance_ns


@dataclass(frozen=True)
class Command:
    """What to send at `stamp_ns`. Twist mode: `linear` (3,) m/s, `angular` (3,) rad/s; pose
    mode: `position` (3,) m, `quaternion` (4,) xyzw. `gripper` in action units; `fresh`: from a
    row (False: a hold); `reason`: why the executor is stopped ("" when it is not)."""

    stamp_ns: int
    gripper: float
    fresh: bool
    reason: str = ""
    linear: np.ndarray | None = None
    angular: np.ndarray | None = None
    position: np.ndarray | None = None
    quaternion: np.ndarray | None = None


class ChunkExecutor:
    def __init__(self, settings: ExecutorSettings, enabled: bool = True) -> None:
        self.settings = settings
        self.player = ChunkPlayer(settings.period_ns)
        self.watchdog = (
            Watchdog(settings.watchdog_timeout_ns) if settings.watchdog_timeout_ns else None
        )
        self.enabled = enabled
        self.stop_reason = "" if enabled else "disabled"
        self.counts = dict.fromkeys(COUNTERS, 0)
        self._episode_start_ns = 0
        self._poses: list[tuple[int, np.ndarray, np.ndarray]] = []  # (stamp, pos, quat), sorted
        self._hold_target: tuple[np.ndarray, np.ndarray] | None = None
        self._waiting: tuple[int, np.ndarray, bool] | None = None  # pose mode: tick, row, fresh
        self._last_tick: tuple[int, bool] | None = None  # (instant, whether it played a row)

    @property
    def period_s(self) -> float:
        return self.settings.period_ns / NS

    # ---- inputs -----------------------------------------------------------------------------

    def submit(self, chunk: TimedChunk, observation_ns: int) -> bool:
        """A newer chunk replaces the rest; one conditioned on an ended episode is ignored."""
        if observation_ns < self._episode_start_ns:
            self.counts["chunks_ignored_old_episode"] += 1
            return False
        if self.enabled:
            self.player.submit(chunk)
        return self.enabled

    def episode_ended(self, stamp_ns: int) -> None:
        """Rows planned in the old episode are not for the next one; the gripper starts open,
        as the simulator resets it."""
        self._episode_start_ns = stamp_ns
        self.player.clear()
        self._hold_target = None

    def policy_status(self, acting: bool, now_ns: int) -> None:
        if self.watchdog is not None:
            self.watchdog.policy_status(acting, now_ns)

    def add_eef_pose(
        self, stamp_ns: int, position: np.ndarray, quat: np.ndarray
    ) -> Command | None:
        """Keep the pose (a short history, for stamp matching); in pose mode, the command of a
        tick that was waiting for this pose, if it is the one."""
        self._poses.append((stamp_ns, np.asarray(position, np.float64), np.asarray(quat)))
        self._poses.sort(key=lambda entry: entry[0])
        del self._poses[:-8]
        if self._waiting is None:
            return None
        tick_ns, row, fresh = self._waiting
        pose = self._pose_at(tick_ns)
        if pose is None:
            return None
        self._waiting = None
        return self._pose_command(tick_ns, row, fresh, pose)

    def set_enabled(self, enabled: bool) -> str:
        self.enabled = enabled
        self.stop_reason = "" if enabled else "disabled"
        if not enabled:
            self._stop_motion()
        return f"executor {'enabled' if enabled else 'disabled'}"

    # ---- the tick -----------------------------------------------------------------------------

    def tick(self, now_ns: int) -> Command | None:
        """The command for this tick, or None when there is nothing to send yet (pose mode: no
        pose of this instant yet, or none ever, to hold)."""
        if self._waiting is not None:  # the previous tick never got its pose
            self.counts["pose_unmatched_ticks"] += 1
            self._waiting = None
        self._check_watchdog(now_ns)
        if self.enabled and not self.stop_reason:
            row, fresh = self.player.action_at(now_ns)
        else:
            row, fresh = self.player.hold_action(), False
        self._count_player()
        self.counts["hold_ticks"] += not fresh
        self._last_tick = (now_ns, fresh)
        return self._command_for(now_ns, row, fresh)

    def catch_up(self, now_ns: int) -> Command | None:
        """After `submit`: the row of the new chunk due at the last tick, if that tick held and
        its window (half a period either side) is still open; else None.

        A chunk whose first row is for the current instant often arrives just after that
        instant's tick (in simulation, policy and executor both wake on the same /clock step),
        and a driver would still play the row (sim_node does, for chunks it plays itself).
        """
        if self._last_tick is None or not self.enabled or self.stop_reason:
            return None
        tick_ns, fresh = self._last_tick
        if fresh or now_ns >= tick_ns + self.settings.period_ns // 2:
            return None
        row, fresh = self.player.action_at(tick_ns)
        self._count_player()
        if not fresh:
            return None
        self.counts["hold_ticks"] -= 1
        self._last_tick = (tick_ns, True)
        if self._waiting is not None:  # pose mode: the tick still waits for its pose
            self._waiting = (tick_ns, row, True)
            return None
        return self._command_for(tick_ns, row, True)

    def _command_for(self, tick_ns: int, row: np.ndarray, fresh: bool) -> Command | None:
        if self.settings.interface == "twist":
            return self._twist_command(tick_ns, row, fresh)
        pose = self._pose_at(tick_ns)
        if pose is None:
            self._waiting = (tick_ns, row, fresh)
            return None
        return self._pose_command(tick_ns, row, fresh, pose)

    def _check_watchdog(self, now_ns: int) -> None:
        """Hold while the watchdog has a reason. Losing a policy that was ACTING is a trip
        (counted; with `latch` it disables the executor); a policy that has not acted yet
        (start-up) only keeps the arm holding."""
        if self.watchdog is None or not self.enabled:
            return
        reason = self.watchdog.reason(now_ns)
        if reason and not self.stop_reason:
            self._stop_motion()
            if self.watchdog.has_acted:
                self.counts["watchdog_trips"] += 1
                if self.settings.latch:
                    self.enabled = False
                    reason += "; call ~/enable to resume"
        self.stop_reason = reason

    def _stop_motion(self) -> None:
        gripper = self.player.hold_action()[GRIPPER_COLUMN]
        self.player.clear()
        self.player.set_gripper(gripper)

    def _count_player(self) -> None:
        self.counts["rows_played"] = self.player.played_rows
        self.counts["rows_dropped_late"] = self.player.dropped_rows

    def _twist_command(self, now_ns: int, row: np.ndarray, fresh: bool) -> Command:
        linear, angular = np.zeros(3), np.zeros(3)
        if fresh:
            linear, angular = self._limited_twist(now_ns, row)
        gripper = float(row[GRIPPER_COLUMN])
        return Command(now_ns, gripper, fresh, self.stop_reason, linear=linear, angular=angular)

    def _limited_twist(self, now_ns: int, row: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The row's twist inside the limits. The box is in the base frame: a tool-frame twist
        is turned into it and back, with the newest pose; with a box and no recent pose to
        check it against, the arm does not move."""
        linear, angular = delta_to_twist(row, self.settings.convention, self.period_s)
        limits = self.settings.limits
        pose = self._recent_pose(now_ns)
        if limits.has_box and pose is None:
            self.counts["workspace_unknown_ticks"] += 1
            return np.zeros(3), np.zeros(3)
        to_base = None  # speed caps do not depend on the frame; the box does
        if limits.has_box and self.settings.convention.frame == "tool":
            to_base = quat_to_matrix(pose[1])
        if to_base is not None:
            linear, angular = to_base @ linear, to_base @ angular
        position = None if pose is None else pose[0]
        linear, angular, hits = limit_twist(linear, angular, limits, position, self.period_s)
        self._count(hits)
        if to_base is not None:
            linear, angular = to_base.T @ linear, to_base.T @ angular
        return linear, angular

    def _pose_command(
        self, now_ns: int, row: np.ndarray, fresh: bool, pose: tuple[np.ndarray, np.ndarray]
    ) -> Command:
        position, quat = pose
        if fresh:
            target = compose_pose(position, quat, row, self.settings.convention)
            limits = self.settings.limits
            *target, hits = limit_pose(*target, position, quat, limits, self.period_s)
            self._count(hits)
            self._hold_target = (target[0], target[1])
        elif self._hold_target is None:  # nothing commanded yet: hold where the arm is
            self._hold_target = (np.array(position), np.array(quat, np.float64))
        target_position, target_quat = self._hold_target
        return Command(
            now_ns,
            float(row[GRIPPER_COLUMN]),
            fresh,
            self.stop_reason,
            position=target_position,
            quaternion=target_quat,
        )

    def _count(self, hits: list[str]) -> None:
        for name in hits:
            self.counts[name] += 1

    def _pose_at(self, tick_ns: int) -> tuple[np.ndarray, np.ndarray] | None:
        """The stored pose nearest the tick, within the tolerance."""
        if not self._poses:
            return None
        stamp, position, quat = min(self._poses, key=lambda entry: abs(entry[0] - tick_ns))
        if abs(stamp - tick_ns) > self.settings.tolerance_ns:
            return None
        return position, quat

    def _recent_pose(self, now_ns: int) -> tuple[np.ndarray, np.ndarray] | None:
        if not self._poses:
            return None
        stamp, position, quat = self._poses[-1]
        return (position, quat) if now_ns - stamp <= self.settings.max_pose_age_ns else None
