"""1-D temporal U-Net denoiser with FiLM conditioning (DP-C, Chi et al. 2023, Sec. III-B).

Convolutions run along the action-sequence axis, so the network sees the horizon as a short
1-D signal with Da channels. The diffusion-step embedding and the observation features (the
global condition) modulate every residual block through FiLM: a per-channel scale and bias.

Shapes: B batch, T horizon, Da action dim, G global-condition size (To * F).
"""

from __future__ import annotations

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

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """x (B, in_ch, L), cond (B, cond_dim) -> (B, out_ch, L)."""
        h = self.conv1(x)
        scale, bias = self.film(cond).unsqueeze(-1).chunk(2, dim=1)
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

    def forward(
        self, sample: torch.Tensor, timestep: torch.Tensor, global_cond: torch.Tensor
    ) -> torch.Tensor:
        # A GroupNorm's weight: matmul_layers never replaces those.
        dtype = self.head[0].block[1].weight.dtype
        x = sample.to(dtype).transpose(1, 2)  # (B, Da, T)
        steps = torch.as_tensor(timestep, device=sample.device).reshape(-1)
        steps = steps.expand(sample.shape[0])
        step_features = self.step_encoder(self.step_embedding(steps).to(dtype))
        cond = torch.cat([step_features, global_cond.to(dtype)], dim=-1)
        skips = []
        for block1, block2, downsample in self.down:
            x = block2(block1(x, cond), cond)
            skips.append(x)
            x = downsample(x)
        for block in self.mid:
            x = block(x, cond)
        for block1, block2, upsample in self.up:
            x = torch.cat([x, skips.pop()], dim=1)
            x = upsample(block2(block1(x, cond), cond))
        return self.head(x).transpose(1, 2).to(sample.dtype)
