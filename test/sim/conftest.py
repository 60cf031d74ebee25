"""Fixtures for the simulation tests: a demonstrator that fails on chosen seeds.

The flaky expert is the real scripted expert, except that on seeds where `seed % 3 == 1` it
never closes the gripper, so the cube is never lifted and the episode runs to its step limit.
Collection must drop exactly those episodes. The worker processes load it by file path
(`dp-collect --expert path.py:function`), since spawned processes cannot import test modules.
"""

from pathlib import Path

import numpy as np
import pytest

from dp_ros.sim.experts import OPEN, make_expert

FLAKY_EXPERT_SPEC = f"{Path(__file__).resolve()}:make_flaky_expert"


def flaky_seed(seed: int) -> bool:
    return seed % 3 == 1


class _NeverGrasps:
    def __init__(self, expert) -> None:
        self._expert = expert

    @property
    def mode_label(self) -> str:
        return self._expert.mode_label

    def reset(self, obs) -> None:
        self._expert.reset(obs)

    def act(self, obs) -> np.ndarray:
        action = self._expert.act(obs)
        action[6] = OPEN
        return action


def make_flaky_expert(task: str, seed: int, noise: float = 0.0, mode: str = "default"):
    expert = make_expert(task, seed, noise=noise, mode=mode)
    return _NeverGrasps(expert) if flaky_seed(seed) else expert


@pytest.fixture(scope="session")
def flaky_expert_spec() -> str:
    """The `expert` factory spec of the flaky expert, loadable in worker processes."""
    return FLAKY_EXPERT_SPEC


@pytest.fixture(scope="session")
def is_flaky_seed():
    """seed -> True where the flaky expert fails."""
    return flaky_seed
