"""The parts of a policy config: image encoder, U-Net, transformer, noise schedule, sampler and
consistency distillation, each a frozen dataclass that validates itself in ``__post_init__``
(an error names the field, the value and the rule it broke). ``dp_ros.policy.config`` puts
them together in ``PolicyConfig``.
"""

from __future__ import annotations

from dataclasses import dataclass

from dp_ros.policy.shape_meta import choice, is_int, positive_int, require

SAMPLERS = ("ddpm", "ddim", "consistency")
BACKBONES = ("resnet18",)
IMAGE_RANGES = ("unit", "symmetric")
BETA_SCHEDULES = ("squaredcos_cap_v2", "linear", "scaled_linear")
PREDICTION_TYPES = ("epsilon", "sample")

# Channel width of the first ResNet-18 stage at full size (torchvision's resnet18).
FULL_RESNET_WIDTH = 64


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
