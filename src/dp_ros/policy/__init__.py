"""Diffusion Policy core (ROS-free): config, model, checkpoints and the numpy runtime.

Modules, along the data path:
  shape_meta  ShapeMeta (what a policy reads and writes) and the shared validation rules
  config      validated dataclasses (PolicyConfig, UnetConfig, ...), ``tiny_config``
  normalizer  min-max to [-1, 1] for low-dim and actions, uint8 -> [0, 1] for images
  vision      ResNet-18 (GroupNorm) + spatial softmax per camera -> obs features
  unet        1-D temporal U-Net with FiLM (DP-C)
  matmul_layers  batch-1 CPU replacements for its layers (matrix products, fp16 weights)
  transformer causal transformer denoiser (DP-T)
  schedulers  diffusers DDPM/DDIM schedules and the EMA of weights
  policy      DiffusionPolicy: compute_loss / predict_action, ``make_policy``
  checkpoint  save_policy / load_policy (safetensors + JSON, never pickle)
  runtime     PolicyRunner / ActionPrediction for robots, sim and evaluation
"""

from dp_ros.policy.checkpoint import CheckpointError, load_policy, save_policy
from dp_ros.policy.config import (
    EncoderConfig,
    NoiseConfig,
    PolicyConfig,
    SamplerConfig,
    TransformerConfig,
    UnetConfig,
    tiny_config,
)
from dp_ros.policy.policy import DiffusionPolicy, make_policy
from dp_ros.policy.runtime import ActionPrediction, PolicyRunner
from dp_ros.policy.schedulers import EMA
from dp_ros.policy.shape_meta import ConfigError, ShapeMeta

__all__ = [
    "EMA",
    "ActionPrediction",
    "CheckpointError",
    "ConfigError",
    "DiffusionPolicy",
    "EncoderConfig",
    "NoiseConfig",
    "PolicyConfig",
    "PolicyRunner",
    "SamplerConfig",
    "ShapeMeta",
    "TransformerConfig",
    "UnetConfig",
    "load_policy",
    "make_policy",
    "save_policy",
    "tiny_config",
]
