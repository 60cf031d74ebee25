"""Diffusion Policy: obs history -> action chunk by iterative denoising (Chi et al., RSS 2023).

Training: noise the normalised action chunk at a random diffusion step and regress the noise
(epsilon) given the step and the observation features. Inference: start from Gaussian noise
and run the sampler's reverse steps, conditioned on the observations, then unnormalise.

Shapes: B batch, To obs steps, T horizon, Ta executed steps, Da action dim, F obs feature.
A batch is ``{"obs": {key: (B, To, ...)}, "action": (B, T, Da)}``; images are uint8 or float
(B, To, C, H, W), low-dim float (B, To, D).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dp_ros.policy.config import SAMPLERS_OF_OBJECTIVE, PolicyConfig
from dp_ros.policy.consistency import chain_indices, consistency_input
from dp_ros.policy.normalizer import Normalizer, Stats
from dp_ros.policy.schedulers import make_sampler, make_train_scheduler
from dp_ros.policy.transformer import TransformerDenoiser
from dp_ros.policy.unet import ConditionalUnet1D
from dp_ros.policy.vision import ObsEncoder


@dataclass(frozen=True)
class HeldRows:
    """Rows of the chunk to hold while sampling: inpainting continuation (training-free).

    values: (B, T, Da) target actions in normalised units; weights: (T,) in [0, 1] per row.
    A row of weight 1 is frozen: before each denoiser evaluation at step t it is replaced by its
    target noised to t's level (the forward process), and after the last step by the target
    itself. A row of weight w in (0, 1) is blended towards the noised target at each of those
    n = K + 1 points by 1 - (1 - w) ** (1 / n), so that over the whole trajectory it keeps about
    1 - w of its own sample (blending by w at every step would make it nearly frozen). Weight 0
    leaves the row free. This is the replacement form of inpainting
    (Lugmayr et al.'s RePaint without resampling), applied per row as Real-Time Chunking
    (Black et al., 2025) does for the actions that execute while the next chunk is computed.
    """

    values: torch.Tensor
    weights: torch.Tensor

    def __post_init__(self) -> None:
        if self.values.ndim != 3 or self.weights.shape != (self.values.shape[1],):
            raise ValueError(
                f"HeldRows: values {tuple(self.values.shape)} must be (B, T, Da) and weights "
                f"{tuple(self.weights.shape)} must be (T,)"
            )
        if bool((self.weights < 0).any() or (self.weights > 1).any()):
            raise ValueError("HeldRows.weights must lie in [0, 1]")


class DiffusionPolicy(nn.Module):
    """Observation encoder + denoiser + normaliser, built from a ``PolicyConfig``."""

    def __init__(self, config: PolicyConfig) -> None:
        super().__init__()
        self.config = config
        meta = config.shape_meta
        self.normalizer = Normalizer(meta)
        self.obs_encoder = ObsEncoder(meta, config.encoder)
        F_obs = self.obs_encoder.feature_dim
        if config.denoiser == "unet":
            # DP-C conditions on the whole obs history flattened: G = To * F.
            self.denoiser: nn.Module = ConditionalUnet1D(
                meta.action_dim, config.n_obs_steps * F_obs, config.unet
            )
        else:
            self.denoiser = TransformerDenoiser(
                meta.action_dim, F_obs, config.horizon, config.n_obs_steps, config.transformer
            )
        self.train_scheduler = make_train_scheduler(config.noise)
        self._samplers: dict[str, object] = {}

    # ---------------------------------------------------------------------------------------
    # Properties
    # ---------------------------------------------------------------------------------------

    @property
    def device(self) -> torch.device:
        return next(self.denoiser.parameters()).device

    @property
    def n_obs_steps(self) -> int:
        return self.config.n_obs_steps

    @property
    def horizon(self) -> int:
        return self.config.horizon

    @property
    def n_action_steps(self) -> int:
        return self.config.n_action_steps

    def set_normalizer(self, stats: Stats) -> None:
        """Fit the normaliser from dataset statistics (min-max to [-1, 1])."""
        self.normalizer.fit(stats)

    def to_compute_dtype(self, dtype: torch.dtype) -> DiffusionPolicy:
        """Convert encoder and denoiser weights (e.g. to bf16) and keep the normaliser float32.

        Halves CPU latency (DDIM-16 0.69 s -> 0.33 s, DESIGN.md) without an autocast context,
        which inside ``inference_mode`` would re-cast every weight on every call.
        """
        self.obs_encoder.to(dtype)
        self.denoiser.to(dtype)
        return self

    # ---------------------------------------------------------------------------------------
    # Shared steps
    # ---------------------------------------------------------------------------------------

    def encode_obs(self, obs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Raw obs {key: (B, >=To, ...)} -> condition: (B, To*F) for the U-Net, (B, To, F)
        tokens for the transformer. Only the first To steps are used."""
        To = self.n_obs_steps
        nobs = self.normalizer.normalize_obs(
            {k: obs[k][:, :To] for k in self.config.shape_meta.obs_keys}
        )
        features = self.obs_encoder(nobs)  # (B, To, F)
        if self.config.denoiser == "unet":
            return features.reshape(features.shape[0], -1)
        return features

    def compute_loss(self, batch: Mapping[str, object]) -> torch.Tensor:
        """Epsilon-prediction MSE for one batch (the regression baseline: action MSE; a
        consistency student: MSE to the teacher's DDIM solutions the batch carries under
        ``teacher``, see ``consistency_targets``); a scalar tensor."""
        obs = batch["obs"]
        action = batch["action"]
        assert isinstance(obs, Mapping) and isinstance(action, torch.Tensor)
        cond = self.encode_obs(obs)
        target_action = self.normalizer.normalize_action(action.float())
        if self.config.objective == "regression":
            return F.mse_loss(self._regress(cond).float(), target_action)
        if self.config.objective == "consistency":
            return self._consistency_loss(cond, batch.get("teacher"))
        B = target_action.shape[0]
        noise = torch.randn_like(target_action)
        steps = torch.randint(
            0, self.config.noise.num_train_timesteps, (B,), device=target_action.device
        )
        noisy = self.train_scheduler.add_noise(target_action, noise, steps)
        prediction = self.denoiser(noisy, steps, cond)
        if self.config.noise.prediction_type == "epsilon":
            target = noise
        else:
            target = target_action
        return F.mse_loss(prediction.float(), target)

    def _consistency_loss(self, cond: torch.Tensor, teacher: object) -> torch.Tensor:
        """MSE between the student's one-step predictions from the noisy chunks and the
        teacher's DDIM solutions from the same chunks (``dp_ros.policy.consistency``)."""
        if not isinstance(teacher, Mapping):
            raise ValueError(
                "objective 'consistency' trains on its teacher's solutions: the batch needs "
                "'teacher' = {'start', 'noisy', 'solution'} (dp_ros.train.teacher_bank)"
            )
        grid = self.ddim_grid(self.config.consistency.teacher_steps, cond.device)
        timesteps = grid[teacher["start"].to(cond.device)]  # (B,): batches mix start points
        prediction = self.denoiser(teacher["noisy"], timesteps, cond)
        return F.mse_loss(prediction.float(), teacher["solution"].float())

    @torch.no_grad()
    def consistency_targets(
        self,
        obs: Mapping[str, torch.Tensor],
        action: torch.Tensor,
        starts: list[int],
        steps: int,
        generator: torch.Generator | None = None,
    ) -> dict[str, torch.Tensor]:
        """This (teacher) policy's training targets for a consistency student: for each start
        grid index in `starts` (one bank entry per window and start), a noisy chunk and the
        DDIM-`steps` solution from it. Returns 'start' (S*B,), 'noisy' and 'solution'
        (S*B, T, Da), entry s*B + b for window b; the observations are encoded once."""
        cond = self.encode_obs(obs)
        clean = self.normalizer.normalize_action(action.float())
        grid = self.ddim_grid(steps, clean.device)
        entries: dict[str, list[torch.Tensor]] = {"start": [], "noisy": [], "solution": []}
        for start in starts:
            noise = torch.randn(clean.shape, generator=generator, device=clean.device)
            noisy = consistency_input(clean, noise, start, grid, self.train_scheduler)
            entries["start"].append(torch.full((len(clean),), start, dtype=torch.long))
            entries["noisy"].append(noisy)
            entries["solution"].append(self.ddim_solution(cond, noisy, start, steps))
        return {name: torch.cat(parts) for name, parts in entries.items()}

    def ddim_grid(self, steps: int, device: torch.device) -> torch.Tensor:
        """The DDIM timesteps (K,) of a K-step schedule, noisiest first (trailing spacing)."""
        scheduler = self._sampler("ddim")
        scheduler.set_timesteps(steps, device=device)
        return scheduler.timesteps

    def ddim_solution(
        self, cond: torch.Tensor, sample: torch.Tensor, start_index: int, steps: int
    ) -> torch.Tensor:
        """This (diffusion) policy's deterministic DDIM sampler run from grid index
        `start_index` of a `steps`-step schedule on `sample` (B, T, Da) to the clean chunk,
        given the encoded observations `cond`."""
        scheduler = self._sampler("ddim")
        scheduler.set_timesteps(steps, device=sample.device)
        timesteps = scheduler.timesteps[start_index:]
        for t, extra in zip(timesteps, self._step_inputs(timesteps, cond), strict=True):
            output = self.denoiser(sample, t, cond, **extra)
            sample = scheduler.step(output.float(), t, sample).prev_sample
        return sample

    # ---------------------------------------------------------------------------------------
    # Inference
    # ---------------------------------------------------------------------------------------

    def _sampler(self, name: str):
        if name not in self._samplers:
            self._samplers[name] = make_sampler(self.config.noise, name)
        return self._samplers[name]

    def sample_normalized(
        self,
        cond: torch.Tensor,
        generator: torch.Generator | None = None,
        num_inference_steps: int | None = None,
        sampler: str | None = None,
        held: HeldRows | None = None,
    ) -> torch.Tensor:
        """Run the reverse process from noise given the condition: -> (B, T, Da) in [-1, 1].

        With ``held``, the rows it weights are inpainted (see ``HeldRows``): one forward-process
        computation per step and no extra denoiser evaluation. Without it, or with all weights
        zero, the samples are exactly those of plain sampling (the same generator draws).
        The regression baseline has no reverse process: one pass, no noise."""
        if self.config.objective == "regression":
            # Within the normalised range, as the samplers' clipping keeps diffusion samples.
            return self._regress(cond).clamp(-1.0, 1.0)
        name = sampler or self.config.sampler.name
        allowed = SAMPLERS_OF_OBJECTIVE[self.config.objective]
        if name not in allowed:
            raise ValueError(
                f"sampler {name!r} cannot sample a policy trained with objective "
                f"{self.config.objective!r}: use one of {allowed}"
            )
        steps = num_inference_steps or self.config.sampler.num_inference_steps
        shape = (cond.shape[0], self.horizon, self.config.shape_meta.action_dim)
        trajectory = torch.randn(shape, generator=generator, device=cond.device)
        if held is not None and not bool(held.weights.any()):
            held = None
        if self.config.objective == "consistency":
            return self._sample_consistency(cond, trajectory, steps, generator, held)
        scheduler = self._sampler(name)
        scheduler.set_timesteps(steps, device=cond.device)
        held = per_blend_weights(held, len(scheduler.timesteps) + 1)
        step_inputs = self._step_inputs(scheduler.timesteps, cond)
        for t, extra in zip(scheduler.timesteps, step_inputs, strict=True):
            if held is not None:
                trajectory = self._hold(trajectory, held, t, generator)
            model_output = self.denoiser(trajectory, t, cond, **extra)
            trajectory = scheduler.step(
                model_output.float(), t, trajectory, generator=generator
            ).prev_sample
        if held is not None:  # the clean level: held rows end exactly on their targets
            trajectory = self._hold(trajectory, held, None, generator)
        return trajectory

    def _sample_consistency(
        self,
        cond: torch.Tensor,
        trajectory: torch.Tensor,
        steps: int,
        generator: torch.Generator | None,
        held: HeldRows | None,
    ) -> torch.Tensor:
        """Multistep consistency sampling: predict the clean chunk, noise it to the next grid
        point, predict again; `steps` denoiser evaluations (``dp_ros.policy.consistency``)."""
        grid_size = self.config.consistency.teacher_steps
        grid = self.ddim_grid(grid_size, cond.device)
        chain = grid[chain_indices(grid_size, steps)]
        held = per_blend_weights(held, len(chain) + 1)
        step_inputs = self._step_inputs(chain, cond)
        for index, (t, extra) in enumerate(zip(chain, step_inputs, strict=True)):
            if held is not None:
                trajectory = self._hold(trajectory, held, t, generator)
            clean = self.denoiser(trajectory, t, cond, **extra).float()
            if self.config.noise.clip_sample:
                clean = clean.clamp(-1.0, 1.0)
            if index + 1 == len(chain):
                trajectory = clean
            else:
                noise = torch.randn(clean.shape, generator=generator, device=clean.device)
                trajectory = self.train_scheduler.add_noise(
                    clean, noise, chain[index + 1 : index + 2]
                )
        if held is not None:
            trajectory = self._hold(trajectory, held, None, generator)
        return trajectory

    def _hold(
        self,
        trajectory: torch.Tensor,
        held: HeldRows,
        t: torch.Tensor | None,
        generator: torch.Generator | None,
    ) -> torch.Tensor:
        """Blend the held rows of the noisy sample (B, T, Da) towards their targets noised to
        step t (t None: the clean targets)."""
        target = held.values.to(trajectory.device, trajectory.dtype)
        if t is not None:
            noise = torch.randn(
                trajectory.shape, generator=generator, device=trajectory.device
            ).to(trajectory.dtype)
            target = self.train_scheduler.add_noise(target, noise, t.reshape(1))
        weights = held.weights.to(trajectory.device, trajectory.dtype)[None, :, None]
        # lerp returns `end` exactly where the weight is 1: frozen rows are the targets.
        return torch.lerp(trajectory, target, weights.expand_as(trajectory))

    def _step_inputs(self, timesteps: torch.Tensor, cond: torch.Tensor) -> list[dict]:
        """The denoiser's extra keyword inputs for each sampler step: the U-Net's FiLM scales,
        computed for all steps at once (``ConditionalUnet1D.films_for_steps``); the transformer
        takes none."""
        if isinstance(self.denoiser, ConditionalUnet1D):
            return [{"films": films} for films in self.denoiser.films_for_steps(timesteps, cond)]
        return [{} for _ in timesteps]

    def _regress(self, cond: torch.Tensor) -> torch.Tensor:
        """The regression baseline's chunk (B, T, Da): the network at step 0 on a zero input."""
        shape = (cond.shape[0], self.horizon, self.config.shape_meta.action_dim)
        zeros = torch.zeros(shape, device=cond.device, dtype=cond.dtype)
        step = torch.zeros(cond.shape[0], dtype=torch.long, device=cond.device)
        return self.denoiser(zeros, step, cond)

    def predict_action(
        self,
        obs: Mapping[str, torch.Tensor],
        generator: torch.Generator | None = None,
        num_inference_steps: int | None = None,
        sampler: str | None = None,
        held: HeldRows | None = None,
    ) -> dict[str, torch.Tensor]:
        """Obs {key: (B, To, ...)} -> {"action_pred": (B, T, Da), "action": (B, Ta, Da)}.

        ``action`` is the executed slice ``action_pred[:, To-1 : To-1+Ta]``: the first action
        of the chunk that lies at or after the latest observation. Call under ``no_grad`` or
        ``inference_mode``; pass a seeded ``torch.Generator`` for reproducible samples.
        ``held`` (normalised units) inpaints rows that are already committed.
        """
        cond = self.encode_obs(obs)
        normalized = self.sample_normalized(cond, generator, num_inference_steps, sampler, held)
        action_pred = self.normalizer.unnormalize_action(normalized.float())
        start = self.n_obs_steps - 1
        return {
            "action_pred": action_pred,
            "action": action_pred[:, start : start + self.n_action_steps],
        }


def per_blend_weights(held: HeldRows | None, blends: int) -> HeldRows | None:
    """The weights applied at each of a sampler's `blends` blending points (see HeldRows)."""
    if held is None:
        return None
    return HeldRows(held.values, 1.0 - (1.0 - held.weights.float()) ** (1.0 / blends))


def make_policy(config: PolicyConfig, stats: Stats | None = None) -> DiffusionPolicy:
    """Build a policy; with ``stats`` the normaliser is fitted, else it is the identity."""
    policy = DiffusionPolicy(config)
    if stats is not None:
        policy.set_normalizer(stats)
    return policy


def count_parameters(module: nn.Module) -> int:
    return int(sum(np.prod(p.shape) for p in module.parameters()))
