"""What an episode store holds, as plain data and as text (`dp-dataset info`); ROS-free.

Reads only committed episodes (a writer may be appending meanwhile). Value ranges of low-dim
keys are over every frame; images are summarised by shape, dtype and their mean value, and an
image sample (the first frame of the first episode, cameras side by side) can be written as PNG.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from dp_ros.data.store import EpisodeStore
from dp_ros.keys import is_image_key

# Per-episode metadata shown by `info` (all of it is in the store; these answer "which demo").
EPISODE_FIELDS = ("task", "seed", "success", "operator", "source", "recorder")


@dataclass
class KeySummary:
    key: str
    dtype: str
    shape: tuple[int, ...]  # per frame
    minimum: list[float] = field(default_factory=list)  # low-dim: per dimension
    maximum: list[float] = field(default_factory=list)
    mean: float | None = None  # images: mean pixel value


@dataclass
class StoreSummary:
    path: str
    n_episodes: int
    n_frames: int
    keys: list[KeySummary]
    episodes: list[dict[str, Any]]  # index, length and EPISODE_FIELDS

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "episodes": self.n_episodes,
            "frames": self.n_frames,
            "keys": [vars(key) for key in self.keys],
            "per_episode": self.episodes,
        }

    def text(self) -> str:
        lines = [f"{self.path}: {self.n_episodes} episodes, {self.n_frames} frames"]
        successes = sum(1 for e in self.episodes if e.get("success") is True)
        lengths = [e["length"] for e in self.episodes]
        if lengths:
            lines.append(
                f"  successes {successes}/{self.n_episodes}; length min {min(lengths)}, "
                f"median {int(np.median(lengths))}, max {max(lengths)}"
            )
        lines.append("keys (per frame):")
        for key in self.keys:
            what = f"  {key.key:<26} {key.dtype:<8} {str(key.shape):<14}"
            if key.mean is not None:
                what += f" mean pixel {key.mean:.1f}"
            else:
                ranges = ", ".join(
                    f"[{lo:.3g}, {hi:.3g}]"
                    for lo, hi in zip(key.minimum, key.maximum, strict=True)
                )
                what += f" range {ranges}"
            lines.append(what)
        lines.append("episodes:")
        widths = {
            name: max([len(name), *(len(_show(e.get(name))) for e in self.episodes)])
            for name in EPISODE_FIELDS
        }
        header = "  ".join(f"{name:<{widths[name]}}" for name in EPISODE_FIELDS)
        lines.append(f"  index  length  {header}")
        for episode in self.episodes:
            values = "  ".join(
                f"{_show(episode.get(name)):<{widths[name]}}" for name in EPISODE_FIELDS
            )
            lines.append(f"  {episode['index']:>5}  {episode['length']:>6}  {values}")
        return "\n".join(lines)


def _show(value: Any) -> str:
    return "-" if value is None or value == "" else str(value)


def summarize(store: EpisodeStore) -> StoreSummary:
    """Counts, per-key shapes/dtypes/ranges and per-episode metadata of `store`."""
    n_frames = store.n_frames
    keys = []
    for key in store.keys:
        array = store.array(key, n_frames)
        summary = KeySummary(key, str(array.dtype), tuple(array.shape[1:]))
        if n_frames and is_image_key(key):
            # A few frames spread over the store: the mean of every frame would read them all.
            picks = np.linspace(0, n_frames - 1, num=min(n_frames, 16)).astype(int)
            summary.mean = float(np.mean([array[i].mean() for i in picks]))
        elif n_frames:
            values = np.asarray(array[:n_frames]).reshape(n_frames, -1)
            summary.minimum = values.min(axis=0).tolist()
            summary.maximum = values.max(axis=0).tolist()
        keys.append(summary)
    ends = store.episode_ends
    starts = np.concatenate([[0], ends[:-1]])
    episodes = []
    for index, metadata in enumerate(store.all_metadata()):
        row = {"index": index, "length": int(ends[index] - starts[index])}
        row.update({name: metadata.get(name) for name in EPISODE_FIELDS})
        episodes.append(row)
    return StoreSummary(str(store.path), store.n_episodes, n_frames, keys, episodes)


def write_image_sample(store: EpisodeStore, path: str | Path, episode: int = 0) -> Path | None:
    """The first frame of `episode`, every camera side by side, as PNG (None: no camera)."""
    cameras = [key for key in store.keys if is_image_key(key)]
    if not cameras or store.n_episodes == 0:
        return None
    start = store.episode_slice(episode).start
    images = [np.asarray(store.array(key, start + 1)[start]) for key in cameras]
    height = max(image.shape[0] for image in images)
    images = [
        cv2.resize(image, (image.shape[1] * height // image.shape[0], height)) for image in images
    ]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(np.concatenate(images, axis=1), cv2.COLOR_RGB2BGR)):
        raise OSError(f"cannot write {path}")
    return path
