"""Evaluation hooks for the trainer: factories that return `(checkpoint_dir) -> dict[str, float]`.

Configured by name (`eval.hook: dp_ros.train.hooks.make_offline_eval_hook`), like the simulated
success-rate hook of `dp_ros.sim.evaluate.make_eval_hook`. The offline hook needs no simulator:
it loads the saved checkpoint through the robot-side runtime (`PolicyRunner`, numpy in and out)
and compares its executed actions with the demonstrations of the held-out episodes. It checks
the whole deployment path of a checkpoint (files, normaliser, image layout), not only the
in-memory model the trainer validates.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from dp_ros.data.sequence import SequenceDataset
from dp_ros.keys import is_image_key
from dp_ros.policy.checkpoint import read_checkpoint_json
from dp_ros.policy.runtime import PolicyRunner


def make_offline_eval_hook(
    dataset_path: str | os.PathLike,
    n_windows: int = 16,
    device: str = "cpu",
    seed: int = 0,
) -> Callable[[Path], dict[str, float]]:
    """A hook scoring a checkpoint on up to `n_windows` windows of its validation episodes.

    Returns {"offline_executed_mse": MSE over the executed slice (Ta, Da),
             "offline_chunk_mse": MSE over the whole chunk (T, Da)} in action units.
    The held-out episodes are those the checkpoint's metadata lists (the trainer's split);
    a checkpoint without that list is scored on every episode.
    """

    def evaluate(checkpoint_dir: Path) -> dict[str, float]:
        runner = PolicyRunner.from_checkpoint(checkpoint_dir, device=device, seed=seed)
        windows = _held_out_windows(dataset_path, checkpoint_dir, runner)
        picks = np.linspace(0, len(windows) - 1, min(n_windows, len(windows))).astype(int)
        start, stop = runner.n_obs_steps - 1, runner.n_obs_steps - 1 + runner.n_action_steps
        chunk_errors, executed_errors = [], []
        for index in picks:
            sample = windows[int(index)]
            obs = {key: _to_numpy_obs(key, value) for key, value in sample["obs"].items()}
            runner.reset()
            prediction = runner.predict(obs)
            truth = sample["action"].numpy()
            chunk_errors.append(np.mean((prediction.chunk - truth) ** 2))
            executed_errors.append(np.mean((prediction.executed - truth[start:stop]) ** 2))
        return {
            "offline_executed_mse": float(np.mean(executed_errors)),
            "offline_chunk_mse": float(np.mean(chunk_errors)),
        }

    return evaluate


def _held_out_windows(
    dataset_path: str | os.PathLike, checkpoint_dir: Path, runner: PolicyRunner
) -> SequenceDataset:
    windows = SequenceDataset(
        dataset_path,
        horizon=runner.horizon,
        n_obs_steps=runner.n_obs_steps,
        n_action_steps=runner.n_action_steps,
        obs_keys=list(runner.obs_keys),
        image_cache_bytes=0,  # a few windows: read them from disk
    )
    trainer_meta = read_checkpoint_json(checkpoint_dir).get("metadata", {}).get("trainer", {})
    held_out = np.asarray(trainer_meta.get("val_episodes") or [], dtype=np.int64)
    held_out = held_out[held_out < len(windows.episode_ends)]
    if held_out.size:
        windows.val_episodes = held_out
        windows = windows.get_validation_dataset()
    return windows


def _to_numpy_obs(key: str, value) -> np.ndarray:
    """A dataset obs tensor (To, C, H, W) / (To, D) as the runtime takes it: images HWC."""
    array = value.numpy()
    return np.ascontiguousarray(array.transpose(0, 2, 3, 1)) if is_image_key(key) else array
