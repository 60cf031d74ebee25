"""MP4 videos of simulated episodes: the cameras side by side, scaled up to be watchable.

Frames come in as the simulator gives them, uint8 (H, W, 3) RGB upright, one image per camera;
OpenCV writes BGR, so the channels are swapped here and nowhere else.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import cv2
import numpy as np

from dp_ros.keys import CAMERA_KEYS
from dp_ros.sim.env import CONTROL_FREQ

# 84x84 renders are stamp-sized on a screen; 4x (336 px high) is comfortable and, with nearest
# neighbour scaling, shows exactly the pixels the policy saw.
DEFAULT_SCALE = 4


def side_by_side(
    obs: Mapping[str, np.ndarray],
    cameras: Sequence[str] = CAMERA_KEYS,
    scale: int = DEFAULT_SCALE,
) -> np.ndarray:
    """One video frame, uint8 (H*scale, sum(W)*scale, 3) RGB, from the cameras in `obs`."""
    images = []
    for key in cameras:
        if key not in obs:
            raise ValueError(f"no {key!r} image in the observation (keys {sorted(obs)})")
        images.append(np.asarray(obs[key], dtype=np.uint8))
    heights = {image.shape[0] for image in images}
    if len(heights) != 1:
        raise ValueError(f"cameras {list(cameras)} have different heights {sorted(heights)}")
    frame = np.concatenate(images, axis=1)
    if scale != 1:
        frame = cv2.resize(
            frame,
            (frame.shape[1] * scale, frame.shape[0] * scale),
            interpolation=cv2.INTER_NEAREST,
        )
    return frame


class EpisodeVideo:
    """An MP4 (mp4v) file written one observation at a time; use as a context manager.

    The file opens on the first frame (its size is known then). Frames are played at the
    control rate, so the video runs in real time.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        cameras: Sequence[str] = CAMERA_KEYS,
        scale: int = DEFAULT_SCALE,
        fps: float = CONTROL_FREQ,
    ) -> None:
        if scale < 1:
            raise ValueError(f"scale={scale}: must be >= 1")
        self.path = Path(path)
        self.cameras = tuple(cameras)
        self.scale = scale
        self.fps = fps
        self.n_frames = 0
        self._writer: cv2.VideoWriter | None = None

    def write(self, obs: Mapping[str, np.ndarray]) -> None:
        frame = side_by_side(obs, self.cameras, self.scale)
        if self._writer is None:
            self._writer = self._open(frame.shape[1], frame.shape[0])
        self._writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        self.n_frames += 1

    def _open(self, width: int, height: int) -> cv2.VideoWriter:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fourcc = cv2.VideoWriter_fourcc(*"mp4v")
        writer = cv2.VideoWriter(str(self.path), fourcc, float(self.fps), (width, height))
        if not writer.isOpened():
            raise OSError(f"OpenCV cannot write an mp4v video to {self.path}")
        return writer

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None

    def __enter__(self) -> EpisodeVideo:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
