"""Observation encoder: ResNet-18 (GroupNorm) + spatial softmax per camera, plus low-dim state.

Chi et al. replace BatchNorm by GroupNorm because BatchNorm's running statistics interact badly
with the EMA of weights used for inference, and replace global average pooling by a spatial
softmax, which keeps *where* features are (keypoints) instead of averaging it away. Images are
randomly cropped 84 -> 76 in training (the paper's only augmentation) and centre-cropped in
evaluation.

Shapes: B batch, To obs steps, C/H/W image, F obs feature per step.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from dp_ros.policy.config import EncoderConfig, ShapeMeta

# GroupNorm with 16 channels a group, as the Diffusion Policy paper's ResNet variant.
CHANNELS_PER_GROUP = 16


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(max(1, channels // CHANNELS_PER_GROUP), channels)


class BasicBlock(nn.Module):
    """Two 3x3 convs with a skip connection (ResNet's block for 18/34 layers)."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False)
        self.norm1 = _norm(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False)
        self.norm2 = _norm(out_ch)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False), _norm(out_ch)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.norm1(self.conv1(x)))
        y = self.norm2(self.conv2(y))
        return F.relu(y + self.shortcut(x))


class ResNet18Trunk(nn.Module):
    """ResNet-18 without pooling and classifier head: (N, C, H, W) -> (N, 8*width, H/32, W/32).

    At ``width=64`` it has exactly the 11,176,512 parameters of torchvision's resnet18 minus its
    fc layer (GroupNorm has the same affine parameters as BatchNorm).
    """

    def __init__(self, in_channels: int = 3, width: int = 64) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, width, 7, stride=2, padding=3, bias=False),
            _norm(width),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, stride=2, padding=1),
        )
        stages = []
        in_ch = width
        for i in range(4):
            out_ch = width * 2**i
            stride = 1 if i == 0 else 2
            stages.append(
                nn.Sequential(BasicBlock(in_ch, out_ch, stride), BasicBlock(out_ch, out_ch))
            )
            in_ch = out_ch
        self.stages = nn.Sequential(*stages)
        self.out_channels = in_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(self.stem(x))


class SpatialSoftmax(nn.Module):
    """Feature map -> K expected (x, y) keypoint positions in [-1, 1]: (N, C, h, w) -> (N, 2K).

    Each of K 1x1-conv channels is turned into a probability map over pixels by a softmax; its
    expectation under that map is a keypoint (Levine et al. 2016, as used by robomimic and DP).
    """

    def __init__(self, in_channels: int, num_keypoints: int) -> None:
        super().__init__()
        self.keypoint_conv = nn.Conv2d(in_channels, num_keypoints, 1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        maps = self.keypoint_conv(features)
        N, K, h, w = maps.shape
        attention = torch.softmax(maps.reshape(N, K, h * w), dim=-1)
        ys = torch.linspace(-1.0, 1.0, h, device=maps.device, dtype=maps.dtype)
        xs = torch.linspace(-1.0, 1.0, w, device=maps.device, dtype=maps.dtype)
        grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
        grid = torch.stack([grid_x.reshape(-1), grid_y.reshape(-1)], dim=-1)  # (h*w, 2)
        keypoints = attention @ grid  # (N, K, 2)
        return keypoints.reshape(N, 2 * K)


def crop_images(
    images: torch.Tensor, crop_hw: tuple[int, int], random: bool, generator=None
) -> torch.Tensor:
    """Crop (N, C, H, W) to (N, C, h, w): an independent random window per image, or the centre.

    Random offsets use gathers instead of a Python loop so a batch of 128 images costs one op.
    """
    N, C, H, W = images.shape
    h, w = crop_hw
    if (h, w) == (H, W):
        return images
    if not random:
        top, left = (H - h) // 2, (W - w) // 2
        return images[:, :, top : top + h, left : left + w]
    device = images.device
    top = torch.randint(0, H - h + 1, (N,), generator=generator, device=device)
    left = torch.randint(0, W - w + 1, (N,), generator=generator, device=device)
    rows = (top[:, None] + torch.arange(h, device=device))[:, None, :, None]  # (N, 1, h, 1)
    cols = (left[:, None] + torch.arange(w, device=device))[:, None, None, :]  # (N, 1, 1, w)
    images = images.gather(2, rows.expand(N, C, h, W))
    return images.gather(3, cols.expand(N, C, h, w))


class ImageEncoder(nn.Module):
    """One camera's image (N, C, H, W) float [0, 1] -> feature (N, feature_dim).

    ``EncoderConfig.image_range`` and ``projection_relu`` select the reference implementation's
    input range and output activation (see EncoderConfig)."""

    def __init__(self, in_channels: int, cfg: EncoderConfig) -> None:
        super().__init__()
        self.crop_shape = cfg.crop_shape
        self.symmetric = cfg.image_range == "symmetric"
        self.trunk = ResNet18Trunk(in_channels, cfg.width)
        self.pool = SpatialSoftmax(self.trunk.out_channels, cfg.num_keypoints)
        self.project = nn.Linear(2 * cfg.num_keypoints, cfg.feature_dim)
        self.activation = nn.ReLU() if cfg.projection_relu else nn.Identity()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.crop_shape is not None:
            images = crop_images(images, self.crop_shape, random=self.training)
        if self.symmetric:
            images = images * 2.0 - 1.0
        return self.activation(self.project(self.pool(self.trunk(images))))


class ObsEncoder(nn.Module):
    """Normalised obs dict {key: (B, To, ...)} -> per-step features (B, To, F).

    F = n_cameras * feature_dim + sum of low-dim sizes; camera features come first, in
    shape-meta order, then the low-dim values as they are.
    """

    def __init__(self, shape_meta: ShapeMeta, cfg: EncoderConfig) -> None:
        super().__init__()
        self.shape_meta = shape_meta
        self.share = cfg.share_rgb_model
        cameras = list(shape_meta.rgb)
        channels = {shape_meta.rgb[k][0] for k in cameras}
        if self.share and len(channels) > 1:
            raise ValueError(f"shared image encoder needs equal channel counts, got {channels}")
        self.cameras = nn.ModuleDict()
        if cameras and self.share:
            self.shared = ImageEncoder(channels.pop(), cfg)
        else:
            for key in cameras:
                self.cameras[key] = ImageEncoder(shape_meta.rgb[key][0], cfg)
        self.feature_dim = len(cameras) * cfg.feature_dim + shape_meta.low_dim_size

    def forward(self, nobs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        parts = self._image_features(nobs)
        for key in self.shape_meta.low_dim:
            parts.append(nobs[key])
        return torch.cat(parts, dim=-1)

    def _image_features(self, nobs: Mapping[str, torch.Tensor]) -> list[torch.Tensor]:
        cameras = list(self.shape_meta.rgb)
        if not cameras:
            return []
        B, To = nobs[cameras[0]].shape[:2]
        dtype = next(self.parameters()).dtype
        flat = [nobs[k].reshape(B * To, *nobs[k].shape[2:]).to(dtype) for k in cameras]
        if self.share:
            # One pass over all cameras stacked on the batch axis.
            features = self.shared(torch.cat(flat, dim=0)).float()
            chunks = features.split(B * To, dim=0)
        else:
            chunks = [self.cameras[k](x).float() for k, x in zip(cameras, flat, strict=True)]
        return [c.reshape(B, To, -1) for c in chunks]
