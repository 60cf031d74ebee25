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

from dp_ros.policy.shape_meta import (
    ShapeMeta,
    choice,
    is_int,
    positive_int,
    require,
)

DENOISERS = ("unet", "transformer")
# diffusion: the policy. regression: the same encoder and network trained with plain MSE to output
# the chunk in one pass (fixed zero input, step 0): the baseline that averages modes.
OBJECTIVES = ("diffusion", "regression", "consistency")
SAMPLERS = ("ddpm", "ddim", "consistency")
# The samplers each objective's network can run: a consistency student predicts clean chunks,
# a diffusion network noise; the regression baseline ignores the sampler.
SAMPLERS_OF_OBJECTIVE = {
    "diffusion": ("ddpm", "ddim"),
    "regression": SAMPLERS,
    "consistency": ("consistency",),
}
BACKBONES = ("resnet18",)
IMAGE_RANGES = ("unit", "symmetric")
BETA_SCHEDULES = ("squaredcos_cap_v2", "linear", "scaled_linear")
PREDICTION_TYPES = ("epsilon", "sample")

# Channel width of the first ResNet-18 stage at full size (torchvision's resnet18).
FULL_RESNET_WIDTH = 64

_C = TypeVar("_C")


# --------------------------------------------------------------------------------------------
# Components
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EncoderConfig:
    """Image encoder: ResNet-18 (GroupNorm) + spatial softmax + linear, per camera or shared.

    ``width`` is the channel count of the first stage (64 = the standard ResNet-18, 11.18M
    parameters); smaller widths make CPU tests and CPU training feasible.
    ``crop_shape`` (H, W) is the random-crop size in training and the centre-crop size in
    evaluation; None disables cropping.
    ``image_range``: pixels enter the trunk in [0, 1] ("unit") or [-1, 1] ("symmetric", the
    reference implementation's). ``projection_relu``: a ReLU after each camera's projection,
    as robomimic's encoder (the paper's) has. The defaults are this project's original choices,
    so checkpoints written before these fields existed load unchanged.
    """

    backbone: str = "resnet18"
    width: int = FULL_RESNET_WIDTH
    share_rgb_model: bool = False
    num_keypoints: int = 32
    feature_dim: int = 64
    crop_shape: tuple[int, int] | None = (76, 76)
    image_range: str = "unit"
    projection_relu: bool = False

    def __post_init__(self) -> None:
        owner = "EncoderConfig"
        choice(owner, "backbone", self.backbone, BACKBONES)
        # GroupNorm uses width/16 groups at the first stage, so the width must divide by 16.
        require(
            is_int(self.width) and self.width >= 16 and self.width % 16 == 0,
            owner,
            "width",
            self.width,
            "must be a positive multiple of 16",
        )
        require(isinstance(self.share_rgb_model, bool), owner, "share_rgb_model", None, "bool")
        choice(owner, "image_range", self.image_range, IMAGE_RANGES)
        require(isinstance(self.projection_relu, bool), owner, "projection_relu", None, "bool")
        positive_int(owner, "num_keypoints", self.num_keypoints)
        positive_int(owner, "feature_dim", self.feature_dim)
        if self.crop_shape is not None:
            crop = tuple(self.crop_shape)
            object.__setattr__(self, "crop_shape", crop)
            require(
                len(crop) == 2 and all(is_int(c) and c > 0 for c in crop),
                owner,
                "crop_shape",
                crop,
                "must be (H, W) of positive ints or None",
            )


@dataclass(frozen=True)
class UnetConfig:
    """1-D temporal U-Net with FiLM conditioning (DP-C)."""

    down_dims: tuple[int, ...] = (256, 512, 1024)
    kernel_size: int = 5
    n_groups: int = 8
    diffusion_step_embed_dim: int = 256

    def __post_init__(self) -> None:
        owner = "UnetConfig"
        dims = tuple(self.down_dims)
        object.__setattr__(self, "down_dims", dims)
        require(len(dims) >= 1, owner, "down_dims", dims, "needs at least one level")
        positive_int(owner, "n_groups", self.n_groups)
        for dim in dims:
            require(
                is_int(dim) and dim > 0 and dim % self.n_groups == 0,
                owner,
                "down_dims",
                dims,
                f"every entry must be a positive multiple of n_groups={self.n_groups}",
            )
        require(
            is_int(self.kernel_size) and self.kernel_size % 2 == 1 and self.kernel_size > 0,
            owner,
            "kernel_size",
            self.kernel_size,
            "must be a positive odd int (keeps the length)",
        )
        require(
            is_int(self.diffusion_step_embed_dim)
            and self.diffusion_step_embed_dim > 0
            and self.diffusion_step_embed_dim % 2 == 0,
            owner,
            "diffusion_step_embed_dim",
            self.diffusion_step_embed_dim,
            "must be a positive even int (sin/cos halves)",
        )


