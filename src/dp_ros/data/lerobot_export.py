"""An episode store as a LeRobot v3.0 dataset (`dp-dataset export-lerobot STORE OUT`), and a
reader that checks one against the published layout and reads it back; ROS-free.

Layout written (LeRobotDataset v3.0, codebase_version "v3.0"):

    meta/info.json                              features, fps, totals, path templates
    meta/stats.json                             min/max/mean/std/count per feature
    meta/tasks.parquet                          task (the pandas index), task_index
    meta/episodes/chunk-000/file-000.parquet    one row per episode: episode_index, tasks,
                                                length, dataset_from/to_index, data/ and
                                                videos/<key>/ chunk/file indices and
                                                from/to_timestamp, meta/episodes/ indices,
                                                plus `dp_ros/metadata` (the store's JSON)
    data/chunk-000/file-000.parquet             one row per frame: the features, timestamp,
                                                frame_index, episode_index, index, task_index
    videos/observation.images.<cam>/chunk-000/file-000.mp4
                                                one MP4 per camera, episodes back to back

Features: each camera key -> `observation.images.<name>` (agentview, wrist); the robot state
keys -> `observation.state` (eef pos 3, quat xyzw 4, gripper 2; `names` says which); `object`
-> `observation.environment_state`; any other low-dim key -> `observation.<key>`; `action`.
Videos are mp4v (MPEG-4 part 2, what OpenCV writes everywhere, decodable by PyAV/torchcodec);
LeRobot's own recorder uses AV1, which this OpenCV build cannot write. Video frames are lossy;
every other value is exact.

One data file and one video file per camera: LeRobot starts a new file past 100 MB (data) and
200 MB (video); stores far beyond that would need the split (not done here).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from dp_ros.data.store import EpisodeStore
from dp_ros.keys import (
    ACTION,
    AGENTVIEW_IMAGE,
    OBJECT_STATE,
    ROBOT_STATE_KEYS,
    WRIST_IMAGE,
    is_image_key,
)

CODEBASE_VERSION = "v3.0"
CHUNKS_SIZE = 1000
DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
EPISODES_PATH = "meta/episodes/chunk-000/file-000.parquet"
STATE, ENV_STATE = "observation.state", "observation.environment_state"
ACTION_NAMES = ["dx", "dy", "dz", "drx", "dry", "drz", "gripper"]
CAMERA_NAMES = {AGENTVIEW_IMAGE: "agentview", WRIST_IMAGE: "wrist"}
INDEX_FEATURES = ("timestamp", "frame_index", "episode_index", "index", "task_index")
REQUIRED_EPISODE_COLUMNS = (
    "episode_index", "tasks", "length", "data/chunk_index", "data/file_index",
    "dataset_from_index", "dataset_to_index", "meta/episodes/chunk_index",
    "meta/episodes/file_index",
)  # fmt: skip
VIDEO_COLUMNS = ("chunk_index", "file_index", "from_timestamp", "to_timestamp")


class LeRobotFormatError(ValueError):
    """A dataset that breaks the LeRobot v3.0 layout; the message names the file and rule."""


def camera_feature(key: str) -> str:
    return f"observation.images.{CAMERA_NAMES.get(key, key.removesuffix('_image'))}"


def _state_parts(store_keys: tuple[str, ...]) -> list[tuple[str, int]]:
    return [(key, 0) for key in ROBOT_STATE_KEYS if key in store_keys]


# ---- export ------------------------------------------------------------------------------


def export_lerobot(
    store: EpisodeStore,
    out: str | os.PathLike,
    robot_type: str = "panda",
    fps: float | None = None,
    progress: bool = True,
) -> Path:
    """Write `store` as a LeRobot v3.0 dataset at `out` (must not exist); returns `out`.

    Built in a temporary directory beside `out` and renamed into place, so a failure leaves
    nothing that looks like a dataset.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = Path(out)
    if out.exists():
        raise FileExistsError(f"{out} exists: export writes a new dataset")
    if store.n_episodes == 0:
        raise ValueError(f"{store.path} holds no episode: nothing to export")
    metadata = store.all_metadata()
    fps = fps or 1e9 / float(metadata[0].get("period_ns") or 5e7)
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    work.chmod(0o755)  # mkdtemp's 0700 would otherwise become the dataset's
    try:
        cameras = [key for key in store.keys if is_image_key(key)]
        state_keys = [key for key in ROBOT_STATE_KEYS if key in store.keys]
        other = [k for k in store.keys if k not in (*cameras, *state_keys, ACTION, OBJECT_STATE)]
        tasks = sorted({str(m.get("task") or "") for m in metadata})
        task_index = {task: i for i, task in enumerate(tasks)}
        columns: dict[str, list] = {}
        episodes: list[dict[str, Any]] = []
        writers = {key: _VideoFile(work, camera_feature(key), fps) for key in cameras}
        ends = store.episode_ends
        for index in tqdm(range(store.n_episodes), desc="episodes", disable=not progress):
            arrays = store.episode(index)
            length = len(arrays[ACTION])
            start = int(ends[index]) - length
            task = str(metadata[index].get("task") or "")
            frame = {
                "timestamp": (np.arange(length) / fps).astype(np.float32),
                "frame_index": np.arange(length, dtype=np.int64),
                "episode_index": np.full(length, index, np.int64),
                "index": np.arange(start, start + length, dtype=np.int64),
                "task_index": np.full(length, task_index[task], np.int64),
                ACTION: arrays[ACTION],
            }
            if state_keys:
                frame[STATE] = np.concatenate([arrays[k] for k in state_keys], axis=1)
            if OBJECT_STATE in arrays:
                frame[ENV_STATE] = arrays[OBJECT_STATE]
            for key in other:
                frame[f"observation.{key}"] = arrays[key].reshape(length, -1)
            for name, values in frame.items():
                columns.setdefault(name, []).append(values)
            row = {
                "episode_index": index,
                "tasks": [task],
                "length": length,
                "data/chunk_index": 0,
                "data/file_index": 0,
                "dataset_from_index": start,
                "dataset_to_index": start + length,
            }
            for key in cameras:
                begin = writers[key].write(arrays[key])
                feature = camera_feature(key)
                row[f"videos/{feature}/chunk_index"] = 0
                row[f"videos/{feature}/file_index"] = 0
                row[f"videos/{feature}/from_timestamp"] = begin / fps
                row[f"videos/{feature}/to_timestamp"] = (begin + length) / fps
            row["meta/episodes/chunk_index"] = 0
            row["meta/episodes/file_index"] = 0
            row["dp_ros/metadata"] = json.dumps(metadata[index], sort_keys=True)
            episodes.append(row)
        for writer in writers.values():
            writer.close()
        data = {name: np.concatenate(parts) for name, parts in columns.items()}
        table = pa.table({name: _arrow_column(values) for name, values in data.items()})
        _write_parquet(pq, table, work / DATA_PATH.format(chunk_index=0, file_index=0))
        _write_parquet(pq, pa.Table.from_pylist(episodes), work / EPISODES_PATH)
        _write_parquet(pq, _tasks_table(pa, tasks), work / "meta" / "tasks.parquet")
        features = _features(store, data, cameras, state_keys, other, fps)
        stats = {name: _stats(values) for name, values in data.items()}
        stats.update({camera_feature(key): _image_stats(store, key) for key in cameras})
        info = {
            "codebase_version": CODEBASE_VERSION,
            "robot_type": robot_type,
            "total_episodes": store.n_episodes,
            "total_frames": store.n_frames,
            "total_tasks": len(tasks),
            "chunks_size": CHUNKS_SIZE,
            "data_files_size_in_mb": 100,
            "video_files_size_in_mb": 200,
            "fps": fps,
            "splits": {"train": f"0:{store.n_episodes}"},
            "data_path": DATA_PATH,
            "video_path": VIDEO_PATH if cameras else None,
            "features": features,
        }
        (work / "meta" / "info.json").write_text(json.dumps(info, indent=2))
        (work / "meta" / "stats.json").write_text(json.dumps(stats, indent=2))
        os.rename(work, out)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return out


