"""Hold instead of acting on inputs far outside what the policy was trained on (ROS-free).

The normaliser's statistics record each low-dim input's range in the training data, per
feature. A finite but absurd input (a position of 1e6 m, a pose in another frame) is scaled by
that range into a huge normalised value and the policy answers with full-magnitude actions; the
output guard cannot tell those from real ones. The input guard measures how far each feature
lies outside [min, max], in units of that feature's range (max - min), and refuses an
observation whose worst feature lies further out than the margin. Images are not guarded (their
values are bounded by their dtype).

A feature that was constant in training has a range of zero; its unit is then `MIN_SPAN`, so
noise on it does not count as infinitely far out.
"""

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

MIN_SPAN = 1e-2


@dataclass(frozen=True)
class OutOfRange:
    """The worst feature of an observation outside the guard: which input and by how much."""

    key: str
    index: int
    value: float
    excess: float  # distance outside [low, high], in training ranges
    low: float
    high: float

    @property
    def reason(self) -> str:
        return (
            f"input {self.key}[{self.index}]={self.value:.4g} is {self.excess:.3g} training "
            f"ranges outside [{self.low:.4g}, {self.high:.4g}]; holding"
        )


class InputGuard:
    """Per-feature training bounds of the guarded keys and the margin that trips the guard."""

    def __init__(self, bounds: Mapping[str, tuple[np.ndarray, np.ndarray]], margin: float) -> None:
        if margin <= 0:
            raise ValueError(f"input guard margin={margin}: must be > 0 (0 means no guard)")
        self.margin = float(margin)
        self.bounds = {
            key: (np.asarray(low, np.float64), np.asarray(high, np.float64))
            for key, (low, high) in bounds.items()
        }

    @classmethod
    def from_stats(
        cls, stats: Mapping[str, Mapping[str, np.ndarray]], obs_keys, margin: float
    ) -> "InputGuard | None":
        """A guard over the `obs_keys` that have statistics; None when `margin` is 0 or none
        has (a policy saved without a normaliser)."""
        bounds = {
            key: (stats[key]["min"], stats[key]["max"])
            for key in obs_keys
            if key in stats and "min" in stats[key] and "max" in stats[key]
        }
        if margin <= 0 or not bounds:
            return None
        return cls(bounds, margin)

    def worst(self, values: Mapping[str, np.ndarray]) -> OutOfRange | None:
        """The feature furthest outside its training range (None if all lie inside it).

        values[key] is (To, D) or (D,); every step counts."""
        found: OutOfRange | None = None
        for key, (low, high) in self.bounds.items():
            value = np.asarray(values[key], np.float64).reshape(-1, low.size)
            span = np.maximum(high - low, MIN_SPAN)
            excess = np.maximum(low - value, value - high) / span  # (To, D); <= 0 inside
            step, index = np.unravel_index(int(np.argmax(excess)), excess.shape)
            if excess[step, index] > 0 and (found is None or excess[step, index] > found.excess):
                found = OutOfRange(
                    key,
                    int(index),
                    float(value[step, index]),
                    float(excess[step, index]),
                    float(low[index]),
                    float(high[index]),
                )
        return found

    def check(self, values: Mapping[str, np.ndarray]) -> OutOfRange | None:
        """The worst feature if it lies further out than the margin, else None."""
        worst = self.worst(values)
        return worst if worst is not None and worst.excess > self.margin else None