@dataclass(frozen=True)
class TransformerConfig:
    """Transformer denoiser (DP-T): causal self-attention over action tokens, cross-attention
    to the time token and the obs tokens."""

    n_layer: int = 8
    n_head: int = 4
    n_emb: int = 256
    n_cond_layers: int = 0
    p_drop_emb: float = 0.0
    p_drop_attn: float = 0.3
    causal_attn: bool = True

    def __post_init__(self) -> None:
        owner = "TransformerConfig"
        positive_int(owner, "n_layer", self.n_layer)
        positive_int(owner, "n_head", self.n_head)
        positive_int(owner, "n_emb", self.n_emb)
        require(
            self.n_emb % self.n_head == 0 and self.n_emb % 2 == 0,
            owner,
            "n_emb",
            self.n_emb,
            f"must be even and divisible by n_head={self.n_head}",
        )
        require(
            is_int(self.n_cond_layers) and self.n_cond_layers >= 0,
            owner,
            "n_cond_layers",
            self.n_cond_layers,
            "must be an int >= 0",
        )
        for name in ("p_drop_emb", "p_drop_attn"):
            value = getattr(self, name)
            require(0.0 <= value < 1.0, owner, name, value, "must be in [0, 1)")
        require(isinstance(self.causal_attn, bool), owner, "causal_attn", None, "must be bool")


@dataclass(frozen=True)
class NoiseConfig:
    """Forward (training) noise schedule, handed to diffusers' schedulers."""

    num_train_timesteps: int = 100
    beta_schedule: str = "squaredcos_cap_v2"
    beta_start: float = 0.0001
    beta_end: float = 0.02
    prediction_type: str = "epsilon"
    clip_sample: bool = True

    def __post_init__(self) -> None:
        owner = "NoiseConfig"
        positive_int(owner, "num_train_timesteps", self.num_train_timesteps)
        choice(owner, "beta_schedule", self.beta_schedule, BETA_SCHEDULES)
        choice(owner, "prediction_type", self.prediction_type, PREDICTION_TYPES)
        require(
            0.0 < self.beta_start < self.beta_end < 1.0,
            owner,
            "beta_start",
            (self.beta_start, self.beta_end),
            "needs 0 < beta_start < beta_end < 1",
        )
        require(isinstance(self.clip_sample, bool), owner, "clip_sample", None, "must be bool")


@dataclass(frozen=True)
class SamplerConfig:
    """Reverse process used by ``predict_action``.

    DDIM with 16 steps is the default because a robot needs an answer in well under a second:
    on this machine's CPU, DDPM-100 takes 4.1 s and DDIM-16 0.69 s for the image policy
    (DESIGN.md). Both use ``timestep_spacing="trailing"`` so that few-step sampling starts
    from the noisiest step (with "leading", 1-step DDIM runs at t=0).
    """

    name: str = "ddim"
    num_inference_steps: int = 16

    def __post_init__(self) -> None:
        choice("SamplerConfig", "name", self.name, SAMPLERS)
        positive_int("SamplerConfig", "num_inference_steps", self.num_inference_steps)


@dataclass(frozen=True)
class ConsistencyConfig:
    """Few-step student distilled from a diffusion teacher (``objective: consistency``).

    ``teacher``: the teacher's checkpoint directory (read by the trainer only; kept here as the
    student's provenance). ``teacher_steps``: DDIM steps of the teacher's ODE, which are also
    the student's time grid (its chained steps are taken from it). ``bank_noises``: teacher
    solutions computed per training window before training (dp_ros.train.teacher_bank);
    ``first_step_share``: share of them that start from pure noise (what one-step sampling
    sees), the rest start from data noised to the chained steps' grid points.
    """

    teacher: str = ""
    teacher_steps: int = 16
    first_step_share: float = 0.5
    bank_noises: int = 8

    def __post_init__(self) -> None:
        owner = "ConsistencyConfig"
        positive_int(owner, "teacher_steps", self.teacher_steps)
        positive_int(owner, "bank_noises", self.bank_noises)
        require(
            0.0 <= self.first_step_share <= 1.0,
            owner,
            "first_step_share",
            self.first_step_share,
            "must be in [0, 1]",
        )


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
