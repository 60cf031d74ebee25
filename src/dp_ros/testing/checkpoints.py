"""Tiny real checkpoints for tests and benchmarks of the parts around the policy.

The policy is untrained but real: same code path, same files, same loading checks as a trained
one. Its normaliser spans [-1, 1] for every low-dim key and the action, so its sampled actions
stay within the action limit.
"""

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from dp_ros.keys import ACTION
from dp_ros.policy.checkpoint import save_policy
from dp_ros.policy.config import ShapeMeta, tiny_config
from dp_ros.policy.policy import make_policy
from dp_ros.policy.shape_meta import image_shape_meta


def unit_stats(shape_meta: ShapeMeta) -> dict[str, dict[str, np.ndarray]]:
    """Normaliser statistics spanning [-1, 1] for every low-dim key and the action."""
    sizes = dict(shape_meta.low_dim)
    sizes[ACTION] = shape_meta.action_dim
    return {
        key: {
            "min": -np.ones(size, np.float32),
            "max": np.ones(size, np.float32),
            "mean": np.zeros(size, np.float32),
            "std": np.ones(size, np.float32),
        }
        for key, size in sizes.items()
    }


def make_tiny_checkpoint(
    path: str | Path,
    shape_meta: ShapeMeta | None = None,
    seed: int = 0,
    metadata: Mapping | None = None,
    **config_overrides,
) -> Path:
    """Write a tiny untrained policy checkpoint (two 84x84 cameras + 9-D state by default)."""
    meta = shape_meta or image_shape_meta()
    torch.manual_seed(seed)
    policy = make_policy(tiny_config(meta, **config_overrides), unit_stats(meta))
    return save_policy(policy, path, metadata=dict(metadata or {"purpose": "test"}))
