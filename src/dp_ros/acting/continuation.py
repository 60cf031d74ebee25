"""Which rows of the next chunk continue the current one: inpainting continuation, ROS-free.

While the next chunk is computed, the robot keeps executing the current one. Sampling the next
chunk from fresh noise lets it start somewhere else (another mode of a multimodal policy, or just
another sample): a jerk at the seam, or a route switch half-way. Real-Time Chunking (Black et
al., 2025) instead treats the next chunk as inpainting: the rows that will execute before it can
take over are frozen to the current chunk's values, and a further overlap is guided towards it
with weights that decay to zero. Here that plan is made on stamps:

    horizon rows of the new chunk      j = 0 .. T-1, instant  obs_newest + (j - (To-1)) dt
    committed (current) chunk rows     the same instants where it covers them
    frozen   (weight 1)                instants before `freeze_until` = the inference's start
                                       + its measured latency in whole steps + the driver's
                                       exec_latency: rows the robot executes from the current
                                       chunk whatever the new one says
    overlap  (weights 1 -> 0)          the next `overlap_steps` rows the current chunk covers
    free     (weight 0)                the rest

The first row the new chunk drives is not frozen but guided (the first overlap weight): freezing
it too (one more step, as a "lead") halved two-route Lift's success in a latency-free closed loop
(18/40 against 30/40 with the overlap; 13/40 without continuation), because that row is then the
old chunk's prediction from Ta steps back, with no say for the newest observation.
The sampler (``DiffusionPolicy.sample_normalized`` with ``HeldRows``) does the inpainting.
"""

import math
from dataclasses import dataclass

import numpy as np

from dp_ros.acting.chunk_timing import TimedChunk
from dp_ros.policy.runtime import HeldActions

CONTINUATION_MODES = ("none", "inpaint")
# hard: frozen rows only; linear / exponential: frozen rows plus an overlap whose weights decay
# from 1 to 0 (exponential: RTC's shape, steep at the far end of the overlap).
WEIGHT_SCHEDULES = ("hard", "linear", "exponential")


@dataclass(frozen=True)
class ContinuationConfig:
    mode: str = "none"
    overlap_steps: int = 8
    schedule: str = "linear"

    def __post_init__(self) -> None:
        if self.mode not in CONTINUATION_MODES:
            raise ValueError(f"continuation={self.mode!r}: must be one of {CONTINUATION_MODES}")
        if self.schedule not in WEIGHT_SCHEDULES:
            raise ValueError(
                f"continuation_schedule={self.schedule!r}: must be one of {WEIGHT_SCHEDULES}"
            )
        if self.overlap_steps < 0:
            raise ValueError(f"overlap_steps={self.overlap_steps}: must be >= 0")

    @property
    def enabled(self) -> bool:
        return self.mode == "inpaint"


def overlap_weights(n: int, schedule: str) -> np.ndarray:
    """(n,) weights strictly between 0 and 1, decaying with the row's distance from the frozen
    rows; empty for the `hard` schedule."""
    if schedule == "hard" or n == 0:
        return np.zeros(0, dtype=np.float32)
    remaining = 1.0 - np.arange(1, n + 1, dtype=np.float64) / (n + 1)  # (n..1)/(n+1)
    if schedule == "exponential":
        remaining = remaining * np.expm1(remaining) / (math.e - 1.0)
    return remaining.astype(np.float32)


def plan_held_actions(
    committed: TimedChunk | None,
    horizon_first_ns: int,
    horizon: int,
    freeze_until_ns: int,
    config: ContinuationConfig,
) -> HeldActions | None:
    """The held actions of a new chunk whose row j executes at horizon_first_ns + j * period
    (the committed chunk's period), or None when nothing is held (continuation off, no current
    chunk, or no overlap with it)."""
    if not config.enabled or committed is None:
        return None
    period = committed.period_ns
    action_dim = committed.rows.shape[1]
    actions = np.zeros((horizon, action_dim), dtype=np.float32)
    weights = np.zeros(horizon, dtype=np.float32)
    soft = overlap_weights(config.overlap_steps, config.schedule)
    n_soft = 0
    for j in range(horizon):
        instant = horizon_first_ns + j * period
        index = round((instant - committed.first_stamp_ns) / period)
        if not 0 <= index < len(committed.rows):
            continue
        if abs(committed.stamp_of(index) - instant) > period // 2:
            continue  # the two chunks' instants are not on one grid here
        if instant < freeze_until_ns:
            weights[j] = 1.0
        elif n_soft < len(soft):
            weights[j] = soft[n_soft]
            n_soft += 1
        else:
            continue
        actions[j] = committed.rows[index]
    if not weights.any():
        return None
    return HeldActions(actions=actions, weights=weights)


def freeze_until(start_ns: int, latency_ns: int, period_ns: int, margin_ns: int = 0) -> int:
    """Rows before this instant execute from the current chunk before the new one takes over:
    the inference's measured latency rounded up to whole steps, plus `margin_ns` (the driver's
    exec_latency: rows due within it are not offered, so the current chunk plays them)."""
    latency_steps = -(-latency_ns // period_ns)  # ceil
    return start_ns + latency_steps * period_ns + margin_ns
