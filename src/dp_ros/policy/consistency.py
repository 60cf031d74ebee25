"""Few-step policies: a student distilled from a diffusion teacher's deterministic sampler.

A trained Diffusion Policy with DDIM (eta = 0) maps noise, and every intermediate sample on its
K-step schedule, deterministically to a clean chunk: the solution of its probability-flow ODE.
The student, a network of the teacher's architecture that starts from the teacher's weights,
learns that map directly: f(x_t, t | obs) = the teacher's DDIM solution from (x_t, t) to 0.
One evaluation then replaces K, and since different noise still lands on different solutions,
a multimodal teacher gives a multimodal student (a regression on actions would average modes).

This is consistency distillation (Song et al., ICML 2023; Consistency Policy, Prasad et al., RSS
2024) with one change: instead of matching an EMA target network one teacher step away (which
needs many iterations to propagate the boundary condition back from t = 0), the target is the
teacher's whole remaining trajectory, K - k evaluations without gradients, the N -> 1 limit of
progressive distillation (Salimans & Ho, ICLR 2022). It removes the target network.

Time grid: the teacher's DDIM timesteps τ_0 > ... > τ_{K-1} (trailing spacing). The student
learns from pure noise at τ_0 (what one-step sampling sees) and from data noised to the grid
points that chained sampling with 2 or 4 steps starts from. Sampling with n chained steps
(multistep consistency sampling): predict the clean chunk at τ_{0}, noise it to τ_{K/n}, predict
again, ... and return the last prediction.

Training reads the teacher's solutions from a bank computed once per run (`bank_starts` says
where each of a window's M noises starts; `TeacherSolutions` in dp_ros.train.teacher_bank holds
them): M x K teacher evaluations per window in all, instead of up to K per window per step, so a
student trains for thousands of steps in minutes. Each batch mixes start points (one timestep per
sample). A bank of 8 noises per window is enough: on Lift the student's loss at 1000 steps was
half that of the former trainer, which ran the teacher for every batch (0.0048 against 0.010),
and it succeeded on 0.98 of 50 seeds against 0.56.

Shapes: B batch, T horizon, Da action dim; samples are normalised actions (B, T, Da).
"""

from __future__ import annotations

import torch

CHAIN_LENGTHS = (1, 2, 4)  # chained step counts trained for (others work, less well)


def chain_indices(grid_size: int, steps: int) -> list[int]:
    """Indices into the K-point grid at which n chained steps evaluate: evenly spaced from 0."""
    if not 1 <= steps <= grid_size:
        raise ValueError(f"consistency steps={steps} must be in [1, {grid_size}]")
    return [i * grid_size // steps for i in range(steps)]


def training_start_indices(grid_size: int) -> list[int]:
    """Grid indices other than 0 that chained sampling with CHAIN_LENGTHS steps starts from."""
    starts = {i for n in CHAIN_LENGTHS if n <= grid_size for i in chain_indices(grid_size, n)}
    return sorted(starts - {0})


def bank_starts(noises: int, grid_size: int, first_step_share: float) -> list[int]:
    """Grid index each of a window's `noises` bank entries starts from: round(noises x
    first_step_share) of them (at least one) from pure noise at index 0, the others cycling
    through the chained steps' later grid points."""
    later = training_start_indices(grid_size)
    first = noises if not later else max(1, round(noises * first_step_share))
    return [0] * first + [later[i % len(later)] for i in range(noises - first)]


def consistency_input(
    clean: torch.Tensor, noise: torch.Tensor, start: int, grid: torch.Tensor, scheduler
) -> torch.Tensor:
    """The noisy chunk (B, T, Da) the student sees at grid index `start`: pure `noise` at 0
    (what one-step sampling starts from), else `clean` noised to that grid point."""
    if start == 0:
        return noise
    return scheduler.add_noise(clean, noise, grid[start].reshape(1))
