"""The episode store's directory on disk: clearing it for a new store, the one-writer lock, and
the temporary files a killed write leaves behind."""

from __future__ import annotations

import fcntl
import os
import shutil
from pathlib import Path

from dp_ros.data.episode_rules import StoreError

LOCK_FILE = ".dp_ros_writer.lock"


def clear_for_create(path: Path, overwrite: bool) -> None:
    if not path.is_dir():
        raise FileExistsError(f"{path} exists and is not a directory")
    if not any(path.iterdir()):
        return
    if not overwrite:
        raise FileExistsError(f"{path} exists and is not empty (pass overwrite=True to replace)")
    if not (path / ".zgroup").is_file():
        raise FileExistsError(f"refusing to overwrite {path}: it is not a zarr store")
    shutil.rmtree(path)


def take_writer_lock(path: Path) -> int:
    """An exclusive advisory lock on the store; the kernel drops it when the writer dies."""
    fd = os.open(path / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise StoreError(
            f"{path} is already open for appending elsewhere; one writer at a time"
        ) from None
    return fd


def remove_partial_files(path: Path) -> None:
    """Delete temporary files a killed DirectoryStore write left behind (never read by zarr)."""
    for directory, _, files in os.walk(path):
        for name in files:
            if name.endswith(".partial"):
                os.remove(os.path.join(directory, name))
