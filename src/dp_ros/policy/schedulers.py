"""Noise schedules (diffusers) and the EMA of weights used for inference."""

from __future__ import annotations

import copy

import torch
from diffusers import DDIMScheduler, DDPMScheduler
from diffusers.schedulers.scheduling_ddim import DDIMSchedulerOutput
from torch import nn

from dp_ros.policy.config import NoiseConfig


class ScheduleExactDDIM(DDIMScheduler):
    """Deterministic DDIM whose every update lands on the timestep the schedule evaluates next.

    diffusers' DDIM step always moves from t to t - N // n (N training steps, n sampling steps),
    but the trailing schedule's gaps are N / n rounded: 6 or 7 for 16 of 100 steps, so 4 of the
    16 updates (87 -> 81, 68 -> 62, 37 -> 31, 18 -> 12) landed one step away from the timestep
    the next evaluation was told (80, 61, 30, 11), and 4 of 8 steps' 8. Here an update goes to
    the schedule's next timestep (after the last: the clean sample), as diffusers' DDPM already
    does. Where every gap is N // n (4, 2 or 1 of 100 steps), diffusers' own step runs unchanged.
    """

    def step(self, model_output, timestep, sample, eta: float = 0.0, **kwargs):
        if eta != 0.0:
            raise ValueError(f"eta={eta}: this sampler is deterministic DDIM (eta = 0)")
        output = super().step(model_output, timestep, sample, **kwargs)
        t = int(timestep)
        target = self._next_evaluated(t)
        if target == t - self.config.num_train_timesteps // self.num_inference_steps:
            return output
        alpha_t = self.alphas_cumprod[t]
        alpha_next = self.alphas_cumprod[target] if target >= 0 else self.final_alpha_cumprod
        if self.config.prediction_type == "epsilon":
            noise = model_output
        else:  # "sample": the noise that model_output implies, as diffusers derives it
            noise = (sample - alpha_t**0.5 * model_output) / (1 - alpha_t) ** 0.5
        clean = output.pred_original_sample  # clipped as configured
        landed = alpha_next**0.5 * clean + (1 - alpha_next) ** 0.5 * noise
        return DDIMSchedulerOutput(prev_sample=landed, pred_original_sample=clean)

    def _next_evaluated(self, timestep: int) -> int:
        """The timestep evaluated after `timestep`, or -1 after the last."""
        later = [int(t) for t in self.timesteps if int(t) < timestep]
        return max(later) if later else -1


Scheduler = DDPMScheduler | ScheduleExactDDIM


def _schedule_kwargs(noise: NoiseConfig) -> dict:
    return dict(
        num_train_timesteps=noise.num_train_timesteps,
        beta_schedule=noise.beta_schedule,
        beta_start=noise.beta_start,
        beta_end=noise.beta_end,
        prediction_type=noise.prediction_type,
        clip_sample=noise.clip_sample,
        # "trailing" starts few-step sampling at the noisiest step; "leading" would run 1-step
        # DDIM at t=0 (measured, DESIGN.md). For the full step count both are the same.
        timestep_spacing="trailing",
    )


def make_train_scheduler(noise: NoiseConfig) -> DDPMScheduler:
    """The forward process: ``add_noise`` for the training loss."""
    return DDPMScheduler(**_schedule_kwargs(noise))


def make_sampler(noise: NoiseConfig, name: str) -> Scheduler:
    """The reverse process, DDPM (stochastic) or DDIM (eta=0, deterministic given the noise)."""
    if name == "ddpm":
        return DDPMScheduler(**_schedule_kwargs(noise), variance_type="fixed_small")
    if name == "ddim":
        # alpha at the final step is 1: the last DDIM step lands exactly on the clean sample.
        return ScheduleExactDDIM(**_schedule_kwargs(noise), set_alpha_to_one=True)
    raise ValueError(f"sampler name={name!r} is invalid: must be one of ['ddpm', 'ddim']")


class EMA:
    """Exponential moving average of a model's weights, the copy used for evaluation.

    decay(step) = 1 - step ** -power after `step` updates (0 for the first two), clamped to
    [min_decay, max_decay]: with power 0.75 the average follows the weights closely early in
    training and slows to max_decay = 0.9999 later (the warm-up schedule of Chi et al., after
    Karras et al.). The count matches the reference implementation's EMAModel, whose first two
    updates both copy; ours used to run one update ahead of it (a decay difference of 2.4e-4 at
    update 100, 4.2e-6 at 1000), adopted for exactness rather than for a measured effect.
    Buffers (the normaliser) are copied, not averaged. ``state_dict`` holds only tensors, so it
    saves as safetensors.
    """

    def __init__(
        self, model: nn.Module, power: float = 0.75, max_decay: float = 0.9999,
        min_decay: float = 0.0,
    ) -> None:  # fmt: skip
        if not 0.0 < power:
            raise ValueError(f"EMA.power={power!r} is invalid: must be > 0")
        if not 0.0 <= min_decay <= max_decay < 1.0:
            raise ValueError(
                f"EMA.max_decay={max_decay!r} is invalid: need 0 <= min_decay <= max_decay < 1"
            )
        self.power, self.max_decay, self.min_decay = power, max_decay, min_decay
        self.averaged = copy.deepcopy(model).eval().requires_grad_(False)
        self.step = 0

    def decay(self, step: int | None = None) -> float:
        step = self.step if step is None else step
        value = 0.0 if step <= 1 else 1.0 - step**-self.power
        return min(self.max_decay, max(self.min_decay, value))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Fold the model's current weights into the average (call after each optimiser step)."""
        decay = self.decay()
        averaged = dict(self.averaged.named_parameters())
        for name, param in model.named_parameters():
            target = averaged[name]
            if param.requires_grad:
                target.lerp_(param.detach().to(target.dtype), 1.0 - decay)
            else:
                target.copy_(param)
        averaged_buffers = dict(self.averaged.named_buffers())
        for name, buf in model.named_buffers():
            averaged_buffers[name].copy_(buf)
        self.step += 1

    def state_dict(self) -> dict[str, torch.Tensor]:
        state = {f"model.{k}": v.detach().clone() for k, v in self.averaged.state_dict().items()}
        state["step"] = torch.tensor(self.step, dtype=torch.int64)
        return state

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        model_state = {k[len("model.") :]: v for k, v in state.items() if k.startswith("model.")}
        self.averaged.load_state_dict(model_state)
        self.step = int(state["step"])
