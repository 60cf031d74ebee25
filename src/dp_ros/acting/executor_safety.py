"""The chunk executor's safety layer, ROS-free: workspace box and speed caps on each command,
and the watchdog on the policy's status (code moved out of chunk_executor.py, not changed).
"""

from dataclasses import dataclass

import numpy as np

from dp_ros.acting.action_convention import (
    matrix_to_quat,
    matrix_to_rotvec,
    quat_to_matrix,
    rotvec_to_matrix,
)

NS = 1_000_000_000


@dataclass(frozen=True)
class SafetyLimits:
    """Workspace box (base frame, m; both empty: no box) and speed caps (m/s, rad/s)."""

    workspace_min: tuple[float, ...] = ()
    workspace_max: tuple[float, ...] = ()
    max_linear_speed: float = 0.5
    max_angular_speed: float = 2.0

    def __post_init__(self) -> None:
        if len(self.workspace_min) != len(self.workspace_max) or len(self.workspace_min) not in (
            0,
            3,
        ):
            raise ValueError(
                f"workspace_min={list(self.workspace_min)}, workspace_max="
                f"{list(self.workspace_max)}: give both as [x, y, z] (or both empty: no box)"
            )
        if self.has_box and not np.all(np.less(self.workspace_min, self.workspace_max)):
            raise ValueError(
                f"workspace_min={list(self.workspace_min)} must be below workspace_max="
                f"{list(self.workspace_max)} on every axis"
            )
        for name in ("max_linear_speed", "max_angular_speed"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name}={getattr(self, name)!r}: must be > 0")

    @property
    def has_box(self) -> bool:
        return len(self.workspace_min) == 3


def limit_twist(
    linear: np.ndarray,
    angular: np.ndarray,
    limits: SafetyLimits,
    position: np.ndarray | None,
    period_s: float,
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Velocities (base frame) kept inside the limits, and the names of the limits hit.

    Box: a component that would carry `position` past a face within one period is cut to reach
    the face; outside the box, motion further out is zeroed and motion back in is left as it
    is (never forced). Speed: a norm above its cap scales the vector down, keeping direction.
    """
    linear, angular, hits = np.array(linear, np.float64), np.array(angular, np.float64), []
    if limits.has_box and position is not None:
        low = np.minimum((np.asarray(limits.workspace_min) - position) / period_s, 0.0)
        high = np.maximum((np.asarray(limits.workspace_max) - position) / period_s, 0.0)
        boxed = np.clip(linear, low, high)
        if not np.allclose(boxed, linear, rtol=0, atol=1e-12):
            hits.append("workspace_hits")
        linear = boxed
    linear = _cap_norm(linear, limits.max_linear_speed, "linear_speed_hits", hits)
    angular = _cap_norm(angular, limits.max_angular_speed, "angular_speed_hits", hits)
    return linear, angular, hits


def limit_pose(
    target_position: np.ndarray,
    target_quat: np.ndarray,
    position: np.ndarray,
    quat: np.ndarray,
    limits: SafetyLimits,
    period_s: float,
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """A pose target kept inside the box and within one period's travel of the current pose."""
    target_position, hits = np.array(target_position, np.float64), []
    if limits.has_box:
        boxed = np.clip(target_position, limits.workspace_min, limits.workspace_max)
        if not np.allclose(boxed, target_position, rtol=0, atol=1e-12):
            hits.append("workspace_hits")
        target_position = boxed
    step = _cap_norm(
        target_position - position, limits.max_linear_speed * period_s, "linear_speed_hits", hits
    )
    current = quat_to_matrix(quat)
    turn = matrix_to_rotvec(quat_to_matrix(target_quat) @ current.T)
    capped = _cap_norm(turn, limits.max_angular_speed * period_s, "angular_speed_hits", hits)
    if capped is not turn:
        target_quat = matrix_to_quat(rotvec_to_matrix(capped) @ current)
    return np.asarray(position, np.float64) + step, np.asarray(target_quat, np.float64), hits


def _cap_norm(vector: np.ndarray, cap: float, counter: str, hits: list[str]) -> np.ndarray:
    norm = float(np.linalg.norm(vector))
    if norm <= cap * (1 + 1e-9):
        return vector
    hits.append(counter)
    return vector * (cap / norm)


class Watchdog:
    """Says why the arm must stop ("" when it need not): the policy's status is missing, stale
    (no message for longer than the timeout), or has not said ACTING for longer than it."""

    def __init__(self, timeout_ns: int) -> None:
        if timeout_ns <= 0:
            raise ValueError(f"watchdog timeout {timeout_ns} ns: must be > 0")
        self.timeout_ns = timeout_ns
        self._last_status_ns: int | None = None
        self._last_acting_ns: int | None = None

    def policy_status(self, acting: bool, now_ns: int) -> None:
        self._last_status_ns = now_ns
        if acting:
            self._last_acting_ns = now_ns

    @property
    def has_acted(self) -> bool:
        return self._last_acting_ns is not None

    def reason(self, now_ns: int) -> str:
        if self._last_status_ns is None:
            return "no policy status received"
        silent = now_ns - self._last_status_ns
        if silent > self.timeout_ns:
            return f"policy status stale: none for {silent / NS:.2f} s"
        if self._last_acting_ns is None:
            return "policy has not been ACTING"
        idle = now_ns - self._last_acting_ns
        if idle > self.timeout_ns:
            return f"policy not ACTING for {idle / NS:.2f} s"
        return ""
