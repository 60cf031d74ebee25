"""The recent messages of every recorded key, and each stream's counts and stamp jumps: the
observation side of episode assembly (ROS-free; the rules are in ``assembler``'s docstring)."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from dp_ros.acting.obs_sync import StampedHistory

if TYPE_CHECKING:  # the assembler imports this module
    from dp_ros.recording.assembler import AssemblyConfig

# Recent intervals a stream's nominal period is estimated from, and how many it takes to trust it.
INTERVAL_WINDOW = 64
MIN_INTERVALS = 5


@dataclass
class StreamStats:
    """Per-key message counts and stamp jumps, kept for the whole session."""

    received: int = 0
    refused: int = 0
    superseded: int = 0
    last_stamp_ns: int | None = None
    gaps: list[tuple[int, int]] = field(default_factory=list)  # (stamp after the gap, gap ns)
    _intervals: deque = field(default_factory=lambda: deque(maxlen=INTERVAL_WINDOW))

    def note(self, stamp_ns: int, gap_factor: float) -> None:
        if self.last_stamp_ns is not None:
            interval = stamp_ns - self.last_stamp_ns
            if len(self._intervals) >= MIN_INTERVALS:
                nominal = float(np.median(self._intervals))
                if interval > gap_factor * nominal:
                    self.gaps.append((stamp_ns, interval))
            self._intervals.append(interval)
        self.last_stamp_ns = stamp_ns
        self.received += 1

    def gaps_between(self, start_ns: int, end_ns: int | None) -> list[tuple[int, int]]:
        return [g for g in self.gaps if g[0] >= start_ns and (end_ns is None or g[0] < end_ns)]


class ObservationBuffer:
    """The recent messages of every recorded key (StampedHistory each) and their statistics."""

    def __init__(self, config: AssemblyConfig) -> None:
        self.config = config
        self.histories = {key: StampedHistory(key, config.history) for key in config.keys}
        self.stats = {key: StreamStats() for key in config.keys}
        self._shapes: dict[str, tuple[tuple[int, ...], np.dtype]] = {}

    def add(self, key: str, stamp_ns: int, value: np.ndarray) -> bool:
        """Record one message; True when it superseded one with the same stamp.

        Raises ValueError for an unknown key, a value whose shape or dtype differs from the
        key's first message, or a stamp older than the key's newest (the message is refused).
        """
        history = self.histories.get(key)
        if history is None:
            raise ValueError(f"unknown observation key {key!r}; recording {list(self.histories)}")
        stats = self.stats[key]
        value = np.asarray(value)
        try:
            self._check_shape(key, value)
            newest = history.newest_stamp_ns
            if newest is not None and stamp_ns == newest:
                # Every pending step with t <= stamp has already picked this key (picks happen
                # as soon as a key's newest stamp reaches t), so the older history is not needed.
                history.clear()
                history.add(stamp_ns, value)
                stats.superseded += 1
                return True
            history.add(stamp_ns, value)
        except ValueError:
            stats.refused += 1
            raise
        stats.note(stamp_ns, self.config.gap_factor)
        return False

    def _check_shape(self, key: str, value: np.ndarray) -> None:
        expected = self._shapes.setdefault(key, (value.shape, value.dtype))
        if (value.shape, value.dtype) != expected:
            raise ValueError(
                f"{key}: message has shape {value.shape} {value.dtype}; earlier messages had "
                f"{expected[0]} {expected[1]}"
            )

    def settled(self, key: str, stamp_ns: int) -> bool:
        """True when no message of `key` nearer to `stamp_ns` than the kept ones can come."""
        newest = self.histories[key].newest_stamp_ns
        return newest is not None and newest >= stamp_ns

    def pick(self, key: str, stamp_ns: int) -> tuple[int, np.ndarray] | None:
        history = self.histories[key]
        return history.nearest(stamp_ns) if len(history) else None
