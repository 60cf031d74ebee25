"""Reading a LeRobot v3 dataset back and checking it against the published layout (the round
trip of export_lerobot; code moved out of lerobot_export.py, not changed).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from dp_ros.data.lerobot_export import (
    CODEBASE_VERSION,
    DATA_PATH,
    EPISODES_PATH,
    INDEX_FEATURES,
    REQUIRED_EPISODE_COLUMNS,
    VIDEO_COLUMNS,
    VIDEO_PATH,
    LeRobotFormatError,
)


def read_lerobot(root: str | os.PathLike) -> tuple[dict[str, Any], list[dict[str, np.ndarray]]]:
    """Check `root` against the v3.0 layout and read it: (info, one {feature: array} per
    episode, video features decoded to uint8 (T, H, W, 3) RGB). LeRobotFormatError names the
    first rule broken."""
    import pyarrow.parquet as pq

    root = Path(root)
    info = _read_info(root)
    features = info["features"]
    data_file = root / DATA_PATH.format(chunk_index=0, file_index=0)
    episodes_file = root / EPISODES_PATH
    for path in (data_file, episodes_file, root / "meta" / "tasks.parquet"):
        if not path.is_file():
            raise LeRobotFormatError(f"{path} is missing")
    data = pq.read_table(data_file).to_pydict()
    missing = [name for name in features if features[name]["dtype"] != "video"]
    missing = [name for name in missing if name not in data]
    if missing:
        raise LeRobotFormatError(f"{data_file}: no column for feature(s) {missing}")
    if len(data["index"]) != info["total_frames"]:
        raise LeRobotFormatError(
            f"{data_file}: {len(data['index'])} rows but info.json total_frames is "
            f"{info['total_frames']}"
        )
    rows = pq.read_table(episodes_file).to_pylist()
    _check_episode_rows(rows, info, episodes_file)
    tasks = pq.read_table(root / "meta" / "tasks.parquet").to_pydict()
    if set(tasks) < {"task_index", "task"} or len(tasks["task"]) != info["total_tasks"]:
        raise LeRobotFormatError(f"{root}/meta/tasks.parquet: needs task and task_index rows")
    videos = {
        name: _decode_video(root / VIDEO_PATH.format(video_key=name, chunk_index=0, file_index=0))
        for name, spec in features.items()
        if spec["dtype"] == "video"
    }
    episodes = []
    for row in rows:
        begin, end = row["dataset_from_index"], row["dataset_to_index"]
        episode = {
            name: np.asarray(data[name][begin:end], dtype=_numpy_dtype(spec["dtype"]))
            for name, spec in features.items()
            if spec["dtype"] != "video"
        }
        if not np.all(episode["episode_index"] == row["episode_index"]):
            raise LeRobotFormatError(f"episode {row['episode_index']}: rows of another episode")
        for name, frames in videos.items():
            first = round(row[f"videos/{name}/from_timestamp"] * info["fps"])
            last = round(row[f"videos/{name}/to_timestamp"] * info["fps"])
            if last - first != row["length"] or last > len(frames):
                raise LeRobotFormatError(
                    f"{name}: episode {row['episode_index']} spans frames [{first}, {last}) of "
                    f"{len(frames)} for length {row['length']}"
                )
            episode[name] = frames[first:last]
        episodes.append(episode)
    return info, episodes


def _read_info(root: Path) -> dict[str, Any]:
    path = root / "meta" / "info.json"
    if not path.is_file():
        raise LeRobotFormatError(f"{path} is missing")
    info = json.loads(path.read_text())
    required = ("codebase_version", "fps", "total_episodes", "total_frames", "total_tasks",
                "chunks_size", "data_path", "features", "splits")  # fmt: skip
    absent = [name for name in required if name not in info]
    if absent:
        raise LeRobotFormatError(f"{path}: lacks {absent}")
    if info["codebase_version"] != CODEBASE_VERSION:
        raise LeRobotFormatError(f"{path}: codebase_version {info['codebase_version']!r}")
    for name in INDEX_FEATURES:
        if name not in info["features"]:
            raise LeRobotFormatError(f"{path}: feature {name!r} is missing")
    return info


def _check_episode_rows(rows: list[dict], info: dict, path: Path) -> None:
    if len(rows) != info["total_episodes"]:
        raise LeRobotFormatError(f"{path}: {len(rows)} rows for {info['total_episodes']} episodes")
    videos = [name for name, spec in info["features"].items() if spec["dtype"] == "video"]
    required = [*REQUIRED_EPISODE_COLUMNS]
    required += [f"videos/{name}/{part}" for name in videos for part in VIDEO_COLUMNS]
    expected_from = 0
    for row in rows:
        absent = [name for name in required if name not in row]
        if absent:
            raise LeRobotFormatError(f"{path}: episode rows lack {absent}")
        if row["dataset_from_index"] != expected_from:
            raise LeRobotFormatError(f"{path}: episode {row['episode_index']} is not contiguous")
        if row["dataset_to_index"] - row["dataset_from_index"] != row["length"]:
            raise LeRobotFormatError(f"{path}: episode {row['episode_index']} length mismatch")
        expected_from = row["dataset_to_index"]


def _decode_video(path: Path) -> np.ndarray:
    if not path.is_file():
        raise LeRobotFormatError(f"{path} is missing")
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    capture.release()
    return np.stack(frames) if frames else np.zeros((0, 1, 1, 3), np.uint8)


def _numpy_dtype(dtype: str):
    return {"float32": np.float32, "int64": np.int64}.get(dtype, None)
