"""A small, learnable, synthetic reaching task written as an episode store.

For tests, benchmarks and smoke runs of the trainer where robosuite demonstrations would be too
slow to make: the end effector moves towards a goal (`object`) with a proportional controller,
closes the gripper once there, and the cameras see a bright square at the effector's position.
Actions are a deterministic function of the observations, so a policy that learns shows it in
its validation loss.
"""

from __future__ import annotations

import os

import numpy as np

from dp_ros.data.store import EpisodeStore
from dp_ros.keys import (
    ACTION,
    AGENTVIEW_IMAGE,
    EEF_POS,
    EEF_QUAT,
    GRIPPER_QPOS,
    OBJECT_STATE,
    WRIST_IMAGE,
)

# Proportional gain and action scale of the synthetic controller (OSC-like: metres per unit).
GAIN = 0.3
ACTION_SCALE = 0.05
REACHED = 0.02  # metres: the gripper closes within this distance of the goal


def synthetic_episode(
    rng: np.random.Generator,
    length: int,
    cameras: tuple[str, ...] = (),
    image_hw: tuple[int, int] = (84, 84),
) -> dict[str, np.ndarray]:
    """One episode {key: (T, ...)}: low-dim state, optional camera images, 7-D actions."""
    goal = rng.uniform(-0.2, 0.2, size=3)
    pos = np.empty((length, 3))
    actions = np.zeros((length, 7))
    current = rng.uniform(-0.2, 0.2, size=3)
    for t in range(length):
        pos[t] = current
        delta = np.clip(GAIN * (goal - current) / ACTION_SCALE, -1.0, 1.0)
        actions[t, :3] = delta
        actions[t, 6] = 1.0 if np.linalg.norm(goal - current) < REACHED else -1.0
        current = current + delta * ACTION_SCALE
    closed = (actions[:, 6] > 0).astype(np.float64)
    episode = {
        EEF_POS: pos,
        EEF_QUAT: np.tile([1.0, 0.0, 0.0, 0.0], (length, 1)),
        GRIPPER_QPOS: np.stack([0.04 - 0.03 * closed, -0.04 + 0.03 * closed], axis=1),
        OBJECT_STATE: np.tile(goal, (length, 1)),
        ACTION: actions,
    }
    for index, camera in enumerate(cameras):
        episode[camera] = render_dots(pos, image_hw, offset=index)
    return {k: (v if v.dtype == np.uint8 else v.astype(np.float32)) for k, v in episode.items()}


def render_dots(pos: np.ndarray, image_hw: tuple[int, int], offset: int = 0) -> np.ndarray:
    """uint8 (T, H, W, 3) images: dark background, a bright square where x/y (or y/z) point."""
    H, W = image_hw
    T = pos.shape[0]
    images = np.full((T, H, W, 3), 30, dtype=np.uint8)
    axes = (0, 1) if offset % 2 == 0 else (1, 2)
    rows = np.clip(((pos[:, axes[0]] + 0.25) / 0.5 * (H - 1)).astype(int), 2, H - 3)
    cols = np.clip(((pos[:, axes[1]] + 0.25) / 0.5 * (W - 1)).astype(int), 2, W - 3)
    for t in range(T):
        images[t, rows[t] - 2 : rows[t] + 3, cols[t] - 2 : cols[t] + 3] = (230, 200, 40)
    return images


def write_synthetic_store(
    path: str | os.PathLike,
    n_episodes: int,
    length: int = 40,
    cameras: tuple[str, ...] = (),
    image_hw: tuple[int, int] = (84, 84),
    seed: int = 0,
    overwrite: bool = True,
) -> EpisodeStore:
    """Write `n_episodes` synthetic episodes to a new store; returns it open for reading.

    `cameras` picks image keys (e.g. `dp_ros.keys.CAMERA_KEYS`); none gives a low-dim store.
    """
    known = (AGENTVIEW_IMAGE, WRIST_IMAGE)
    unknown = [camera for camera in cameras if camera not in known]
    if unknown:
        raise ValueError(f"cameras {unknown} are not among {list(known)}")
    rng = np.random.default_rng(seed)
    with EpisodeStore.create(path, overwrite=overwrite) as store:
        for index in range(n_episodes):
            episode = synthetic_episode(rng, length, cameras, image_hw)
            store.append_episode(episode, {"task": "synthetic_reach", "seed": seed, "n": index})
    return EpisodeStore.open(path, mode="r")
