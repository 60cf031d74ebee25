"""Numpy-in, numpy-out policy API for robots, the simulator and evaluation.

``PolicyRunner`` wraps a ``DiffusionPolicy`` for batch-1 inference: it checks every observation
against the shape meta (raising ValueError that names the key, and what was expected and got),
converts images from (To, H, W, C) uint8 to the model's (1, To, C, H, W), runs the sampler under
``torch.inference_mode`` with its own seeded generator, and returns float32 numpy arrays.

Shapes: To obs steps, T horizon, Ta executed steps, Da action dim.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from dp_ros.policy.checkpoint import load_policy
from dp_ros.policy.matmul_layers import use_matmul_layers
from dp_ros.policy.policy import DiffusionPolicy, HeldRows

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune")


@dataclass(frozen=True)
class ActionPrediction:
    """One inference result: the whole chunk (T, Da) and its executed slice (Ta, Da).

    ``executed`` is ``chunk[To-1 : To-1+Ta]``: its first row is the action for the step of the
    latest observation.
    """

    chunk: np.ndarray
    executed: np.ndarray


@dataclass(frozen=True)
class HeldActions:
    """Actions a new chunk must continue (inpainting): ``actions`` (T, Da) in the policy's
    action units for the horizon's rows, ``weights`` (T,) in [0, 1]: 1 freezes a row to its
    action, less guides it softly, 0 leaves it free (its action is then ignored)."""

    actions: np.ndarray
    weights: np.ndarray


def resolve_dtype(dtype: str | torch.dtype | None) -> torch.dtype:
    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPES:
        raise ValueError(f"dtype={dtype!r} is invalid: must be one of {sorted(DTYPES)}")
    return DTYPES[dtype]


def reduced_precision_is_fast(device: torch.device) -> bool:
    """Whether bf16 weights can be expected to speed inference up on this device.

    On CPU that needs oneDNN's bf16 kernels (AVX512-BF16 or AMX); without them torch falls back
    to slow reference convolutions (measured on an AVX2-only host: the image encoder went from
    0.4 s in fp32 to 6.5 s in bf16).
    """
    if device.type != "cpu":
        return True
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


class PolicyRunner:
    """Batch-1 inference for one policy on one device.

    ``dtype="bfloat16"`` converts the encoder and denoiser weights (the normaliser and the
    sampler stay float32); on a CPU with bf16 kernels that halves DDIM-16 latency at a cost of
    at most ~0.04 (of [-1, 1]) in the sampled actions (DESIGN.md); on one without them it is
    slower, and the runner warns. ``compile`` wraps the denoiser in ``torch.compile`` with that
    mode ("reduce-overhead" captures CUDA graphs on a GPU). ``matmul_convolutions`` (default: on
    a CPU) computes the denoiser's 1-D convolutions and transposed convolutions as matrix
    products (``matmul_layers``): the same numbers to float rounding, faster at batch 1 here.
    ``half_weights`` (CPU only; implies matmul) stores the denoiser's weights in fp16 packed for
    fbgemm, with fp32 activations: image DDIM-16 0.86 -> 0.36 s on this 2-core AVX2 host,
    actions within 3.3e-3 of fp32 (bench/bench_policy_latency.py prints both). The runner owns
    the policy it is given: it converts it in place.
    """

    def __init__(
        self,
        policy: DiffusionPolicy,
        device: str | torch.device = "cpu",
        num_inference_steps: int | None = None,
        seed: int = 0,
        dtype: str | torch.dtype | None = None,
        sampler: str | None = None,
        compile: str | None = None,
        matmul_convolutions: bool | None = None,
        half_weights: bool = False,
    ) -> None:
        self.device = torch.device(device)
        self.dtype = resolve_dtype(dtype)
        if half_weights and (self.device.type != "cpu" or self.dtype != torch.float32):
            raise ValueError(
                f"half_weights is for float32 policies on a CPU, not dtype={self.dtype} on "
                f"{self.device}"
            )
        self.half_weights = half_weights
        self.policy = policy.to(self.device).eval()
        if self.dtype != torch.float32:
            if not reduced_precision_is_fast(self.device):
                warnings.warn(
                    f"dtype={self.dtype} on a CPU without bf16 kernels (AVX512-BF16/AMX) is "
                    "slower than float32 here, not faster",
                    RuntimeWarning,
                    stacklevel=2,
                )
            self.policy.to_compute_dtype(self.dtype)
        if matmul_convolutions is None:  # the default: where it is faster (the CPU)
            matmul_convolutions = self.device.type == "cpu"
        if matmul_convolutions or half_weights:
            use_matmul_layers(self.policy.denoiser, half_weights)
        if compile is not None:
            if compile not in COMPILE_MODES:
                raise ValueError(f"compile={compile!r} is invalid: must be one of {COMPILE_MODES}")
            self.policy.denoiser = torch.compile(self.policy.denoiser, mode=compile)
        self.num_inference_steps = num_inference_steps or policy.config.sampler.num_inference_steps
        self.sampler = sampler or policy.config.sampler.name
        self.seed = seed
        self.generator = torch.Generator(device=self.device)
        self.last_latency_s: float | None = None
        self.reset()

    @classmethod
    def from_checkpoint(
        cls,
        path: str | os.PathLike,
        device: str | torch.device = "cpu",
        num_inference_steps: int | None = None,
        seed: int = 0,
        **kwargs: Any,
    ) -> PolicyRunner:
        """Load a checkpoint directory (see ``dp_ros.policy.checkpoint``) and wrap it."""
        policy = load_policy(path, device)
        return cls(policy, device, num_inference_steps=num_inference_steps, seed=seed, **kwargs)

    # ---------------------------------------------------------------------------------------
    # Shape information
    # ---------------------------------------------------------------------------------------

    @property
    def n_obs_steps(self) -> int:
        return self.policy.n_obs_steps

    @property
    def n_action_steps(self) -> int:
        return self.policy.n_action_steps

    @property
    def horizon(self) -> int:
        return self.policy.horizon

    @property
    def action_dim(self) -> int:
        return self.policy.config.shape_meta.action_dim

    @property
    def shape_meta(self) -> dict[str, Any]:
        """The shape meta in its JSON convention (images listed as (C, H, W))."""
        return self.policy.config.shape_meta.to_dict()

    @property
    def obs_keys(self) -> tuple[str, ...]:
        return self.policy.config.shape_meta.obs_keys

    def expected_obs_shapes(self) -> dict[str, tuple[int, ...]]:
        """{key: shape} of the numpy obs ``predict`` takes: images (To, H, W, C), low-dim
        (To, D)."""
        meta = self.policy.config.shape_meta
        To = self.n_obs_steps
        shapes: dict[str, tuple[int, ...]] = {}
        for key, (C, H, W) in meta.rgb.items():
            shapes[key] = (To, H, W, C)
        for key, size in meta.low_dim.items():
            shapes[key] = (To, size)
        return shapes

    # ---------------------------------------------------------------------------------------
    # Inference
    # ---------------------------------------------------------------------------------------

    def reset(self) -> None:
        """Re-seed the sampler's generator: the next episode's samples repeat this one's."""
        self.generator.manual_seed(self.seed)

    def warmup(self) -> ActionPrediction:
        """One prediction on dummy obs (first-call allocations, compilation), then reset."""
        meta = self.policy.config.shape_meta
        obs: dict[str, np.ndarray] = {}
        for key, shape in self.expected_obs_shapes().items():
            if key in meta.rgb:
                obs[key] = np.zeros(shape, dtype=np.uint8)
            else:
                obs[key] = np.zeros(shape, dtype=np.float32)
        prediction = self.predict(obs)
        self.reset()
        return prediction

    def predict(
        self, obs: Mapping[str, np.ndarray], held: HeldActions | None = None
    ) -> ActionPrediction:
        """obs {key: (To, ...)} numpy (images uint8 (To, H, W, C), low-dim float (To, D)) ->
        ``ActionPrediction(chunk=(T, Da), executed=(Ta, Da))``, float32. Extra keys are
        ignored. ``held`` inpaints the rows it weights (``HeldActions``); the chunk's frozen
        rows (weight 1) are returned exactly as given."""
        batch = self._to_batch(obs)
        start = time.perf_counter()
        with torch.inference_mode():
            result = self.policy.predict_action(
                batch,
                generator=self.generator,
                num_inference_steps=self.num_inference_steps,
                sampler=self.sampler,
                held=self._held_rows(held),
            )
            chunk = result["action_pred"][0].float().cpu().numpy()
        self.last_latency_s = time.perf_counter() - start
        if held is not None:  # unnormalising the held targets rounds: give back the originals
            frozen = held.weights >= 1.0
            chunk[frozen] = held.actions[frozen]
        start_index = self.n_obs_steps - 1
        executed = chunk[start_index : start_index + self.n_action_steps]
        return ActionPrediction(chunk=chunk.copy(), executed=executed.copy())

    def _held_rows(self, held: HeldActions | None) -> HeldRows | None:
        if held is None:
            return None
        shape = (self.horizon, self.action_dim)
        if held.actions.shape != shape or held.weights.shape != (self.horizon,):
            raise ValueError(
                f"held actions {held.actions.shape} / weights {held.weights.shape}: expected "
                f"{shape} / ({self.horizon},)"
            )
        actions = torch.from_numpy(np.asarray(held.actions, dtype=np.float32)).to(self.device)
        values = self.policy.normalizer.normalize_action(actions[None])
        weights = torch.from_numpy(np.asarray(held.weights, dtype=np.float32)).to(self.device)
        return HeldRows(values=values, weights=weights)

    def _to_batch(self, obs: Mapping[str, np.ndarray]) -> dict[str, torch.Tensor]:
        validate_obs(obs, self.expected_obs_shapes(), self.policy.config.shape_meta.rgb)
        batch: dict[str, torch.Tensor] = {}
        for key in self.obs_keys:
            array = np.ascontiguousarray(obs[key])
            tensor = torch.from_numpy(array)
            if key in self.policy.config.shape_meta.rgb:
                tensor = tensor.permute(0, 3, 1, 2)  # (To, H, W, C) -> (To, C, H, W)
            else:
                tensor = tensor.float()
            batch[key] = tensor.unsqueeze(0).to(self.device)
        return batch


