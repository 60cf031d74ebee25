"""What every scripted expert shares: its options and how it turns a target into a command.

An expert commands like a teleoperator: a translation toward where it wants the end effector,
clipped to a comfortable speed, with optional Gaussian noise (a shaky hand), and the gripper
exactly open or closed. The units are the simulator's (dp_ros.sim.env, SIM_CONVENTION).
"""

import numpy as np

from dp_ros.acting.action_convention import SIM_CONVENTION

OPEN, CLOSE = -1.0, 1.0
POSITION_SCALE = SIM_CONVENTION.translation_scale  # an action of 1 asks for 5 cm in one step
ROTATION_SCALE = SIM_CONVENTION.rotation_scale  # an action of 1 asks for 0.5 rad in one step
MODES = ("default", "multimodal")


def check_expert_options(mode: str, noise: float) -> None:
    if mode not in MODES:
        raise ValueError(f"mode={mode!r}: must be one of {MODES}")
    if not noise >= 0:  # also refuses NaN
        raise ValueError(f"noise={noise}: must be >= 0")


def translation_command(
    target: np.ndarray,
    eef: np.ndarray,
    max_speed: float,
    noise: float = 0.0,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Action units (3,) that ask for the whole way to `target` in one step, plus noise of std
    `noise` (drawn from `rng`), clipped to +-max_speed: a proportional controller."""
    translation = (np.asarray(target, dtype=np.float64) - eef) / POSITION_SCALE
    if noise:
        translation = translation + rng.normal(0.0, noise, 3)
    return np.clip(translation, -max_speed, max_speed)
