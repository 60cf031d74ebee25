"""Check, before a training run reads a store, that every chunk it needs is there and decodes.

zarr reads a chunk file that does not exist as the array's fill value: a store with a lost chunk
file reads back zeros in its place (whole image frames, rows of actions) and trains without a
word. `verify_store` lists the chunk files each array needs for the finished episodes, then
decodes every chunk once, and raises StoreError naming the store, the array and the episode of
the first chunk that is missing or corrupt. Decoding is one pass over the data (about what one
training epoch reads); it runs once, before training starts.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Iterable

import numpy as np

from dp_ros.data.store import EpisodeStore, StoreError

# Frames decoded per read while scanning (a failing block is then rescanned chunk by chunk).
BLOCK_FRAMES = 256


def verify_store(store: EpisodeStore, keys: Iterable[str]) -> None:
    """Raise StoreError naming store, array and episode for metadata that does not parse, or a
    chunk of data/<key> (for `keys`) that is missing or does not decode."""
    try:
        ends = store.episode_ends
    except (ValueError, KeyError, OSError, RuntimeError) as error:
        raise StoreError(f"{store.path}: meta/episode_ends is unreadable ({error})") from error
    n_frames = int(ends[-1]) if ends.size else 0
    for key in keys:
        try:
            array = store.array(key, n_frames)
        except StoreError:
            raise
        except (ValueError, KeyError, OSError, RuntimeError) as error:
            raise StoreError(
                f"{store.path}: data/{key} has unreadable metadata ({_one_line(error)})"
            ) from error
        _check_chunks_exist(store, key, array, ends, n_frames)
        _check_chunks_decode(store, key, array, ends, n_frames)


def _episodes(ends: np.ndarray, first: int, stop: int) -> str:
    """Where the frames [first, stop) lie: frames a..b and the episode(s) they belong to."""
    low = int(np.searchsorted(ends, first, side="right"))
    high = int(np.searchsorted(ends, stop - 1, side="right"))
    episodes = f"episode {low}" if low == high else f"episodes {low}..{high}"
    return f"frames {first}..{stop - 1}, {episodes}"


def _check_chunks_exist(store, key: str, array, ends: np.ndarray, n_frames: int) -> None:
    separator = getattr(array, "_dimension_separator", None) or "."
    present = set(array.store.listdir(array.path))
    rows = array.chunks[0]
    grid = [
        range(math.ceil(size / chunk))
        for size, chunk in zip(array.shape[1:], array.chunks[1:], strict=True)
    ]
    for row_chunk in range(math.ceil(n_frames / rows)):
        for rest in itertools.product(*grid):
            name = separator.join(str(i) for i in (row_chunk, *rest))
            if name not in present:
                first = row_chunk * rows
                where = _episodes(ends, first, min(first + rows, n_frames))
                raise StoreError(
                    f"{store.path}: data/{key} chunk file {name!r} is missing ({where}); it "
                    "would read back as zeros"
                )


def _check_chunks_decode(store, key: str, array, ends: np.ndarray, n_frames: int) -> None:
    rows = array.chunks[0]
    block = max(rows, BLOCK_FRAMES // rows * rows)
    for start in range(0, n_frames, block):
        stop = min(start + block, n_frames)
        try:
            array[start:stop]
        except Exception:  # find the chunk, then say which it is
            for first in range(start, stop, rows):
                try:
                    array[first : min(first + rows, stop)]
                except Exception as error:  # a codec's error type is the codec's own
                    where = _episodes(ends, first, min(first + rows, stop))
                    raise StoreError(
                        f"{store.path}: data/{key} ({where}) does not decode: {_one_line(error)}"
                    ) from error
            raise


def _one_line(error: BaseException) -> str:
    if isinstance(error, json.JSONDecodeError):
        return f"not valid JSON: {error.msg} at line {error.lineno} column {error.colno}"
    return " ".join(f"{type(error).__name__}: {error}".split())
