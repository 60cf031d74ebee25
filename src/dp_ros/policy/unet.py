"""1-D temporal U-Net denoiser with FiLM conditioning (DP-C, Chi et al. 2023, Sec. III-B).

Convolutions run along the action-sequence axis, so the network sees the horizon as a short
1-D signal with Da channels. The diffusion-step embedding and the observation features (the
global condition) modulate every residual block through FiLM: a per-channel scale and bias.

Shapes: B batch, T horizon, Da action dim, G global-condition size (To * F).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
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
        dtype = self.head[1].weight.dtype
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


class MatmulConv1d(nn.Module):
    """An inference-only Conv1d computed as one matrix product over unfolded windows.

    At batch 1 the U-Net's convolutions see sequences of 4-16 steps, and oneDNN's convolution
    repacks the whole weight tensor on every call; a plain GEMM reads the weights as stored.
    On this 2-core AVX2 CPU one 1024-channel layer at length 4 went from 19.3 to 8.6 ms (one
    thread); the whole image policy's DDIM-16 predict from 1.15 to 1.02 s (two threads,
    bench/bench_policy_latency.py --convs matmul,conv).
    The weights are a copy: build it from a loaded, trained Conv1d and do not train it.
    """

    def __init__(self, conv: nn.Conv1d) -> None:
        super().__init__()
        if conv.groups != 1 or conv.dilation[0] != 1 or conv.padding_mode != "zeros":
            raise ValueError(f"MatmulConv1d supports plain convolutions only, not {conv}")
        self.kernel_size = conv.kernel_size[0]
        self.stride = conv.stride[0]
        self.padding = int(conv.padding[0])
        weight = conv.weight.detach().reshape(conv.out_channels, -1).contiguous()  # (O, C*K)
        self.register_buffer("weight", weight)
        bias = None if conv.bias is None else conv.bias.detach().clone()
        self.register_buffer("bias", bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, C, L) -> (B, O, L')."""
        if self.kernel_size == 1 and self.stride == 1 and self.padding == 0:
            return F.linear(x.transpose(1, 2), self.weight, self.bias).transpose(1, 2)
        padded = F.pad(x, (self.padding, self.padding))
        windows = padded.unfold(2, self.kernel_size, self.stride)  # (B, C, L', K)
        batch, _, length, _ = windows.shape
        columns = windows.permute(0, 2, 1, 3).reshape(batch, length, -1)  # (B, L', C*K)
        return F.linear(columns, self.weight, self.bias).transpose(1, 2)


def use_matmul_convolutions(module: nn.Module) -> int:
    """Replace every plain nn.Conv1d under `module` with a MatmulConv1d; returns how many."""
    replaced = 0
    for name, child in module.named_children():
        if type(child) is nn.Conv1d:
            setattr(module, name, MatmulConv1d(child))
            replaced += 1
        else:
            replaced += use_matmul_convolutions(child)
    return replaced
