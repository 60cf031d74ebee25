"""Golden outputs: the sampler's numbers for seeded tiny policies with seeded weights.

``test/policy/golden/tiny_policy.json`` pins them, so a change to the model, the normaliser,
the sampler or a dependency (torch, diffusers) that moves the sampled actions is noticed.
After a deliberate change, regenerate the file and say why in the commit:

    .venv/bin/python -m dp_ros.policy.golden test/policy/golden/tiny_policy.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import diffusers
import numpy as np
import torch

from dp_ros import keys
from dp_ros.policy.config import ConsistencyConfig, PolicyConfig, SamplerConfig, tiny_config
from dp_ros.policy.policy import DiffusionPolicy, make_policy
from dp_ros.policy.shape_meta import image_shape_meta

WEIGHT_SEED = 1234
OBS_SEED = 7
SAMPLE_SEED = 0
BATCH = 2
# (denoiser, sampler, steps) cases; few steps keep the file small and the test fast. The
# consistency case is a (seeded, untrained) few-step student: its chained steps on an 8-point grid.
CASES = (
    ("unet", "ddim", 4),
    ("unet", "ddpm", 4),
    ("transformer", "ddim", 4),
    ("unet", "consistency", 2),
)


def golden_config(denoiser: str, sampler: str = "ddim") -> PolicyConfig:
    """Tiny image + low-dim policy on 40x40 images, To=2, T=8, Ta=4 (a consistency student
    when `sampler` is "consistency")."""
    meta = image_shape_meta(image_hw=(40, 40))
    config = tiny_config(meta, denoiser=denoiser, horizon=8, n_action_steps=4)
    if sampler != "consistency":
        return config
    return config.replace(
        objective="consistency",
        sampler=SamplerConfig(name="consistency", num_inference_steps=2),
        consistency=ConsistencyConfig(teacher="golden", teacher_steps=8),
    )


def golden_stats(config: PolicyConfig) -> dict[str, dict[str, np.ndarray]]:
    """Fixed, hand-written statistics (one constant feature to exercise the guard)."""
    meta = config.shape_meta
    sizes = {**meta.low_dim, keys.ACTION: meta.action_dim}
    stats = {}
    for key, size in sizes.items():
        lo = -np.linspace(0.5, 1.5, size, dtype=np.float32)
        hi = np.linspace(0.5, 2.0, size, dtype=np.float32)
        hi[0] = lo[0]  # a constant feature
        stats[key] = {"min": lo, "max": hi, "mean": (lo + hi) / 2, "std": (hi - lo) / 4}
    return stats


def golden_policy(denoiser: str, sampler: str = "ddim") -> DiffusionPolicy:
    """Weights drawn from a fixed seed without touching the caller's global RNG state."""
    config = golden_config(denoiser, sampler)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(WEIGHT_SEED)
        policy = make_policy(config, golden_stats(config))
    return policy.eval()


def golden_obs(config: PolicyConfig) -> dict[str, torch.Tensor]:
    """Seeded obs batch: uint8 images (B, To, C, H, W), float low-dim (B, To, D)."""
    rng = np.random.default_rng(OBS_SEED)
    meta, To = config.shape_meta, config.n_obs_steps
    obs: dict[str, torch.Tensor] = {}
    for key, shape in meta.rgb.items():
        obs[key] = torch.from_numpy(rng.integers(0, 256, (BATCH, To, *shape), dtype=np.uint8))
    for key, size in meta.low_dim.items():
        obs[key] = torch.from_numpy(rng.uniform(-1, 1, (BATCH, To, size)).astype(np.float32))
    return obs


def sample_case(policy: DiffusionPolicy, sampler: str, steps: int) -> np.ndarray:
    """action_pred (B, T, Da) for the golden obs and sample seed."""
    generator = torch.Generator().manual_seed(SAMPLE_SEED)
    with torch.inference_mode():
        out = policy.predict_action(
            golden_obs(policy.config), generator, num_inference_steps=steps, sampler=sampler
        )
    return out["action_pred"].numpy()


def compute_golden() -> dict[str, Any]:
    cases = []
    for denoiser, sampler, steps in CASES:
        policy = golden_policy(denoiser, sampler)
        action_pred = sample_case(policy, sampler, steps)
        cases.append(
            {
                "denoiser": denoiser,
                "sampler": sampler,
                "num_inference_steps": steps,
                "action_pred": action_pred.astype(float).tolist(),
            }
        )
    return {
        "generated_with": {"torch": torch.__version__, "diffusers": diffusers.__version__},
        "seeds": {"weights": WEIGHT_SEED, "obs": OBS_SEED, "sample": SAMPLE_SEED},
        "cases": cases,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", type=Path, help="JSON file to write")
    args = parser.parse_args(argv)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(compute_golden(), indent=1) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
