"""Looking at episodes: a PNG of actions and end-effector state, an MP4 of the cameras with the
action curves under them, and an HTML page of a whole store (`dp-dataset plot/video/view`).

The viewer is a static HTML page (videos, plots, the `info` table) rather than rerun: rerun-sdk
did not resolve beside our pins (numpy 1.26.4, torch 2.13.0) here. Any browser opens it, also on
a machine without dp_ros.
"""

from __future__ import annotations

import html
import os
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from dp_ros.data.inspect import EPISODE_FIELDS, summarize
from dp_ros.data.store import EpisodeStore
from dp_ros.keys import ACTION, EEF_POS, GRIPPER_QPOS, is_image_key

ACTION_LABELS = ("dx", "dy", "dz", "drx", "dry", "drz", "gripper")
VIDEO_SCALE = 4  # 84x84 frames are tiny on a screen; nearest-neighbour keeps the pixels
CURVE_HEIGHT = 160  # pixels of action curves under the cameras
FPS = 20.0  # the control rate the stores are recorded at (period_ns in the metadata)


def _fps(store: EpisodeStore, episode: int) -> float:
    period_ns = store.episode_metadata(episode).get("period_ns")
    return 1e9 / period_ns if period_ns else FPS


def plot_episode(store: EpisodeStore, episode: int, path: str | os.PathLike) -> Path:
    """PNG: the 7 action dimensions, then eef position and gripper when stored, over time (s)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [key for key in (ACTION, EEF_POS, GRIPPER_QPOS) if key in store.keys]
    data = store.episode(episode, tuple(keys))
    t = np.arange(len(data[ACTION])) / _fps(store, episode)
    figure, axes = plt.subplots(len(keys), 1, figsize=(9, 2.6 * len(keys)), sharex=True)
    axes = np.atleast_1d(axes)
    for axis, key in zip(axes, keys, strict=True):
        values = data[key].reshape(len(t), -1)
        labels = (
            ACTION_LABELS if key == ACTION else [f"{key}[{i}]" for i in range(values.shape[1])]
        )
        for column in range(values.shape[1]):
            axis.plot(t, values[:, column], label=labels[column], linewidth=1.2)
        axis.set_ylabel(key)
        axis.legend(loc="upper right", fontsize=7, ncol=min(7, values.shape[1]))
        axis.grid(alpha=0.3)
    axes[-1].set_xlabel("time (s)")
    metadata = store.episode_metadata(episode)
    title = f"episode {episode}: " + ", ".join(
        f"{name} {metadata.get(name)}" for name in ("task", "seed", "success")
    )
    axes[0].set_title(title)
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return path


def _curve_strip(actions: np.ndarray, width: int) -> np.ndarray:
    """uint8 (CURVE_HEIGHT, width, 3) RGB: each action dimension as a coloured line."""
    strip = np.full((CURVE_HEIGHT, width, 3), 255, np.uint8)
    T = len(actions)
    xs = np.linspace(0, width - 1, T).astype(np.int32) if T > 1 else np.zeros(1, np.int32)
    # [-1, 1] -> strip rows (actions are normalised to that range).
    ys = ((1 - np.clip(actions, -1, 1)) / 2 * (CURVE_HEIGHT - 1)).astype(np.int32)
    cv2.line(strip, (0, CURVE_HEIGHT // 2), (width - 1, CURVE_HEIGHT // 2), (200, 200, 200), 1)
    colours = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
               (140, 86, 75), (0, 0, 0)]  # fmt: skip
    for dim in range(actions.shape[1]):
        points = np.stack([xs, ys[:, dim]], axis=1).reshape(-1, 1, 2)
        cv2.polylines(strip, [points], False, colours[dim % len(colours)], 1)
    return strip


def video_episode(
    store: EpisodeStore, episode: int, path: str | os.PathLike, progress: bool = False
) -> Path:
    """MP4 (mp4v) at the recording rate: the cameras side by side, action curves with a cursor
    under them. A store without cameras gets the curves alone."""
    cameras = [key for key in store.keys if is_image_key(key)]
    data = store.episode(episode, (*cameras, ACTION))
    actions = data[ACTION]
    T = len(actions)
    if cameras:
        width = sum(data[key].shape[2] for key in cameras) * VIDEO_SCALE
    else:
        width = 640
    strip = _curve_strip(actions, width)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = None
    try:
        for step in tqdm(range(T), desc="frames", unit="fr", disable=not progress):
            frame = strip.copy()
            x = int(round(step * (width - 1) / max(T - 1, 1)))
            cv2.line(frame, (x, 0), (x, CURVE_HEIGHT - 1), (255, 0, 0), 1)
            if cameras:
                images = np.concatenate([data[key][step] for key in cameras], axis=1)
                images = cv2.resize(
                    images,
                    (images.shape[1] * VIDEO_SCALE, images.shape[0] * VIDEO_SCALE),
                    interpolation=cv2.INTER_NEAREST,
                )
                frame = np.concatenate([images, frame], axis=0)
            if writer is None:
                fourcc = cv2.VideoWriter_fourcc(*"mp4v")
                size = (frame.shape[1], frame.shape[0])
                writer = cv2.VideoWriter(str(path), fourcc, _fps(store, episode), size)
                if not writer.isOpened():
                    raise OSError(f"OpenCV cannot write an mp4v video to {path}")
            writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    finally:
        if writer is not None:
            writer.release()
    return path


def write_view(
    store: EpisodeStore, out_dir: str | os.PathLike, episodes: list[int], progress: bool = True
) -> Path:
    """An HTML page (out_dir/index.html) with the store summary and, for `episodes`, each
    episode's video and plot."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = summarize(store)
    rows = []
    for row in summary.episodes:
        cells = [row["index"], row["length"], *(row.get(name) for name in EPISODE_FIELDS)]
        link = f'<a href="#ep{row["index"]}">' if row["index"] in episodes else ""
        cells[0] = f"{link}{row['index']}{'</a>' if link else ''}"
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    sections = []
    for episode in tqdm(episodes, desc="episodes", unit="ep", disable=not progress):
        video = video_episode(store, episode, out_dir / f"episode_{episode}.mp4")
        plot = plot_episode(store, episode, out_dir / f"episode_{episode}.png")
        sections.append(
            f'<h2 id="ep{episode}">episode {episode}</h2>'
            f'<video src="{video.name}" controls loop muted width="672"></video>'
            f'<br><img src="{plot.name}" width="810">'
        )
    header = "".join(f"<th>{h}</th>" for h in ("episode", "length", *EPISODE_FIELDS))
    page = f"""<!doctype html><html><head><meta charset="utf-8">
<title>{html.escape(str(store.path))}</title>
<style>body{{font-family:sans-serif;margin:2em}}td,th{{padding:2px 8px;text-align:right}}</style>
</head><body><h1>{html.escape(str(store.path))}</h1>
<pre>{html.escape(summary.text().split("episodes:")[0])}</pre>
<table><tr>{header}</tr>{"".join(rows)}</table>
{"".join(sections)}
</body></html>
"""
    index = out_dir / "index.html"
    index.write_text(page)
    return index
