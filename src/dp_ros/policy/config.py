"""Typed, validated configuration of a Diffusion Policy.

Every dataclass validates itself in ``__post_init__``; an error names the field, the value and
the rule it broke (DESIGN.md style rule 4). Configs round-trip through JSON-able dicts with
``to_dict`` / ``from_dict``; ``from_dict`` refuses fields it does not know, so a checkpoint
written by a different version of this code fails loudly instead of loading half a config.

Defaults follow Chi et al. (RSS 2023): To=2, T=16, Ta=8, DDPM with 100 training steps on the
``squaredcos_cap_v2`` schedule predicting epsilon, a ResNet-18 per camera with GroupNorm and
spatial-softmax pooling on 76x76 random crops of 84x84 images, and a 1-D temporal U-Net with
down_dims [256, 512, 1024].
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from dp_ros.policy.component_configs import (
    SAMPLERS,
    ConsistencyConfig,
    EncoderConfig,
    NoiseConfig,
    SamplerConfig,
    TransformerConfig,
    UnetConfig,
)
from dp_ros.policy.shape_meta import ShapeMeta, choice, positive_int, require

DENOISERS = ("unet", "transformer")
# diffusion: the policy. regression: the same encoder and network trained with plain MSE to output
# the chunk in one pass (fixed zero input, step 0): the baseline that averages modes.
OBJECTIVES = ("diffusion", "regression", "consistency")
# The samplers each objective's network can run: a consistency student predicts clean chunks,
# a diffusion network noise; the regression baseline ignores the sampler.
SAMPLERS_OF_OBJECTIVE = {
    "diffusion": ("ddpm", "ddim"),
    "regression": SAMPLERS,
    "consistency": ("consistency",),
}

_C = TypeVar("_C")


# --------------------------------------------------------------------------------------------
# Whole policy
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PolicyConfig:
    """Everything needed to build a ``DiffusionPolicy`` (weights and statistics aside).

    Shapes: To = ``n_obs_steps``, T = ``horizon``, Ta = ``n_action_steps``,
    Da = ``shape_meta.action_dim``.
    """

    shape_meta: ShapeMeta
    n_obs_steps: int = 2
    horizon: int = 16
    n_action_steps: int = 8
    denoiser: str = "unet"
    objective: str = "diffusion"
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    unet: UnetConfig = field(default_factory=UnetConfig)
    transformer: TransformerConfig = field(default_factory=TransformerConfig)
    noise: NoiseConfig = field(default_factory=NoiseConfig)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    consistency: ConsistencyConfig = field(default_factory=ConsistencyConfig)

    def __post_init__(self) -> None:
        owner = "PolicyConfig"
        if isinstance(self.shape_meta, Mapping):
            object.__setattr__(self, "shape_meta", ShapeMeta.from_dict(self.shape_meta))
        require(
            isinstance(self.shape_meta, ShapeMeta), owner, "shape_meta", None, "must be ShapeMeta"
        )
        for name in ("n_obs_steps", "horizon", "n_action_steps"):
            positive_int(owner, name, getattr(self, name))
        limit = self.horizon - self.n_obs_steps + 1
        require(
            self.n_action_steps <= limit,
            owner,
            "n_action_steps",
            self.n_action_steps,
            f"must be <= horizon - n_obs_steps + 1 = {self.horizon} - {self.n_obs_steps} + 1"
            f" = {limit}",
        )
        choice(owner, "denoiser", self.denoiser, DENOISERS)
        choice(owner, "objective", self.objective, OBJECTIVES)
        if self.denoiser == "unet":
            factor = 2 ** (len(self.unet.down_dims) - 1)
            require(
                self.horizon % factor == 0,
                owner,
                "horizon",
                self.horizon,
                f"must be divisible by 2**(len(unet.down_dims)-1) = {factor} (U-Net halves it)",
            )
        self._check_crop()
        require(
            self.sampler.num_inference_steps <= self.noise.num_train_timesteps,
            owner,
            "sampler.num_inference_steps",
            self.sampler.num_inference_steps,
            f"must be <= noise.num_train_timesteps = {self.noise.num_train_timesteps}",
        )
        self._check_sampler_fits_objective()

    def _check_sampler_fits_objective(self) -> None:
        owner = "PolicyConfig"
        allowed = SAMPLERS_OF_OBJECTIVE[self.objective]
        require(
            self.sampler.name in allowed,
            owner,
            "sampler.name",
            self.sampler.name,
            f"objective {self.objective!r} samples with one of {allowed}",
        )
        if self.objective == "consistency":
            steps = self.consistency.teacher_steps
            require(
                steps <= self.noise.num_train_timesteps,
                owner,
                "consistency.teacher_steps",
                steps,
                f"must be <= noise.num_train_timesteps = {self.noise.num_train_timesteps}",
            )
            require(
                self.sampler.num_inference_steps <= steps,
                owner,
                "sampler.num_inference_steps",
                self.sampler.num_inference_steps,
                f"a consistency student chains at most consistency.teacher_steps = {steps}",
            )

    def _check_crop(self) -> None:
        crop = self.encoder.crop_shape
        if crop is None:
            return
        for key, (_, height, width) in self.shape_meta.rgb.items():
            require(
                crop[0] <= height and crop[1] <= width,
                "PolicyConfig",
                "encoder.crop_shape",
                crop,
                f"must fit inside {key} (H, W) = ({height}, {width})",
            )

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict (tuples become lists); ``from_dict`` inverts it."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[f.name] = _to_jsonable(value)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PolicyConfig:
        """Build from ``to_dict`` output, refusing unknown fields at every level."""
        _refuse_unknown(cls, data)
        kwargs: dict[str, Any] = dict(data)
        kwargs["shape_meta"] = ShapeMeta.from_dict(data["shape_meta"])
        for name, sub in _SUB_CONFIGS.items():
            if name in data:
                kwargs[name] = _sub_from_dict(sub, data[name])
        return cls(**kwargs)

    def replace(self, **changes: Any) -> PolicyConfig:
        """A validated copy with some fields changed."""
        return dataclasses.replace(self, **changes)


_SUB_CONFIGS: dict[str, type] = {
    "encoder": EncoderConfig,
    "unet": UnetConfig,
    "transformer": TransformerConfig,
    "noise": NoiseConfig,
    "sampler": SamplerConfig,
    "consistency": ConsistencyConfig,
}


def _to_jsonable(value: Any) -> Any:
    if isinstance(value, ShapeMeta):
        return value.to_dict()
    if dataclasses.is_dataclass(value):
        return {f.name: _to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple | list):
        return [_to_jsonable(v) for v in value]
    return value


def _refuse_unknown(cls: type, data: Mapping[str, Any]) -> None:
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    require(not unknown, cls.__name__, "fields", unknown, f"unknown; known: {sorted(known)}")


def _sub_from_dict(cls: type[_C], data: Mapping[str, Any]) -> _C:
    require(isinstance(data, Mapping), cls.__name__, "(dict)", data, "must be a dict")
    _refuse_unknown(cls, data)
    kwargs = dict(data)
    for name, value in kwargs.items():
        if isinstance(value, list):
            kwargs[name] = tuple(value)
    return cls(**kwargs)


# --------------------------------------------------------------------------------------------
# Ready-made configs
# --------------------------------------------------------------------------------------------


def _as_shape_meta(shape_meta: ShapeMeta | Mapping[str, Any]) -> ShapeMeta:
    return shape_meta if isinstance(shape_meta, ShapeMeta) else ShapeMeta.from_dict(shape_meta)


def tiny_config(
    shape_meta: ShapeMeta | Mapping[str, Any],
    denoiser: str = "unet",
    n_obs_steps: int = 2,
    horizon: int = 16,
    n_action_steps: int = 8,
    **overrides: Any,
) -> PolicyConfig:
    """A small policy config that builds and runs in well under a second on CPU.

    For tests of other parts (dataset, trainer, nodes) that need a real policy, not a good one.
    Images are cropped to about 90% of their size, as 76/84 in the paper.
    """
    meta = _as_shape_meta(shape_meta)
    crop = None
    if meta.rgb:
        min_h = min(shape[1] for shape in meta.rgb.values())
        min_w = min(shape[2] for shape in meta.rgb.values())
        crop = (max(1, math.floor(min_h * 0.9)), max(1, math.floor(min_w * 0.9)))
    kwargs: dict[str, Any] = dict(
        shape_meta=meta,
        n_obs_steps=n_obs_steps,
        horizon=horizon,
        n_action_steps=n_action_steps,
        denoiser=denoiser,
        encoder=EncoderConfig(width=16, num_keypoints=8, feature_dim=16, crop_shape=crop),
        unet=UnetConfig(
            down_dims=(32, 64), kernel_size=3, n_groups=8, diffusion_step_embed_dim=32
        ),
        transformer=TransformerConfig(n_layer=2, n_head=2, n_emb=32, p_drop_attn=0.0),
        sampler=SamplerConfig(name="ddim", num_inference_steps=4),
    )
    kwargs.update(overrides)
    return PolicyConfig(**kwargs)
