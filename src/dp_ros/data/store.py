"""Episode store: Diffusion Policy's replay-buffer layout on zarr v2, safe against a killed writer.

Layout of the zarr v2 directory (the same as Diffusion Policy's ReplayBuffer, so datasets move
between the projects):

    data/<key>              (N, ...)  every episode's frames concatenated over time
    meta/episode_ends       (E,) int64, the exclusive end frame of each episode
    meta/episode_metadata   (E,) JSON text per episode (task, operator, success, seed, ...)

Images are uint8 (T, H, W, C), chunked one frame per chunk so that a training sample reads only
the frames it needs; low-dim arrays and `action` are float32 (T, D).

`meta/episode_ends` is the commit record. An append writes the frames, then the metadata, and
extends `episode_ends` last, with one atomic file replace (see `_commit_episode_end`). Readers
look at nothing past the last end, so a writer killed mid-episode leaves a store that opens with
every earlier episode; the next writer to open it in append mode cuts the leftovers off. One
writer at a time (an advisory lock enforces it); any number of readers, in other processes, while
it writes: a reader re-reads `episode_ends` whenever it is asked for it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping, MutableMapping
from pathlib import Path
from typing import Any

import numcodecs
import numpy as np
import zarr

from dp_ros.data.episode_rules import StoreError, encode_metadata, validate_episode
from dp_ros.data.store_files import clear_for_create, remove_partial_files, take_writer_lock
from dp_ros.keys import is_image_key

STORE_VERSION = 1
ENDS_PATH = "meta/episode_ends"
METADATA_PATH = "meta/episode_metadata"

# zstd through Blosc: about 3x on rendered 84x84 scenes at a few hundred MB/s either way, and
# readable by any zarr/numcodecs install (Diffusion Policy's environment included).
IMAGE_COMPRESSOR = numcodecs.Blosc(cname="zstd", clevel=3, shuffle=numcodecs.Blosc.NOSHUFFLE)
LOW_DIM_COMPRESSOR = numcodecs.Blosc(cname="zstd", clevel=3, shuffle=numcodecs.Blosc.SHUFFLE)
# Low-dim rows per chunk: big enough that a store of thousands of episodes stays a few files,
# small enough that rewriting the last chunk on every append costs well under a millisecond.
LOW_DIM_CHUNK_ROWS = 4096
ENDS_CHUNK = 4096
METADATA_CHUNK = 1024


class _HeldMetadataStore(MutableMapping):
    """A view of a zarr store that keeps back writes of one metadata key until `publish()`.

    Used to write an array's new chunk data before its new shape becomes visible.
    """

    def __init__(self, base: MutableMapping, held_key: str) -> None:
        self._base = base
        self._held_key = held_key
        self._held: bytes | None = None

    def __getitem__(self, key: str) -> Any:
        if key == self._held_key and self._held is not None:
            return self._held
        return self._base[key]

    def __setitem__(self, key: str, value: Any) -> None:
        if key == self._held_key:
            self._held = bytes(value)
        else:
            self._base[key] = value

    def __delitem__(self, key: str) -> None:
        del self._base[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._base)

    def __len__(self) -> int:
        return len(self._base)

    def __contains__(self, key: object) -> bool:
        return key == self._held_key and self._held is not None or key in self._base

    def publish(self) -> None:
        """Write the held metadata to the real store (DirectoryStore: temp file + rename)."""
        if self._held is not None:
            self._base[self._held_key] = self._held


class EpisodeStore:
    """Episodes of synchronised observations and actions in a zarr v2 directory.

    Use `EpisodeStore.create(path)` for a new store and `EpisodeStore.open(path, mode)` for an
    existing one ("r": read; "a": append, one writer at a time).
    """

    def __init__(self, path: Path, mode: str, lock_fd: int | None) -> None:
        self._path = path
        self._mode = mode
        self._lock_fd = lock_fd
        self._zstore = zarr.DirectoryStore(str(path))
        self._root = zarr.open_group(self._zstore, mode="r" if mode == "r" else "r+")
        self._arrays: dict[str, zarr.Array] = {}

    # ---- opening ---------------------------------------------------------------------------

    @classmethod
    def create(cls, path: str | os.PathLike, overwrite: bool = False) -> EpisodeStore:
        """Make an empty store at `path` and open it for appending.

        An existing non-empty directory is an error unless `overwrite` is set, and even then
        only a zarr store (or an empty directory) is ever deleted.
        """
        path = Path(path)
        if path.exists():
            clear_for_create(path, overwrite)
        path.mkdir(parents=True, exist_ok=True)
        root = zarr.open_group(zarr.DirectoryStore(str(path)), mode="w")
        root.attrs["dp_ros_store_version"] = STORE_VERSION
        root.create_group("data")
        meta = root.create_group("meta")
        meta.create_dataset(
            "episode_ends", shape=(0,), chunks=(ENDS_CHUNK,), dtype=np.int64, compressor=None
        )
        _create_metadata_array(meta)
        return cls.open(path, mode="a")

    @classmethod
    def open(cls, path: str | os.PathLike, mode: str = "r") -> EpisodeStore:
        """Open an existing store: mode "r" to read, "a" to append (drops uncommitted frames)."""
        if mode not in ("r", "a"):
            raise ValueError(f"mode must be 'r' or 'a', got {mode!r}")
        path = Path(path)
        if not path.is_dir():
            raise FileNotFoundError(f"no episode store at {path} (directory does not exist)")
        if not (path / "data").is_dir() or not (path / ENDS_PATH / ".zarray").is_file():
            raise StoreError(
                f"{path} is not an episode store: it needs data/ and {ENDS_PATH} "
                "(Diffusion Policy replay-buffer layout)"
            )
        lock_fd = take_writer_lock(path) if mode == "a" else None
        store = cls(path, mode, lock_fd)
        if mode == "a":
            try:
                store._drop_uncommitted()
            except BaseException:
                store.close()
                raise
        return store

    def close(self) -> None:
        """Release the writer lock (readers hold nothing)."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor releases the flock
            self._lock_fd = None

    def __enter__(self) -> EpisodeStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"EpisodeStore({str(self._path)!r}, mode={self._mode!r}, "
            f"n_episodes={self.n_episodes}, n_frames={self.n_frames}, keys={list(self.keys)})"
        )

    # ---- reading ---------------------------------------------------------------------------

    @property
    def path(self) -> Path:
        return self._path

    @property
    def mode(self) -> str:
        return self._mode

    @property
    def episode_ends(self) -> np.ndarray:
        """(E,) int64 exclusive end frames, re-read from disk on every access."""
        ends = zarr.open_array(self._zstore, mode="r", path=ENDS_PATH)[:].astype(np.int64)
        if ends.size and (ends[0] <= 0 or np.any(np.diff(ends) <= 0)):
            raise StoreError(f"{self._path}: {ENDS_PATH} is not strictly increasing: {ends}")
        return ends

    @property
    def n_episodes(self) -> int:
        return int(self.episode_ends.shape[0])

    @property
    def n_frames(self) -> int:
        """Frames in finished episodes (uncommitted frames past the last end do not count)."""
        ends = self.episode_ends
        return int(ends[-1]) if ends.size else 0

    @property
    def keys(self) -> tuple[str, ...]:
        """Sorted array keys; empty until the first episode is committed."""
        if self.n_episodes == 0:
            return ()
        data = zarr.open_group(self._zstore, mode="r", path="data")
        return tuple(sorted(data.array_keys()))

    def episode_slice(self, index: int) -> slice:
        """The frames of episode `index` (negative counts from the end) as a slice of data/."""
        ends = self.episode_ends
        n = ends.shape[0]
        if not -n <= index < n:
            raise IndexError(f"episode {index} out of range: the store has {n} episodes")
        index %= n
        start = int(ends[index - 1]) if index > 0 else 0
        return slice(start, int(ends[index]))

    def episode(self, index: int, keys: tuple[str, ...] | None = None) -> dict[str, np.ndarray]:
        """One episode's arrays {key: (T, ...)} (all keys unless `keys` picks some)."""
        frames = self.episode_slice(index)
        wanted = self.keys if keys is None else tuple(keys)
        return {key: self.array(key, frames.stop)[frames] for key in wanted}

    def episode_metadata(self, index: int) -> dict[str, Any]:
        """The metadata dict stored with episode `index` ({} for stores without metadata)."""
        n = self.n_episodes
        if not -n <= index < n:
            raise IndexError(f"episode {index} out of range: the store has {n} episodes")
        if METADATA_PATH.split("/")[1] not in self._root["meta"]:
            return {}  # a store written by Diffusion Policy itself
        text = zarr.open_array(self._zstore, mode="r", path=METADATA_PATH)[index % n]
        return json.loads(text) if text else {}

    def all_metadata(self) -> list[dict[str, Any]]:
        """Every committed episode's metadata, in one read (index i: episode i)."""
        n = self.n_episodes
        if n == 0 or METADATA_PATH.split("/")[1] not in self._root["meta"]:
            return [{} for _ in range(n)]
        texts = zarr.open_array(self._zstore, mode="r", path=METADATA_PATH)[:n]
        return [json.loads(text) if text else {} for text in texts]

    def array(self, key: str, min_frames: int = 0) -> zarr.Array:
        """The zarr array data/<key> (N, ...), re-opened when it is shorter than `min_frames`.

        N may exceed `n_frames` while a writer is mid-episode; index only below `n_frames`.
        """
        array = self._arrays.get(key)
        if array is None or array.shape[0] < min_frames:
            path = f"data/{key}"
            if not (self._path / path / ".zarray").is_file():
                raise KeyError(f"{key!r} is not in the store {self._path} (keys: {self.keys})")
            array = zarr.open_array(self._zstore, mode="r", path=path)
            if array.shape[0] < min_frames:
                raise StoreError(
                    f"{self._path}: data/{key} has {array.shape[0]} frames but episodes end at "
                    f"{min_frames}"
                )
            self._arrays[key] = array
        return array

    # ---- writing ---------------------------------------------------------------------------

    def append_episode(
        self, episode: Mapping[str, Any], metadata: Mapping[str, Any] | None = None
    ) -> int:
        """Add one episode {key: (T, ...)} and its metadata; returns its index.

        Frames are written first, metadata next and `episode_ends` last, so a reader or a
        crash at any point sees either the whole episode or none of it.
        """
        if self._mode != "a":
            raise StoreError(f"{self._path} is open read-only; open it with mode='a' to append")
        arrays, T = validate_episode(episode)
        metadata_text = encode_metadata(metadata)
        ends = self.episode_ends
        index = int(ends.shape[0])
        start = int(ends[-1]) if index else 0
        if index:
            self._check_matches_store(arrays)
        data = self._root["data"]
        for key, value in arrays.items():
            target = data[key] if key in data else _create_data_array(data, key, value)
            target.resize(start + T, *target.shape[1:])
            target[start : start + T] = value
        self._arrays.clear()  # writer-side cached shapes are stale now
        meta = zarr.open_array(self._zstore, mode="r+", path=METADATA_PATH)
        meta.resize(index + 1)
        meta[index] = metadata_text
        self._commit_episode_end(start + T)
        return index

    def _check_matches_store(self, arrays: Mapping[str, np.ndarray]) -> None:
        """Same keys, per-frame shapes and dtypes as the episodes already stored."""
        stored = set(self.keys)
        missing = sorted(stored - set(arrays))
        extra = sorted(set(arrays) - stored)
        if missing:
            raise StoreError(f"episode lacks key(s) {missing} that the store holds")
        if extra:
            raise StoreError(f"episode has key(s) {extra} that the store does not hold")
        for key, value in arrays.items():
            target = self.array(key)
            if value.shape[1:] != target.shape[1:] or value.dtype != target.dtype:
                raise StoreError(
                    f"{key!r}: frames are {value.dtype} {value.shape[1:]} but the store holds "
                    f"{target.dtype} {target.shape[1:]}"
                )

    def _commit_episode_end(self, end: int) -> None:
        """Extend meta/episode_ends by `end` so that any reader sees all of it or none.

        zarr's resize() writes the new shape before the data, so a reader (or a crash) between
        the two would see a fill value as the last end. Here the value goes into its chunk
        while the on-disk shape still hides it, and the new shape is published last with one
        atomic file replace (DirectoryStore writes a temporary file and renames it).
        """
        held = _HeldMetadataStore(self._zstore, f"{ENDS_PATH}/.zarray")
        ends = zarr.open_array(held, mode="r+", path=ENDS_PATH)
        n = ends.shape[0]
        ends.resize(n + 1)
        ends[n] = end
        held.publish()

    def roll_back_to(self, n_episodes: int) -> None:
        """Forget every episode after the first `n_episodes` (a refused import undoing its
        appends). The shorter episode index is published first, with one atomic file replace,
        so a crash midway leaves uncommitted frames that the next writer drops."""
        if self._mode != "a":
            raise StoreError(f"{self._path} is open read-only; open it with mode='a' to roll back")
        ends = zarr.open_array(self._zstore, mode="r+", path=ENDS_PATH)
        if not 0 <= n_episodes <= ends.shape[0]:
            raise ValueError(f"cannot roll back to {n_episodes} of {ends.shape[0]} episodes")
        ends.resize(n_episodes)
        self._arrays.clear()
        self._drop_uncommitted()

    def _drop_uncommitted(self) -> None:
        """Cut frames and metadata past the last committed end (left by a killed writer)."""
        ends = self.episode_ends
        n_frames = int(ends[-1]) if ends.size else 0
        data = self._root["data"]
        for key in list(data.array_keys()):
            array = data[key]
            if ends.size == 0:
                del data[key]  # nothing committed: its shape may not even be the final one
            elif array.shape[0] > n_frames:
                array.resize(n_frames, *array.shape[1:])
            elif array.shape[0] < n_frames:
                raise StoreError(
                    f"{self._path}: data/{key} has {array.shape[0]} frames but episodes end at "
                    f"{n_frames}; the store is damaged"
                )
        meta = self._root["meta"]
        if "episode_metadata" not in meta:
            _create_metadata_array(meta, length=ends.shape[0])
        metadata = meta["episode_metadata"]
        if metadata.shape[0] != ends.shape[0]:
            metadata.resize(ends.shape[0])
        remove_partial_files(self._path)


def _create_data_array(data: zarr.Group, key: str, sample: np.ndarray) -> zarr.Array:
    frame_shape = sample.shape[1:]
    if is_image_key(key):
        chunks, compressor = (1, *frame_shape), IMAGE_COMPRESSOR
    else:
        chunks, compressor = (LOW_DIM_CHUNK_ROWS, *frame_shape), LOW_DIM_COMPRESSOR
    return data.create_dataset(
        key,
        shape=(0, *frame_shape),
        chunks=chunks,
        dtype=sample.dtype,
        compressor=compressor,
    )


def _create_metadata_array(meta: zarr.Group, length: int = 0) -> zarr.Array:
    # VLenUTF8: plain strings, no pickled objects on disk.
    array = meta.create_dataset(
        "episode_metadata",
        shape=(length,),
        chunks=(METADATA_CHUNK,),
        dtype=object,
        object_codec=numcodecs.VLenUTF8(),
    )
    if length:
        array[:] = np.array(["{}"] * length, dtype=object)
    return array
