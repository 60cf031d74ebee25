"""Load a `dp-dataset export-lerobot` dataset with LeRobot's own LeRobotDataset and compare every
frame with the store it came from. Run by hand, in an environment of its own (never the project
venv: lerobot's packages would replace pinned ones):

    python3.11 -m venv /tmp/lerobot_env
    echo "$PWD/.venv/lib/python3.11/site-packages" \
        > /tmp/lerobot_env/lib/python3.11/site-packages/dp_ros_venv.pth   # torch, numpy, zarr
    /tmp/lerobot_env/bin/pip install -c requirements/constraints.txt lerobot-dataset
    .venv/bin/dp-dataset export-lerobot data/lift.zarr /tmp/lift_lerobot
    PYTHONPATH=src HF_HUB_OFFLINE=1 /tmp/lerobot_env/bin/python bench/check_lerobot_load.py \
        /tmp/lift_lerobot data/lift.zarr

`lerobot-dataset` is the standalone copy of lerobot.datasets (0.4.4 resolves under our
constraints, with our torch). Its video module imports torchvision, which cannot be imported
beside the CPU torch here (DESIGN.md), so a stub stands in for it, and frames are decoded with
PyAV at the timestamps LeRobot asks for (checked against its tolerance). Everything else is
LeRobot's: info.json, episodes and tasks metadata, the parquet data with its features, the
timestamp checks, the episode/video index arithmetic. Prints one line; exits non-zero on any
mismatch.
"""

import importlib.machinery
import sys
import types
from pathlib import Path

import numpy as np


def stub_torchvision() -> None:
    stub = types.ModuleType("torchvision")
    stub.io = types.SimpleNamespace(VideoReader=None)
    stub.transforms = types.ModuleType("torchvision.transforms")
    stub.transforms.v2 = types.ModuleType("torchvision.transforms.v2")
    for module in (stub, stub.transforms, stub.transforms.v2):
        module.__spec__ = importlib.machinery.ModuleSpec(module.__name__, None)
        sys.modules[module.__name__] = module


def decode_with_pyav(video_path, timestamps, tolerance_s, backend=None):
    """LeRobot's decode_video_frames contract: (N, 3, H, W) float in [0, 1]."""
    import av
    import torch

    with av.open(str(video_path)) as container:
        stream = container.streams.video[0]
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
        fps = float(stream.average_rate)
    picked = []
    for timestamp in timestamps:
        index = int(round(float(timestamp) * fps))
        if abs(index / fps - float(timestamp)) >= tolerance_s or index >= len(frames):
            raise ValueError(f"{video_path}: no frame at {timestamp} s ({len(frames)} frames)")
        picked.append(frames[index])
    return torch.from_numpy(np.stack(picked)).permute(0, 3, 1, 2).float() / 255


def main(root: str, store_path: str) -> int:
    stub_torchvision()
    from ledataset.datasets import lerobot_dataset, video_utils

    from dp_ros.data.lerobot_export import CAMERA_NAMES
    from dp_ros.data.store import EpisodeStore
    from dp_ros.keys import ACTION, ROBOT_STATE_KEYS

    video_utils.decode_video_frames = decode_with_pyav
    lerobot_dataset.decode_video_frames = decode_with_pyav
    dataset = lerobot_dataset.LeRobotDataset(repo_id="local/dp_ros_export", root=Path(root))
    store = EpisodeStore.open(store_path)
    state_keys = [key for key in ROBOT_STATE_KEYS if key in store.keys]
    cameras = [key for key in CAMERA_NAMES if key in store.keys]
    worst = 0.0
    for index in range(dataset.num_frames):
        item = dataset[index]
        row = store.episode_slice(int(item["episode_index"])).start + int(item["frame_index"])
        if not np.array_equal(item[ACTION].numpy(), store.array(ACTION)[row]):
            raise SystemExit(f"frame {index}: action differs from the store's row {row}")
        state = np.concatenate([store.array(key)[row] for key in state_keys])
        if not np.array_equal(item["observation.state"].numpy(), state):
            raise SystemExit(f"frame {index}: observation.state differs from row {row}")
        for key in cameras:
            image = item[f"observation.images.{CAMERA_NAMES[key]}"].permute(1, 2, 0).numpy()
            worst = max(worst, float(np.abs(image * 255 - store.array(key)[row]).mean()))
    print(
        f"LeRobotDataset read {dataset.num_episodes} episodes, {dataset.num_frames} frames at "
        f"{dataset.fps} fps, features {sorted(dataset.features)}; every action and state equals "
        f"the store's; worst mean pixel error of a video frame {worst:.2f} of 255"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
