"""1-D temporal U-Net denoiser with FiLM conditioning (DP-C, Chi et al. 2023, Sec. III-B).

Convolutions run along the action-sequence axis, so the network sees the horizon as a short
1-D signal with Da channels. The diffusion-step embedding and the observation features (the
global condition) modulate every residual block through FiLM: a per-channel scale and bias.

Shapes: B batch, T horizon, Da action dim, G global-condition size (To * F).
"""

from __future__ import annotations

import itertools
import math

import torch
from torch import nn

from dp_ros.policy.config import UnetConfig


class SinusoidalEmbedding(nn.Module):
    """Diffusion step k (B,) -> (B, dim) sin/cos features over geometric frequencies."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, steps: torch.Tensor) -> torch.Tensor:
        # Always float32, even when the weights are bf16: bf16 cannot tell step 99 from 100.
        half = self.dim // 2
        index = torch.arange(half, dtype=torch.float32, device=steps.device)
        frequencies = torch.exp(-math.log(10000.0) * index / max(1, half - 1))
        angles = steps.float()[:, None] * frequencies[None, :]
        return torch.cat([angles.sin(), angles.cos()], dim=-1)


class ConvBlock(nn.Module):
    """Conv1d -> GroupNorm -> Mish, keeping the length."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, n_groups: int) -> None:
        super().__init__()
        self.block = nn.Sequential(
            nn.Conv1d(in_ch, out_ch, kernel_size, padding=kernel_size // 2),
            nn.GroupNorm(n_groups, out_ch),
            nn.Mish(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


class FiLMResidualBlock(nn.Module):
    """Two conv blocks; the condition sets a per-channel scale and bias between them."""

    def __init__(
        self, in_ch: int, out_ch: int, cond_dim: int, kernel_size: int, n_groups: int
    ) -> None:
        super().__init__()
        self.out_ch = out_ch
        self.conv1 = ConvBlock(in_ch, out_ch, kernel_size, n_groups)
        self.conv2 = ConvBlock(out_ch, out_ch, kernel_size, n_groups)
        self.film = nn.Sequential(nn.Mish(), nn.Linear(cond_dim, 2 * out_ch))
        self.residual: nn.Module = (
            nn.Identity() if in_ch == out_ch else nn.Conv1d(in_ch, out_ch, 1)
        )

    def forward(
        self, x: torch.Tensor, cond: torch.Tensor, film: torch.Tensor | None = None
    ) -> torch.Tensor:
        """x (B, in_ch, L), cond (B, cond_dim) -> (B, out_ch, L). ``film`` (B, 2 * out_ch), when
        given, is ``self.film(cond)`` computed beforehand."""
        h = self.conv1(x)
        film = self.film(cond) if film is None else film
        scale, bias = film.unsqueeze(-1).chunk(2, dim=1)
        h = self.conv2(scale * h + bias)
        return h + self.residual(x)


class ConditionalUnet1D(nn.Module):
    """Noisy actions (B, T, Da), step (B,), global cond (B, G) -> noise estimate (B, T, Da).

    Each level but the last halves T, so T must divide by 2**(len(down_dims) - 1) (checked by
    PolicyConfig).
    """

    def __init__(self, action_dim: int, global_cond_dim: int, cfg: UnetConfig) -> None:
        super().__init__()
        k, g = cfg.kernel_size, cfg.n_groups
        step_dim = cfg.diffusion_step_embed_dim
        self.step_embedding = SinusoidalEmbedding(step_dim)
        self.step_encoder = nn.Sequential(
            nn.Linear(step_dim, 4 * step_dim),
            nn.Mish(),
            nn.Linear(4 * step_dim, step_dim),
        )
        cond_dim = step_dim + global_cond_dim
        dims = [action_dim, *cfg.down_dims]
        levels = list(zip(dims[:-1], dims[1:], strict=True))

        self.down = nn.ModuleList()
        for i, (d_in, d_out) in enumerate(levels):
            last = i == len(levels) - 1
            self.down.append(
                nn.ModuleList(
                    [
                        FiLMResidualBlock(d_in, d_out, cond_dim, k, g),
                        FiLMResidualBlock(d_out, d_out, cond_dim, k, g),
                        nn.Identity() if last else nn.Conv1d(d_out, d_out, 3, stride=2, padding=1),
                    ]
                )
            )
        mid = cfg.down_dims[-1]
        self.mid = nn.ModuleList(
            [
                FiLMResidualBlock(mid, mid, cond_dim, k, g),
                FiLMResidualBlock(mid, mid, cond_dim, k, g),
            ]
        )
        self.up = nn.ModuleList()
        # Every up level doubles the length again, undoing the downsamples one for one.
        for d_in, d_out in reversed(levels[1:]):
            self.up.append(
                nn.ModuleList(
                    [
                        # 2 * d_out input channels: the skip connection is concatenated.
                        FiLMResidualBlock(2 * d_out, d_in, cond_dim, k, g),
                        FiLMResidualBlock(d_in, d_in, cond_dim, k, g),
                        nn.ConvTranspose1d(d_in, d_in, 4, stride=2, padding=1),
                    ]
                )
            )
        first = cfg.down_dims[0]
        self.head = nn.Sequential(ConvBlock(first, first, k, g), nn.Conv1d(first, action_dim, 1))

    def film_blocks(self) -> list[FiLMResidualBlock]:
        """The FiLM blocks in the order ``forward`` runs them."""
        blocks = [block for level in self.down for block in level[:2]]
        blocks += list(self.mid)
        return blocks + [block for level in self.up for block in level[:2]]

    def condition(self, timestep: torch.Tensor, global_cond: torch.Tensor) -> torch.Tensor:
        """Steps (B,) or (), global cond (B, G) -> the FiLM input (B, step_dim + G)."""
        dtype = self.head[0].block[1].weight.dtype  # a GroupNorm's: matmul_layers keeps those
        steps = torch.as_tensor(timestep, device=global_cond.device).reshape(-1)
        steps = steps.expand(global_cond.shape[0])
        step_features = self.step_encoder(self.step_embedding(steps).to(dtype))
        return torch.cat([step_features, global_cond.to(dtype)], dim=-1)

    def films_for_steps(
        self, timesteps: torch.Tensor, global_cond: torch.Tensor
    ) -> list[list[torch.Tensor]]:
        """Every FiLM block's scale and bias for each of the sampler's steps (K,) at once:
        [step][block] (B, 2 * C). A sampler's steps are known before it starts and the condition
        does not change, so one product of K rows per block replaces K products of one row
        (the FiLM weights are 12% of the paper-size U-Net's, read once instead of K times)."""
        K, B = timesteps.shape[0], global_cond.shape[0]
        steps = timesteps.reshape(K, 1).expand(K, B).reshape(-1)
        cond = self.condition(steps, global_cond.repeat(K, 1))  # (K * B, cond_dim)
        per_block = [block.film(cond).reshape(K, B, -1) for block in self.film_blocks()]
        return [[films[k] for films in per_block] for k in range(K)]

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor,
        global_cond: torch.Tensor,
        films: list[torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """``films``: this step's entry of ``films_for_steps``, or None to compute them here."""
        cond = self.condition(timestep, global_cond)
        x = sample.to(cond.dtype).transpose(1, 2)  # (B, Da, T)
        block_films = iter(films) if films is not None else itertools.repeat(None)

        def film_block(block: FiLMResidualBlock, x: torch.Tensor) -> torch.Tensor:
            return block(x, cond, next(block_films))

        skips = []
        for block1, block2, downsample in self.down:
            x = film_block(block2, film_block(block1, x))
            skips.append(x)
            x = downsample(x)
        for block in self.mid:
            x = film_block(block, x)
        for block1, block2, upsample in self.up:
            x = torch.cat([x, skips.pop()], dim=1)
            x = upsample(film_block(block2, film_block(block1, x)))
        return self.head(x).transpose(1, 2).to(sample.dtype)
