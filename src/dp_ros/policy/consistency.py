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
progressive distillation (Salimans & Ho, ICLR 2022). That is affordable because a training batch
starts at one grid index for all its samples, and it removes the target network.

Time grid: the teacher's DDIM timesteps τ_0 > ... > τ_{K-1} (trailing spacing). Training starts
at τ_0 from pure noise (what one-step sampling sees) in `first_step_share` of the batches, else at
one of the grid points that chained sampling with 2 or 4 steps uses, from data noised to that
level. Sampling with n chained steps (multistep consistency sampling): predict the clean chunk
at τ_{0}, noise it to τ_{K/n}, predict again, ... and return the last prediction.

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


def pick_start_index(grid_size: int, first_step_share: float, generator=None) -> int:
    """0 with probability first_step_share, else one of the chained steps' grid points."""
    later = training_start_indices(grid_size)
    if not later or torch.rand((), generator=generator).item() < first_step_share:
        return 0
    return later[int(torch.randint(len(later), (), generator=generator).item())]
