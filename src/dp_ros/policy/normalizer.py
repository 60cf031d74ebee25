"""Input/output normalisation kept inside the model, so a checkpoint carries it.

Actions and low-dim state are mapped min-max to [-1, 1] per feature, the range the diffusion
sampler clips to (``clip_sample``). Images go from uint8 [0, 255] to float [0, 1]. The affine
maps are registered buffers: they are saved with the weights and moved with ``.to(device)``.

Statistics follow the dataset contract: ``{key: {"min", "max", "mean", "std"}}`` with float32
arrays of the feature size, for every low-dim key and for ``"action"``.

Where the reference implementation (Chi et al.) differs, and why we keep ours: for its image
datasets it leaves quaternions and delta actions unnormalised (identity), and it computes
statistics over all episodes. Here every low-dim feature and action is min-max normalised, so
each action dimension spans the sampler's clip range [-1, 1] whatever share of the controller's
range the demonstrations used (Square's rotation deltas stay within +-0.36 of +-1), and the
diffusion noise is equally large against every dimension's signal. Statistics come from the
training episodes only (SequenceDataset.compute_stats), so the validation loss measures
episodes the model has not seen in any form.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from torch import nn

from dp_ros import keys
from dp_ros.policy.config import ShapeMeta

Stats = Mapping[str, Mapping[str, np.ndarray]]
STAT_NAMES = ("min", "max", "mean", "std")

# A feature whose range is below this is treated as constant: dividing by its range would blow
# its (noise-level) variation up to [-1, 1]. It is centred on 0 instead.
RANGE_EPS = 1e-4


class _Affine(nn.Module):
    """y = x * scale + offset per feature; the inverse undoes it."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.register_buffer("scale", torch.ones(size))
        self.register_buffer("offset", torch.zeros(size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale.to(x.dtype) + self.offset.to(x.dtype)

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        return (y - self.offset.to(y.dtype)) / self.scale.to(y.dtype)


def min_max_affine(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Scale and offset mapping [lo, hi] to [-1, 1]; constant features map to 0."""
    lo = np.asarray(lo, dtype=np.float64)
    hi = np.asarray(hi, dtype=np.float64)
    span = hi - lo
    constant = span < RANGE_EPS
    scale = np.where(constant, 1.0, 2.0 / np.where(constant, 1.0, span))
    offset = np.where(constant, -(lo + hi) / 2.0, -1.0 - lo * scale)
    return scale.astype(np.float32), offset.astype(np.float32)


class Normalizer(nn.Module):
    """Normalises obs and actions for one ``ShapeMeta``.

    Until ``fit`` is called the maps are the identity (so a freshly built policy runs).
    """

    def __init__(self, shape_meta: ShapeMeta) -> None:
        super().__init__()
        self.shape_meta = shape_meta
        self.low_dim = nn.ModuleDict({k: _Affine(n) for k, n in shape_meta.low_dim.items()})
        self.action = _Affine(shape_meta.action_dim)
        self.stats: dict[str, dict[str, np.ndarray]] = {}

    @property
    def stat_keys(self) -> tuple[str, ...]:
        """Keys the statistics must cover: every low-dim key and ``action``."""
        return (*self.shape_meta.low_dim, keys.ACTION)

    def fit(self, stats: Stats) -> None:
        """Set the affine maps from dataset statistics (validated against the shape meta)."""
        checked = validate_stats(stats, self.shape_meta)
        for key in self.stat_keys:
            scale, offset = min_max_affine(checked[key]["min"], checked[key]["max"])
            target = self.action if key == keys.ACTION else self.low_dim[key]
            target.scale.copy_(torch.from_numpy(scale))
            target.offset.copy_(torch.from_numpy(offset))
        self.stats = checked

    def normalize_obs(self, obs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """uint8 images -> float [0, 1]; low-dim -> [-1, 1]. Shapes are unchanged."""
        out: dict[str, torch.Tensor] = {}
        for key in self.shape_meta.rgb:
            image = obs[key]
            out[key] = image.float() / 255.0 if image.dtype == torch.uint8 else image.float()
        for key, affine in self.low_dim.items():
            out[key] = affine(obs[key].float())
        return out

    def normalize_action(self, action: torch.Tensor) -> torch.Tensor:
        return self.action(action)

    def unnormalize_action(self, action: torch.Tensor) -> torch.Tensor:
        return self.action.inverse(action)


def validate_stats(stats: Stats, shape_meta: ShapeMeta) -> dict[str, dict[str, np.ndarray]]:
    """Float32 copies of the statistics, or ValueError naming the missing key or bad shape."""
    sizes = dict(shape_meta.low_dim)
    sizes[keys.ACTION] = shape_meta.action_dim
    out: dict[str, dict[str, np.ndarray]] = {}
    for key, size in sizes.items():
        if key not in stats:
            raise ValueError(f"normaliser stats: missing key {key!r} (need {sorted(sizes)})")
        out[key] = {}
        for name in STAT_NAMES:
            if name not in stats[key]:
                raise ValueError(f"normaliser stats[{key!r}]: missing {name!r}")
            value = np.asarray(stats[key][name], dtype=np.float32)
            if value.shape != (size,):
                raise ValueError(
                    f"normaliser stats[{key!r}][{name!r}]: shape {value.shape}, expected ({size},)"
                )
            if not np.all(np.isfinite(value)):
                raise ValueError(f"normaliser stats[{key!r}][{name!r}]: not finite")
            out[key][name] = value
        if np.any(out[key]["max"] < out[key]["min"]):
            raise ValueError(f"normaliser stats[{key!r}]: max < min")
    return out


def stats_to_jsonable(stats: Stats) -> dict[str, dict[str, list[float]]]:
    return {
        k: {n: np.asarray(v).astype(float).tolist() for n, v in d.items()}
        for k, d in stats.items()
    }


def stats_from_jsonable(
    data: Mapping[str, Mapping[str, list[float]]],
) -> dict[str, dict[str, np.ndarray]]:
    return {k: {n: np.asarray(v, dtype=np.float32) for n, v in d.items()} for k, d in data.items()}
