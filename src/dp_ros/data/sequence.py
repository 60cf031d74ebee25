"""Training windows over an episode store: the sample contract of the policy.

A sample is `{"obs": {key: (To, ...)}, "action": (T, Da) float32}` for a window starting at
step s: obs are steps s..s+To-1 and actions s..s+T-1. Windows may start To-1 steps before an
episode and end Ta-1 steps after it, the missing steps repeating the first/last frame, as in
Diffusion Policy: every real step is then the newest observation of some window, and the last
executed chunk (actions[To-1 : To-1+Ta]) of the last window ends exactly with the episode.

Train and validation are split by episode (never by window, which would leak neighbouring
frames into validation). Low-dim arrays are read into memory once; images too when they fit in
`image_cache_bytes`, and otherwise per sample from the store.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import zarr

from dp_ros.data.store import EpisodeStore, StoreError
from dp_ros.keys import ACTION, is_image_key

DEFAULT_IMAGE_CACHE_BYTES = 8 * 1024**3
# Frames per read when filling the image cache: big reads amortise zarr's per-call cost.
CACHE_READ_FRAMES = 1024


def split_episodes(n_episodes: int, val_ratio: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Episode indices (train, val): a seeded random `val_ratio` share held out.

    At least one validation episode when `val_ratio` > 0, and at least one training episode.
    """
    if not 0.0 <= val_ratio < 1.0:
        raise ValueError(f"val_ratio must be in [0, 1), got {val_ratio}")
    n_val = 0
    if val_ratio > 0 and n_episodes > 1:
        n_val = min(max(1, round(n_episodes * val_ratio)), n_episodes - 1)
    rng = np.random.default_rng(seed)
    val = np.sort(rng.choice(n_episodes, size=n_val, replace=False)).astype(np.int64)
    train = np.setdiff1d(np.arange(n_episodes, dtype=np.int64), val)
    return train, val


def make_windows(
    episode_ends: np.ndarray,
    episodes: np.ndarray,
    horizon: int,
    pad_before: int,
    pad_after: int,
) -> np.ndarray:
    """(M, 3) int64 rows (window start frame, episode start, episode end) over `episodes`.

    Start frames are global (into data/) and may lie up to `pad_before` frames before the
    episode start; windows end at most `pad_after` frames past the episode end. An episode
    shorter than horizon - pad_before - pad_after frames gives no window.
    """
    rows = []
    for index in episodes:
        end = int(episode_ends[index])
        start = int(episode_ends[index - 1]) if index > 0 else 0
        first = start - pad_before
        last = end - horizon + pad_after  # inclusive
        if last < first:
            continue
        starts = np.arange(first, last + 1, dtype=np.int64)
        rows.append(np.stack([starts, np.full_like(starts, start), np.full_like(starts, end)], 1))
    if not rows:
        return np.zeros((0, 3), dtype=np.int64)
    return np.concatenate(rows)


