"""Camera images brought to the size a policy or an episode store uses (ROS-free).

One implementation for everything that turns a native camera frame (640x480, 1280x720, ...)
into the policy's input: policy_node before acting, recorder_node before storing (and so the
trainer), through dp_ros.conversions. Training and acting therefore see the same pixels.

Optional centre crop first (to the target's aspect ratio, so a 4:3 or 16:9 frame is not
squashed into a square), then cv2.INTER_AREA: the area average, which is what downscaling needs
(bilinear or nearest skip pixels and alias fine texture into noise).
"""

import re

import cv2
import numpy as np

SIZE_PATTERN = re.compile(r"^\s*(\d+)\s*[xX]\s*(\d+)\s*$")


def parse_hw(text: str) -> tuple[int, int] | None:
    """ "HxW" (e.g. "84x84", "96x128") -> (H, W); "" -> None (the checkpoint's or the store's)."""
    if not text.strip():
        return None
    match = SIZE_PATTERN.match(text)
    if not match or min(int(match.group(1)), int(match.group(2))) < 1:
        raise ValueError(f"image size {text!r}: expected HxW with positive integers, e.g. 84x84")
    return int(match.group(1)), int(match.group(2))


def center_crop_box(hw: tuple[int, int], target_hw: tuple[int, int]) -> tuple[int, int, int, int]:
    """(top, left, height, width) of the largest centred box of target_hw's aspect ratio."""
    height, width = hw
    target_h, target_w = target_hw
    # Compare aspect ratios in integers: height / width vs target_h / target_w.
    if height * target_w > target_h * width:  # too tall: keep the full width
        crop_h, crop_w = max(1, round(width * target_h / target_w)), width
    else:  # too wide (or equal): keep the full height
        crop_h, crop_w = height, max(1, round(height * target_w / target_h))
    return (height - crop_h) // 2, (width - crop_w) // 2, crop_h, crop_w


def fit_image(rgb: np.ndarray, target_hw: tuple[int, int], crop: bool = False) -> np.ndarray:
    """(H, W, 3) uint8 -> (target_h, target_w, 3) uint8; an image already that size is returned
    as it is (no copy, no resampling)."""
    if rgb.ndim != 3:
        raise ValueError(f"expected an (H, W, C) image, got shape {rgb.shape}")
    target_h, target_w = target_hw
    if rgb.shape[:2] == (target_h, target_w):
        return rgb
    if crop:
        top, left, crop_h, crop_w = center_crop_box(rgb.shape[:2], target_hw)
        rgb = rgb[top : top + crop_h, left : left + crop_w]
    return np.ascontiguousarray(
        cv2.resize(rgb, (target_w, target_h), interpolation=cv2.INTER_AREA)
    )
