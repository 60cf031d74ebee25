"""Seeded random inputs for a policy: statistics, obs and batches of the contract's shapes.

For tests here and in other parts (dataset, trainer, nodes) that need a real policy fed with
well-formed data, with ``config.tiny_config`` and ``policy.make_policy``.
"""

from __future__ import annotations

import numpy as np
import torch

from dp_ros import keys
from dp_ros.policy.config import ShapeMeta


def random_stats(meta: ShapeMeta, seed: int = 0) -> dict[str, dict[str, np.ndarray]]:
    """Normaliser statistics for every low-dim key and ``action`` (min < max everywhere)."""
    rng = np.random.default_rng(seed)
    sizes = {**meta.low_dim, keys.ACTION: meta.action_dim}
    stats = {}
    for key, size in sizes.items():
        lo = rng.uniform(-2.0, 0.0, size).astype(np.float32)
        hi = lo + rng.uniform(0.5, 2.0, size).astype(np.float32)
        stats[key] = {"min": lo, "max": hi, "mean": (lo + hi) / 2, "std": (hi - lo) / 4}
    return stats


def random_obs(meta: ShapeMeta, B: int, To: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Model-side obs: uint8 images (B, To, C, H, W), float32 low-dim (B, To, D)."""
    gen = torch.Generator().manual_seed(seed)
    obs = {}
    for key, shape in meta.rgb.items():
        obs[key] = torch.randint(0, 256, (B, To, *shape), generator=gen, dtype=torch.uint8)
    for key, size in meta.low_dim.items():
        obs[key] = torch.randn(B, To, size, generator=gen)
    return obs


def random_numpy_obs(meta: ShapeMeta, To: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Runner-side obs: uint8 images (To, H, W, C), float32 low-dim (To, D)."""
    obs = random_obs(meta, 1, To, seed)
    out = {}
    for key, value in obs.items():
        array = value[0].numpy()
        out[key] = np.ascontiguousarray(array.transpose(0, 2, 3, 1)) if key in meta.rgb else array
    return out


def random_batch(meta: ShapeMeta, B: int, To: int, T: int, seed: int = 0) -> dict:
    """A training batch ``{"obs": {key: (B, To, ...)}, "action": (B, T, Da)}``."""
    gen = torch.Generator().manual_seed(seed + 1)
    return {
        "obs": random_obs(meta, B, To, seed),
        "action": torch.randn(B, T, meta.action_dim, generator=gen),
    }