class _VideoFile:
    """One camera's MP4: every episode's frames back to back; `write` returns the first frame's
    position in the file."""

    def __init__(self, root: Path, feature: str, fps: float) -> None:
        self.path = root / VIDEO_PATH.format(video_key=feature, chunk_index=0, file_index=0)
        self.fps = fps
        self.frames = 0
        self._writer: cv2.VideoWriter | None = None

    def write(self, images: np.ndarray) -> int:
        """images: uint8 (T, H, W, 3) RGB."""
        if self._writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            height, width = images.shape[1:3]
            fourcc = cv2.VideoWriter_fourcc(*"mp4v")
            self._writer = cv2.VideoWriter(str(self.path), fourcc, self.fps, (width, height))
            if not self._writer.isOpened():
                raise OSError(f"OpenCV cannot write an mp4v video to {self.path}")
        first = self.frames
        for image in images:
            self._writer.write(cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        self.frames += len(images)
        return first

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()


def _arrow_column(values: np.ndarray):
    """(N,) -> a plain column; (N, D) -> fixed-size lists of D (HF datasets' Sequence(length))."""
    import pyarrow as pa

    if values.ndim == 1:
        return pa.array(values)
    flat = pa.array(np.ascontiguousarray(values).reshape(-1))
    return pa.FixedSizeListArray.from_arrays(flat, values.shape[1])


def _write_parquet(pq, table, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)


def _tasks_table(pa, tasks: list[str]):
    """task_index per task, with `task` marked as the pandas index (how LeRobot writes it)."""
    table = pa.table({"task_index": pa.array(range(len(tasks)), pa.int64()), "task": tasks})
    pandas_meta = {
        "index_columns": ["task"],
        "column_indexes": [],
        "columns": [
            {"name": "task_index", "field_name": "task_index", "pandas_type": "int64",
             "numpy_type": "int64", "metadata": None},
            {"name": "task", "field_name": "task", "pandas_type": "unicode",
             "numpy_type": "object", "metadata": None},
        ],
        "creator": {"library": "dp_ros"},
        "pandas_version": "2.2.0",
    }  # fmt: skip
    return table.replace_schema_metadata({"pandas": json.dumps(pandas_meta)})


def _features(store, data, cameras, state_keys, other, fps) -> dict[str, Any]:
    features: dict[str, Any] = {}
    for key in cameras:
        height, width, channels = store.array(key).shape[1:]
        features[camera_feature(key)] = {
            "dtype": "video",
            "shape": [height, width, channels],
            "names": ["height", "width", "channels"],
            "info": {
                "video.height": height,
                "video.width": width,
                "video.codec": "mpeg4",
                "video.pix_fmt": "yuv420p",
                "video.is_depth_map": False,
                "video.fps": fps,
                "video.channels": channels,
                "has_audio": False,
            },
        }
    if state_keys:
        names = [f"{key}.{i}" for key in state_keys for i in range(store.array(key).shape[1])]
        features[STATE] = {"dtype": "float32", "shape": [len(names)], "names": names}
    if ENV_STATE in data:
        size = data[ENV_STATE].shape[1]
        features[ENV_STATE] = {
            "dtype": "float32",
            "shape": [size],
            "names": [f"{OBJECT_STATE}.{i}" for i in range(size)],
        }
    for key in other:
        size = data[f"observation.{key}"].shape[1]
        features[f"observation.{key}"] = {"dtype": "float32", "shape": [size], "names": None}
    features[ACTION] = {"dtype": "float32", "shape": [7], "names": ACTION_NAMES}
    features["timestamp"] = {"dtype": "float32", "shape": [1], "names": None}
    for name in ("frame_index", "episode_index", "index", "task_index"):
        features[name] = {"dtype": "int64", "shape": [1], "names": None}
    return features


def _stats(values: np.ndarray) -> dict[str, Any]:
    values = values.reshape(len(values), -1).astype(np.float64)
    return {
        "min": values.min(axis=0).tolist(),
        "max": values.max(axis=0).tolist(),
        "mean": values.mean(axis=0).tolist(),
        "std": values.std(axis=0).tolist(),
        "count": [len(values)],
    }


def _image_stats(store: EpisodeStore, key: str) -> dict[str, Any]:
    """Per channel, in [0, 1], shaped (3, 1, 1) as LeRobot keeps image statistics; from at most
    100 frames spread over the store."""
    array = store.array(key, store.n_frames)
    picks = np.linspace(0, store.n_frames - 1, num=min(store.n_frames, 100)).astype(int)
    pixels = np.stack([array[i] for i in picks]).reshape(-1, 3).astype(np.float64) / 255.0

    def shaped(values: np.ndarray) -> list:
        return values.reshape(3, 1, 1).tolist()

    return {
        "min": shaped(pixels.min(axis=0)),
        "max": shaped(pixels.max(axis=0)),
        "mean": shaped(pixels.mean(axis=0)),
        "std": shaped(pixels.std(axis=0)),
        "count": [len(picks)],
    }


# ---- reading back and checking --------------------------------------------------------------
