"""Inference-only replacements for the U-Net's layers that run faster at batch 1 on a CPU.

At batch 1 the denoiser's convolutions see sequences of 4-16 steps: every layer is a tall, thin
matrix product, and its time is the time it takes to read the weights. oneDNN's convolution
repacks the whole weight tensor on every call, and torch's transposed 1-D convolution falls back
to a reference loop (1.5 ms a call for 1.3 M weights here). These layers compute the same
functions as one matrix product each:

- ``MatmulConv1d``: Conv1d over unfolded windows (im2col).
- ``MatmulConvTranspose1d``: ConvTranspose1d as a product followed by an overlap-add (col2im).
- ``PackedLinear``: nn.Linear through the same product.

Each product either reads fp32 weights (``F.linear``: the same numbers to float rounding) or,
with ``half_weights``, fp16 weights packed for fbgemm: activations and accumulation stay fp32,
half the bytes are read, and fbgemm's kernel is made for a few rows at a time. Measured on this
2-core AVX2 host, one 1024-channel layer (2048 x 5120 weights, 4 rows): 6.7 ms fp32 -> 1.3 ms.
The weights are rounded to fp16 (relative error about 1e-4 per layer).

The weights are copies: build these from a loaded, trained module and do not train them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def half_weights_available() -> bool:
    """Whether this torch build has fbgemm's fp16 linear (x86 CPU builds do)."""
    return "fbgemm" in torch.backends.quantized.supported_engines and hasattr(
        torch.ops.quantized, "linear_prepack_fp16"
    )


class MatrixProduct(nn.Module):
    """x (..., I) -> x W^T + b (..., O), from fp32 weights or fbgemm-packed fp16 ones."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, half_weights: bool):
        super().__init__()
        weight = weight.detach().contiguous()  # (O, I), in the dtype the model computes in
        bias = None if bias is None else bias.detach().clone()
        self.half_weights = half_weights
        if half_weights:
            weight = weight.float()
            bias = None if bias is None else bias.float()
            if not half_weights_available():
                raise ValueError("half_weights needs torch's fbgemm (an x86 CPU build)")
            if weight.device.type != "cpu":
                raise ValueError(f"half_weights runs on a CPU only, not on {weight.device}")
            # An opaque fbgemm object: not a buffer, not in any state dict, never saved.
            self.packed = torch.ops.quantized.linear_prepack_fp16(weight, bias)
        else:
            self.register_buffer("weight", weight)
            self.register_buffer("bias", bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.half_weights:
            return F.linear(x, self.weight, self.bias)
        rows = x.reshape(-1, x.shape[-1]).float()
        out = torch.ops.quantized.linear_dynamic_fp16(rows, self.packed)
        return out.reshape(*x.shape[:-1], out.shape[-1]).to(x.dtype)


def _refuse_unless_plain(layer: nn.Module) -> None:
    if layer.groups != 1 or layer.dilation[0] != 1 or layer.padding_mode != "zeros":
        raise ValueError(f"{type(layer).__name__} with groups/dilation/padding mode: {layer}")


class MatmulConv1d(nn.Module):
    """Conv1d as one matrix product over unfolded windows: x (B, C, L) -> (B, O, L')."""

    def __init__(self, conv: nn.Conv1d, half_weights: bool = False) -> None:
        super().__init__()
        _refuse_unless_plain(conv)
        self.kernel_size = conv.kernel_size[0]
        self.stride = conv.stride[0]
        self.padding = int(conv.padding[0])
        weight = conv.weight.reshape(conv.out_channels, -1)  # (O, C*K), C-major like unfold
        self.product = MatrixProduct(weight, conv.bias, half_weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kernel_size == 1 and self.stride == 1 and self.padding == 0:
            return self.product(x.transpose(1, 2)).transpose(1, 2)
        padded = F.pad(x, (self.padding, self.padding))
        windows = padded.unfold(2, self.kernel_size, self.stride)  # (B, C, L', K)
        batch, _, length, _ = windows.shape
        columns = windows.permute(0, 2, 1, 3).reshape(batch, length, -1)  # (B, L', C*K)
        return self.product(columns).transpose(1, 2)


class MatmulConvTranspose1d(nn.Module):
    """ConvTranspose1d as a product and an overlap-add: x (B, C, L) -> (B, O, L').

    Each input step contributes K output steps (O * K numbers, one product for all steps);
    ``F.fold`` adds them up at stride S and crops the padding, which is what a transposed
    convolution is.
    """

    def __init__(self, conv: nn.ConvTranspose1d, half_weights: bool = False) -> None:
        super().__init__()
        _refuse_unless_plain(conv)
        if conv.output_padding[0] != 0:
            raise ValueError(f"MatmulConvTranspose1d does not support output_padding: {conv}")
        self.kernel_size = conv.kernel_size[0]
        self.stride = conv.stride[0]
        self.padding = int(conv.padding[0])
        self.out_channels = conv.out_channels
        # (C, O, K) -> (O, K, C) -> (O*K, C): row o*K + k is fold's channel order.
        weight = conv.weight.permute(1, 2, 0).reshape(-1, conv.in_channels)
        self.product = MatrixProduct(weight, None, half_weights)
        self.register_buffer("bias", None if conv.bias is None else conv.bias.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        length = x.shape[-1]
        out_length = (length - 1) * self.stride - 2 * self.padding + self.kernel_size
        columns = self.product(x.transpose(1, 2)).transpose(1, 2)  # (B, O*K, L)
        out = F.fold(
            columns,
            output_size=(1, out_length),
            kernel_size=(1, self.kernel_size),
            stride=(1, self.stride),
            padding=(0, self.padding),
        ).squeeze(2)  # (B, O, L')
        if self.bias is not None:
            out = out + self.bias.to(out.dtype)[:, None]
        return out


class PackedLinear(nn.Module):
    """nn.Linear through ``MatrixProduct`` (used for fp16 weights; fp32 gains nothing)."""

    def __init__(self, linear: nn.Linear, half_weights: bool = False) -> None:
        super().__init__()
        self.product = MatrixProduct(linear.weight, linear.bias, half_weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.product(x)


def use_matmul_layers(module: nn.Module, half_weights: bool = False) -> int:
    """Replace the Conv1d and ConvTranspose1d layers under ``module`` with matrix products (and,
    with ``half_weights``, its Linear layers too); returns how many were replaced."""
    replacements: dict[type, type] = {
        nn.Conv1d: MatmulConv1d,
        nn.ConvTranspose1d: MatmulConvTranspose1d,
    }
    if half_weights:
        replacements[nn.Linear] = PackedLinear
    replaced = 0
    for name, child in module.named_children():
        replacement = replacements.get(type(child))
        if replacement is not None:
            setattr(module, name, replacement(child, half_weights))
            replaced += 1
        else:
            replaced += use_matmul_layers(child, half_weights)
    return replaced
