"""Scripted demonstrations: the sim's state topics -> one observation per instant -> an expert.

The state arrives as separate messages (pose, gripper, object) stamped with the same instant.
StateAssembler joins them per stamp; the expert (dp_ros.sim.experts) maps each joined state to a
7-D action. ROS-free.
"""

from collections.abc import Sequence
from typing import Protocol

import numpy as np

# Instants kept while waiting for their last message (older partial states are dropped).
PENDING_INSTANTS = 8


class Expert(Protocol):
    def reset(self) -> None: ...

    def act(self, observation: dict[str, np.ndarray]) -> np.ndarray: ...


class StateAssembler:
    """Joins per-key messages that share a stamp into one observation dict."""

    def __init__(self, keys: Sequence[str]) -> None:
        self.keys = tuple(keys)
        self._pending: dict[int, dict[str, np.ndarray]] = {}

    def add(self, stamp_ns: int, values: dict[str, np.ndarray]) -> dict[str, np.ndarray] | None:
        """Add messages of one instant; the full observation once every key has arrived.

        A key arriving again for the same instant replaces the earlier value and, once the
        instant is complete, yields the observation again (a reset re-publishes its instant).
        """
        state = self._pending.setdefault(int(stamp_ns), {})
        state.update(values)
        if len(self._pending) > PENDING_INSTANTS:
            for stamp in sorted(self._pending)[:-PENDING_INSTANTS]:
                del self._pending[stamp]
        if all(key in state for key in self.keys):
            return {key: state[key] for key in self.keys}
        return None


def load_expert(task: str, mode: str = "default", seed: int = 0) -> Expert:
    """The scripted expert of `task` from dp_ros.sim.experts (`seed`: its route choices)."""
    from dp_ros.sim import experts

    return experts.make_expert(task, seed=seed, mode=mode)