class SequenceDataset(torch.utils.data.Dataset):
    """Windows of `horizon` steps over the training episodes of an episode store.

    Args:
        store: an `EpisodeStore` or the path of one.
        horizon: T, actions per sample.
        n_obs_steps: To, observation steps per sample (the first To steps of the window).
        n_action_steps: Ta, steps executed per chunk; sets the padding after an episode end.
        obs_keys: observation keys to return (default: every key but `action`).
        val_ratio: share of episodes held out for `get_validation_dataset()`.
        seed: seed of the episode split.
        max_train_episodes: keep at most this many training episodes (seeded choice).
        image_cache_bytes: load images into memory when they take at most this many bytes.
    """

    def __init__(
        self,
        store: EpisodeStore | str | os.PathLike,
        horizon: int,
        n_obs_steps: int,
        n_action_steps: int,
        obs_keys: Sequence[str] | None = None,
        val_ratio: float = 0.0,
        seed: int = 42,
        max_train_episodes: int | None = None,
        image_cache_bytes: int = DEFAULT_IMAGE_CACHE_BYTES,
    ) -> None:
        _check_window(horizon, n_obs_steps, n_action_steps)
        if not isinstance(store, EpisodeStore):
            store = EpisodeStore.open(store, mode="r")
        # One snapshot of the committed episodes: a writer appending meanwhile changes nothing.
        self.episode_ends = store.episode_ends
        if self.episode_ends.size == 0:
            raise StoreError(f"dataset {store.path} is empty: it has no finished episodes")
        self.path = store.path
        self.horizon = horizon
        self.n_obs_steps = n_obs_steps
        self.n_action_steps = n_action_steps
        self.obs_keys = _choose_obs_keys(store, obs_keys)
        self.train_episodes, self.val_episodes = split_episodes(
            len(self.episode_ends), val_ratio, seed
        )
        if max_train_episodes is not None and max_train_episodes < len(self.train_episodes):
            rng = np.random.default_rng(seed)
            chosen = rng.choice(self.train_episodes, size=max_train_episodes, replace=False)
            self.train_episodes = np.sort(chosen)
        n_frames = int(self.episode_ends[-1])
        self._low_dim = {
            key: np.asarray(store.array(key, n_frames)[:n_frames], dtype=np.float32)
            for key in (*self.obs_keys, ACTION)
            if not is_image_key(key)
        }
        self._images = _load_images(store, self.obs_keys, n_frames, image_cache_bytes)
        self.episodes = self.train_episodes
        self._windows = self._windows_for(self.train_episodes)
        if len(self._windows) == 0:
            raise StoreError(
                f"dataset {store.path} gives no training window: every training episode is "
                f"shorter than horizon - (n_obs_steps - 1) - (n_action_steps - 1) = "
                f"{horizon - (n_obs_steps - 1) - (n_action_steps - 1)} frames"
            )

    # ---- views -----------------------------------------------------------------------------

    def _windows_for(self, episodes: np.ndarray) -> np.ndarray:
        return make_windows(
            self.episode_ends,
            episodes,
            self.horizon,
            pad_before=self.n_obs_steps - 1,
            pad_after=self.n_action_steps - 1,
        )

    def get_validation_dataset(self) -> SequenceDataset:
        """The same windows over the held-out episodes (shares the loaded arrays; may be empty)."""
        view = copy.copy(self)
        view.episodes = self.val_episodes
        view._windows = self._windows_for(self.val_episodes)
        return view

    @property
    def images_in_memory(self) -> bool:
        return all(isinstance(source, np.ndarray) for source in self._images.values())

    @property
    def shape_meta(self) -> dict[str, Any]:
        """Shape meta of the returned samples: images (C, H, W) "rgb", low-dim (D,) "low_dim"."""
        obs = {}
        for key in self.obs_keys:
            if is_image_key(key):
                shape = _chw_shape(self._images[key])
                obs[key] = {"shape": list(shape), "type": "rgb"}
            else:
                obs[key] = {"shape": list(self._low_dim[key].shape[1:]), "type": "low_dim"}
        return {"obs": obs, "action": {"shape": list(self._low_dim[ACTION].shape[1:])}}

    def compute_stats(self) -> dict[str, dict[str, np.ndarray]]:
        """Normaliser statistics (min, max, mean, std; float32) of low-dim keys and `action`.

        Computed over every frame of the training episodes only, so validation stays unseen.
        """
        frames = np.concatenate([np.arange(*self._episode_span(i)) for i in self.train_episodes])
        stats = {}
        for key, values in self._low_dim.items():
            selected = values[frames].reshape(len(frames), -1).astype(np.float64)
            stats[key] = {
                "min": selected.min(axis=0),
                "max": selected.max(axis=0),
                "mean": selected.mean(axis=0),
                "std": selected.std(axis=0),
            }
            feature_shape = values.shape[1:]
            stats[key] = {
                name: value.astype(np.float32).reshape(feature_shape)
                for name, value in stats[key].items()
            }
        return stats

    def _episode_span(self, index: int) -> tuple[int, int]:
        start = int(self.episode_ends[index - 1]) if index > 0 else 0
        return start, int(self.episode_ends[index])

    # ---- samples ---------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._windows)

    def window_indices(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Global frame indices (obs (To,), action (T,)) of window `index`, edges clamped."""
        start, episode_start, episode_end = self._windows[index]
        obs = np.clip(start + np.arange(self.n_obs_steps), episode_start, episode_end - 1)
        action = np.clip(start + np.arange(self.horizon), episode_start, episode_end - 1)
        return obs, action

    def __getitem__(self, index: int) -> dict[str, Any]:
        obs_frames, action_frames = self.window_indices(index)
        obs = {}
        for key in self.obs_keys:
            if is_image_key(key):
                obs[key] = torch.from_numpy(_read_images(self._images[key], obs_frames))
            else:
                obs[key] = torch.from_numpy(self._low_dim[key][obs_frames])
        return {"obs": obs, "action": torch.from_numpy(self._low_dim[ACTION][action_frames])}


def _check_window(horizon: int, n_obs_steps: int, n_action_steps: int) -> None:
    if horizon < 1:
        raise ValueError(f"horizon must be >= 1, got {horizon}")
    if not 1 <= n_obs_steps <= horizon:
        raise ValueError(f"n_obs_steps must be in [1, horizon={horizon}], got {n_obs_steps}")
    limit = horizon - n_obs_steps + 1
    if not 1 <= n_action_steps <= limit:
        raise ValueError(
            f"n_action_steps must be in [1, horizon - n_obs_steps + 1 = {limit}], "
            f"got {n_action_steps}"
        )


def _choose_obs_keys(store: EpisodeStore, obs_keys: Sequence[str] | None) -> tuple[str, ...]:
    available = store.keys
    if ACTION not in available:
        raise StoreError(f"dataset {store.path} has no {ACTION!r} array (keys: {list(available)})")
    if obs_keys is None:
        return tuple(key for key in available if key != ACTION)
    if isinstance(obs_keys, str):
        raise TypeError("obs_keys must be a sequence of keys, not one string")
    missing = [key for key in obs_keys if key not in available]
    if missing:
        raise StoreError(
            f"obs key(s) {missing} not in dataset {store.path} (it has {list(available)})"
        )
    if ACTION in obs_keys or not obs_keys:
        raise StoreError(f"obs_keys must be non-empty and must not hold {ACTION!r}: {obs_keys}")
    return tuple(obs_keys)


def _load_images(
    store: EpisodeStore, obs_keys: tuple[str, ...], n_frames: int, cache_bytes: int
) -> dict[str, np.ndarray | zarr.Array]:
    """Images per key: (N, C, H, W) uint8 in memory when they fit, else the zarr array."""
    arrays = {key: store.array(key, n_frames) for key in obs_keys if is_image_key(key)}
    total = sum(n_frames * int(np.prod(array.shape[1:])) for array in arrays.values())
    if total > cache_bytes:
        return arrays
    images = {}
    for key, array in arrays.items():
        H, W, C = array.shape[1:]
        cached = np.empty((n_frames, C, H, W), dtype=np.uint8)
        for start in range(0, n_frames, CACHE_READ_FRAMES):
            stop = min(start + CACHE_READ_FRAMES, n_frames)
            cached[start:stop] = array[start:stop].transpose(0, 3, 1, 2)
        images[key] = cached
    return images


def _chw_shape(source: np.ndarray | zarr.Array) -> tuple[int, int, int]:
    if isinstance(source, np.ndarray):
        return tuple(source.shape[1:])
    H, W, C = source.shape[1:]
    return C, H, W


def _read_images(source: np.ndarray | zarr.Array, frames: np.ndarray) -> np.ndarray:
    """uint8 (To, C, H, W) frames from the cache or, lazily, from the store."""
    if isinstance(source, np.ndarray):
        return source[frames]
    low, high = int(frames.min()), int(frames.max()) + 1
    block = source[low:high]  # one contiguous read; padding repeats frames inside it
    return np.ascontiguousarray(block[frames - low].transpose(0, 3, 1, 2))
