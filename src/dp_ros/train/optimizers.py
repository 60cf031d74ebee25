"""The trainer's optimiser and learning-rate schedule (``optim`` section of the config)."""

from __future__ import annotations

from typing import Any

import torch

from dp_ros.policy import DiffusionPolicy
from dp_ros.train.config import OptimConfig


def make_optimizer(policy: DiffusionPolicy, optim: OptimConfig) -> torch.optim.AdamW:
    """AdamW over `parameter_groups` with the config's rate, betas and eps."""
    return torch.optim.AdamW(
        parameter_groups(policy, optim),
        lr=optim.lr,
        betas=tuple(optim.betas),
        eps=optim.eps,
        weight_decay=optim.weight_decay,
    )


def parameter_groups(policy: DiffusionPolicy, optim: OptimConfig) -> list[dict[str, Any]]:
    """AdamW's parameter groups: one, at optim.weight_decay; with a transformer denoiser its
    weight matrices at optim.transformer_weight_decay and its biases, LayerNorms and position
    embeddings at 0, as the reference implementation groups them (the rest, e.g. the camera
    encoders, at optim.weight_decay)."""
    if policy.config.denoiser != "transformer":
        return [{"params": list(policy.parameters()), "weight_decay": optim.weight_decay}]
    decayed, kept = policy.denoiser.weight_decay_split()
    in_denoiser = {id(parameter) for parameter in policy.denoiser.parameters()}
    rest = [p for p in policy.parameters() if id(p) not in in_denoiser]
    groups = [
        {"params": decayed, "weight_decay": optim.transformer_weight_decay},
        {"params": kept, "weight_decay": 0.0},
        {"params": rest, "weight_decay": optim.weight_decay},
    ]
    return [group for group in groups if group["params"]]


def make_lr_scheduler(optimizer, optim: OptimConfig, total_steps: int):
    """Linear warm-up over optim.warmup_steps, then cosine decay to 0 at total_steps (or a
    constant rate), stepped once per optimiser step."""
    from diffusers.optimization import (
        get_constant_schedule_with_warmup,
        get_cosine_schedule_with_warmup,
    )

    if optim.schedule == "cosine":
        return get_cosine_schedule_with_warmup(optimizer, optim.warmup_steps, total_steps)
    return get_constant_schedule_with_warmup(optimizer, optim.warmup_steps)
