"""Import a robomimic HDF5 dataset into an episode store.

robomimic keeps one group per demonstration, `data/demo_N/obs/<key>` (T, ...) and
`data/demo_N/actions` (T, 7); episodes are written in the order of N (numerically, so demo_10
follows demo_9). robomimic's image datasets were rendered by robosuite in OpenGL row order
(upside down); the store holds upright images (OpenCV row order), so they are flipped unless
`image_convention="opencv"` says the file already is upright.

Everything read is checked before it is written: groups and datasets where the format has
them, numeric dtypes, finite low-dim values and actions, and image values. Images must be uint8;
what converts unambiguously is converted (floats all within [0, 1] are scaled by 255, integers
all within [0, 255] are cast), anything else is refused. The store is written beside the target
and swapped into place at the end (data/staged_output.py): a refused import leaves no partial
output, and `--overwrite` replaces the old store only once the new one is complete.

Command line: `python -m dp_ros.data.robomimic_import lift_ph_image.hdf5 lift.zarr
--obs-keys agentview_image robot0_eef_pos robot0_eef_quat robot0_gripper_qpos`.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from tqdm import tqdm

from dp_ros.data.staged_output import staged_directory
from dp_ros.data.store import EpisodeStore
from dp_ros.keys import ACTION, CAMERA_KEYS, OBJECT_STATE, ROBOT_STATE_KEYS, is_image_key

DEFAULT_OBS_KEYS = (*CAMERA_KEYS, *ROBOT_STATE_KEYS, OBJECT_STATE)
IMAGE_CONVENTIONS = ("opengl", "opencv")
_DEMO_NAME = re.compile(r"^demo_(\d+)$")


class RobomimicFormatError(ValueError):
    """A robomimic file that cannot be imported; the message names the file, demo and key."""


def demo_names(data: h5py.Group, filter_key: str | None = None) -> list[str]:
    """Demo group names sorted by their number (demo_2 before demo_10)."""
    names = [name for name in data.keys() if _DEMO_NAME.match(name)]
    if filter_key is not None:
        mask_path = f"mask/{filter_key}"
        root = data.file
        if mask_path not in root:
            available = sorted(root["mask"].keys()) if "mask" in root else []
            raise RobomimicFormatError(
                f"{root.filename}: no filter key {filter_key!r} (available: {available})"
            )
        wanted = {name.decode() if isinstance(name, bytes) else name for name in root[mask_path]}
        names = [name for name in names if name in wanted]
    return sorted(names, key=lambda name: int(_DEMO_NAME.match(name).group(1)))


def default_obs_keys(demo: h5py.Group) -> list[str]:
    """The standard robomimic observation keys this demo has (cameras, robot state, object)."""
    present = set(demo["obs"].keys())
    return [key for key in DEFAULT_OBS_KEYS if key in present]


def read_demo(
    demo: h5py.Group, obs_keys: Sequence[str], image_convention: str
) -> dict[str, np.ndarray]:
    """One demo as a store episode {key: (T, ...)}; images upright uint8, low-dim float32."""
    where = f"{demo.file.filename}:{demo.name}"
    if not isinstance(demo, h5py.Group):
        raise RobomimicFormatError(f"{where} is a dataset; a demo must be a group")
    if "actions" not in demo:
        raise RobomimicFormatError(f"{where} has no 'actions' dataset")
    actions = _read_dataset(demo, "actions", where)
    episode = {ACTION: _low_dim(actions, f"{where}/actions")}
    obs = demo.get("obs")
    if obs is not None and not isinstance(obs, h5py.Group):
        raise RobomimicFormatError(f"{where}/obs is a dataset; it must be a group")
    for key in obs_keys:
        if obs is None or key not in obs:
            available = sorted(obs.keys()) if obs is not None else []
            raise RobomimicFormatError(f"{where} has no obs key {key!r} (it has {available})")
        values = _read_dataset(obs, key, f"{where}/obs")
        if is_image_key(key):
            values = image_as_uint8(values, f"{where}/obs/{key}")
            if image_convention == "opengl":
                values = np.ascontiguousarray(values[:, ::-1])  # rows: bottom-up -> top-down
        else:
            values = _low_dim(values, f"{where}/obs/{key}")
            if values.ndim == 1:
                values = values[:, None]
        if len(values) != len(actions):
            raise RobomimicFormatError(
                f"{where}/obs/{key} has {len(values)} frames but actions has {len(actions)}"
            )
        episode[key] = values
    return episode


def _read_dataset(group: h5py.Group, key: str, where: str) -> np.ndarray:
    """group[key] read whole; errors name the dataset (a group there, or unreadable bytes)."""
    item = group[key]
    if not isinstance(item, h5py.Dataset):
        raise RobomimicFormatError(f"{where}/{key} is a group; it must be a dataset")
    try:
        return np.asarray(item[()])
    except (OSError, ValueError, TypeError, KeyError) as error:
        raise RobomimicFormatError(f"{where}/{key} cannot be read ({error})") from error


def _low_dim(values: np.ndarray, where: str) -> np.ndarray:
    """Numeric and finite -> float32, else RobomimicFormatError naming the dataset."""
    if values.dtype.kind not in "biuf":
        raise RobomimicFormatError(f"{where} has dtype {values.dtype}; expected numbers")
    values = values.astype(np.float32)
    if not np.all(np.isfinite(values)):
        raise RobomimicFormatError(f"{where} holds NaN or infinite values")
    return values


def image_as_uint8(values: np.ndarray, where: str) -> np.ndarray:
    """Images as uint8: unchanged if uint8; floats all in [0, 1] scaled by 255 and rounded;
    integers all in [0, 255] cast; anything else refused (it would wrap or turn to zeros)."""
    if values.dtype == np.uint8:
        return values
    kind = values.dtype.kind
    if kind not in "fiu":
        raise RobomimicFormatError(f"{where} has dtype {values.dtype}; images must be uint8")
    if values.size == 0:
        return values.astype(np.uint8)
    if kind == "f" and not np.all(np.isfinite(values)):
        raise RobomimicFormatError(f"{where} is {values.dtype} holding NaN or infinite values")
    low, high = values.min(), values.max()
    if kind == "f" and 0 <= low and high <= 1:
        return np.round(values * 255.0).astype(np.uint8)
    if kind in "iu" and 0 <= low and high <= 255:
        return values.astype(np.uint8)
    raise RobomimicFormatError(
        f"{where} is {values.dtype} with values in [{low}, {high}]: not uint8, nor floats in "
        "[0, 1], nor integers in [0, 255]; convert it to uint8 before importing"
    )


def import_robomimic(
    hdf5_path: str | os.PathLike,
    store_path: str | os.PathLike,
    obs_keys: Sequence[str] | None = None,
    image_convention: str = "opengl",
    filter_key: str | None = None,
    max_episodes: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> EpisodeStore:
    """Write the demos of a robomimic file into a new store; returns it (open for appending)."""
    if image_convention not in IMAGE_CONVENTIONS:
        raise ValueError(
            f"image_convention must be one of {IMAGE_CONVENTIONS}, got {image_convention!r}"
        )
    hdf5_path = Path(hdf5_path)
    if not hdf5_path.is_file():
        raise FileNotFoundError(f"no robomimic file at {hdf5_path}")
    try:
        file = h5py.File(hdf5_path, "r")
    except OSError as error:  # truncated, or not HDF5 at all
        raise RobomimicFormatError(f"{hdf5_path}: not a readable HDF5 file ({error})") from error
    with file, staged_directory(store_path, overwrite, _is_store) as staging:
        if not isinstance(file.get("data"), h5py.Group):
            raise RobomimicFormatError(f"{hdf5_path} has no 'data' group: not robomimic format")
        data = file["data"]
        names = demo_names(data, filter_key)
        if not names:
            raise RobomimicFormatError(f"{hdf5_path} holds no data/demo_N groups")
        if max_episodes is not None:
            names = names[:max_episodes]
        first = data[names[0]]
        if not isinstance(first, h5py.Group) or not isinstance(first.get("obs"), h5py.Group):
            read_demo(first, list(obs_keys or ()), image_convention)  # raises, naming it
        keys = list(obs_keys) if obs_keys else default_obs_keys(first)
        read_demo(first, keys, image_convention)  # a bad key fails before any write
        task = _env_name(data)
        with EpisodeStore.create(staging) as store:
            for name in tqdm(names, desc=f"import {hdf5_path.name}", disable=not progress):
                episode = read_demo(data[name], keys, image_convention)
                metadata = {"source": "robomimic", "file": hdf5_path.name, "demo": name}
                if task:
                    metadata["task"] = task
                store.append_episode(episode, metadata)
    return EpisodeStore.open(store_path, mode="a")


def _is_store(path: Path) -> bool:
    return (path / ".zgroup").is_file()


def _env_name(data: h5py.Group) -> str | None:
    """robomimic stores the environment description as JSON in data.attrs['env_args']."""
    raw = data.attrs.get("env_args")
    if raw is None:
        return None
    try:
        env_args: dict[str, Any] = json.loads(raw)
    except (TypeError, ValueError):
        return None
    return env_args.get("env_name")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dp-import-robomimic",
        description="Import a robomimic HDF5 file into an episode store.",
    )
    parser.add_argument("hdf5", type=Path, help="robomimic dataset (.hdf5)")
    parser.add_argument("store", type=Path, help="episode store to create (zarr directory)")
    parser.add_argument(
        "--obs-keys",
        nargs="+",
        default=None,
        help="observation keys to import (default: the standard cameras, robot state, object)",
    )
    parser.add_argument(
        "--image-convention",
        choices=IMAGE_CONVENTIONS,
        default="opengl",
        help="row order of the file's images; opengl (robomimic's) is flipped to upright",
    )
    parser.add_argument("--filter-key", default=None, help="import only mask/<filter-key> demos")
    parser.add_argument("--max-episodes", type=int, default=None)
    parser.add_argument("--overwrite", action="store_true", help="replace an existing store")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        store = import_robomimic(
            args.hdf5,
            args.store,
            obs_keys=args.obs_keys,
            image_convention=args.image_convention,
            filter_key=args.filter_key,
            max_episodes=args.max_episodes,
            overwrite=args.overwrite,
        )
    except (OSError, ValueError) as error:  # FileNotFound/Exists are OSErrors; formats ValueErrors
        print(f"dp-import-robomimic: error: {error}", file=sys.stderr)
        return 2
    with store:
        print(
            f"imported {store.n_episodes} episodes, {store.n_frames} frames, keys "
            f"{list(store.keys)} into {store.path}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