def validate_obs(
    obs: Mapping[str, np.ndarray],
    expected: Mapping[str, tuple[int, ...]],
    image_keys: Mapping[str, Any],
) -> None:
    """ValueError naming the first key that is missing or has the wrong type, shape or dtype."""
    for key, shape in expected.items():
        if key not in obs:
            raise ValueError(f"obs[{key!r}]: missing (expected keys {sorted(expected)})")
        value = obs[key]
        if not isinstance(value, np.ndarray):
            raise ValueError(f"obs[{key!r}]: expected a numpy array, got {type(value).__name__}")
        is_image = key in image_keys
        layout = "(To, H, W, C)" if is_image else "(To, D)"
        if tuple(value.shape) != tuple(shape):
            raise ValueError(
                f"obs[{key!r}]: expected shape {layout}={tuple(shape)}, got {tuple(value.shape)}"
            )
        if is_image and value.dtype != np.uint8:
            raise ValueError(f"obs[{key!r}]: expected dtype uint8, got {value.dtype}")
        if not is_image:
            if not np.issubdtype(value.dtype, np.floating):
                raise ValueError(f"obs[{key!r}]: expected a float dtype, got {value.dtype}")
            if not np.all(np.isfinite(value)):
                raise ValueError(f"obs[{key!r}]: expected finite values, got NaN or inf")
