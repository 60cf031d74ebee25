"""When each action of a chunk executes: the policy side (stamping) and the driver side (playing).

Timing model (Diffusion Policy's real-robot scheme). The policy predicts T actions for the
instants t0, t0 + dt, ... where the observation instants are t0 .. t0 + (To-1) dt. The rows
offered start at index To-1 (the executed slice Ta, or the rest of the horizon), so row k belongs
to the instant `newest_obs + k * dt`. By the time
inference finishes, the first rows' instants have passed; publishing them would make a driver
execute them late. So the publisher drops every row whose instant is not after
`now + exec_latency`, and stamps the chunk with the instant of the first row it keeps.

A driver plays a chunk one row per control tick at each row's instant, drops rows whose instant
has passed unplayed, lets a newer chunk replace whatever is left of an older one, and holds
(zero motion, last gripper command) when nothing is left.
"""

from dataclasses import dataclass

import numpy as np

GRIPPER_COLUMN = 6  # the 7-D action's last column is the gripper command


@dataclass(frozen=True)
class TimedChunk:
    """Rows (N, Da) of actions; row i executes at first_stamp_ns + i * period_ns."""

    first_stamp_ns: int
    period_ns: int
    rows: np.ndarray

    def __post_init__(self) -> None:
        if self.rows.ndim != 2 or len(self.rows) == 0:
            raise ValueError(f"TimedChunk.rows has shape {self.rows.shape}: expected (N>0, Da)")
        if self.period_ns <= 0:
            raise ValueError(f"TimedChunk.period_ns={self.period_ns}: must be > 0")

    def stamp_of(self, row: int) -> int:
        return self.first_stamp_ns + row * self.period_ns


def schedule_executed_actions(
    executed: np.ndarray, newest_obs_ns: int, period_ns: int, now_ns: int, exec_latency_ns: int
) -> TimedChunk | None:
    """Stamp the offered rows (N, Da) from the newest observation's instant on, dropping rows
    that would execute late.

    Row k belongs to `newest_obs_ns + k * period_ns`; rows whose instant lies before
    `now_ns + exec_latency_ns` are dropped. A row at exactly that instant is kept: on a simulated
    clock, `now` is the step the simulator has published but not yet executed (its clock moves on
    only after a step), so that row can still be applied. Returns None when every row is late.
    """
    instants = newest_obs_ns + np.arange(len(executed), dtype=np.int64) * period_ns
    keep = instants >= now_ns + exec_latency_ns
    if not keep.any():
        return None
    first = int(np.argmax(keep))
    return TimedChunk(int(instants[first]), period_ns, executed[first:])


class ChunkPlayer:
    """A robot driver's view of incoming chunks: which action to apply at each control tick.

    A row is due at a tick when its instant lies within half a control period of the tick.
    Rows whose instant lies before that window were missed: they are dropped and counted.
    """

    def __init__(self, control_period_ns: int, action_dim: int = 7) -> None:
        if control_period_ns <= 0:
            raise ValueError(f"control_period_ns={control_period_ns}: must be > 0")
        self.control_period_ns = control_period_ns
        self.action_dim = action_dim
        self._chunk: TimedChunk | None = None
        self._next_row = 0
        self._gripper = -1.0  # open until told otherwise
        self.dropped_rows = 0
        self.played_rows = 0

    def submit(self, chunk: TimedChunk) -> None:
        """A newer chunk replaces whatever is left of the current one."""
        if chunk.rows.shape[1] != self.action_dim:
            raise ValueError(
                f"chunk has {chunk.rows.shape[1]} action columns; driver expects {self.action_dim}"
            )
        self._chunk = chunk
        self._next_row = 0

    def clear(self) -> None:
        """Forget the pending chunk (e.g. on reset); the next tick holds."""
        self._chunk = None
        self._next_row = 0
        self._gripper = -1.0

    @property
    def pending_rows(self) -> int:
        return 0 if self._chunk is None else len(self._chunk.rows) - self._next_row

    def set_gripper(self, command: float) -> None:
        """A command applied from elsewhere (teleop) sets the gripper state holds keep."""
        self._gripper = float(command)

    def hold_action(self) -> np.ndarray:
        """Zero motion with the last commanded gripper state."""
        action = np.zeros(self.action_dim, dtype=np.float32)
        action[GRIPPER_COLUMN] = self._gripper
        return action

    def action_at(self, tick_ns: int) -> tuple[np.ndarray, bool]:
        """(action, True) for the row due at this tick, or (hold action, False) if none is."""
        half = self.control_period_ns // 2
        chunk = self._chunk
        while chunk is not None and self._next_row < len(chunk.rows):
            instant = chunk.stamp_of(self._next_row)
            if instant < tick_ns - half:  # its window has passed unplayed
                self._next_row += 1
                self.dropped_rows += 1
                continue
            if instant < tick_ns + half:
                row = chunk.rows[self._next_row].astype(np.float32)
                self._next_row += 1
                self.played_rows += 1
                self._gripper = float(row[GRIPPER_COLUMN])
                return row, True
            break  # the next row is for a later tick
        return self.hold_action(), False
