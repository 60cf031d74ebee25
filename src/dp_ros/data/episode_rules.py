"""What an episode must be before the episode store takes it: array names, dtypes, shapes,
finite values, one length T across keys, and JSON-storable metadata. Every refusal is a
StoreError that names the key and the rule it breaks."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from dp_ros.keys import ACTION, ACTION_DIM, is_image_key


class StoreError(ValueError):
    """An episode, or a store on disk, that breaks the store's rules."""


def _json_default(value: Any) -> Any:
    """Let numpy scalars/arrays and paths into episode metadata; refuse anything else."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"object of type {type(value).__name__} is not JSON-serialisable")


def encode_metadata(metadata: Mapping[str, Any] | None) -> str:
    """Episode metadata as JSON text; raises StoreError naming what cannot be stored."""
    if metadata is None:
        return "{}"
    if not isinstance(metadata, Mapping):
        raise StoreError(f"episode metadata must be a dict, got {type(metadata).__name__}")
    try:
        return json.dumps(dict(metadata), default=_json_default, sort_keys=True)
    except (TypeError, ValueError) as error:
        raise StoreError(f"episode metadata cannot be stored as JSON: {error}") from error


def _check_key_name(key: str) -> None:
    if not isinstance(key, str) or not key or "/" in key or key.startswith("."):
        raise StoreError(
            f"array key {key!r} is not a valid name (non-empty, no '/', no leading .)"
        )


def _as_stored_array(key: str, value: Any) -> np.ndarray:
    """One episode array in its stored dtype, or StoreError saying which rule it breaks."""
    _check_key_name(key)
    array = np.asarray(value)
    if is_image_key(key):
        if array.dtype != np.uint8 or array.ndim != 4:
            raise StoreError(
                f"{key!r}: images must be uint8 (T, H, W, C), got {array.dtype} {array.shape}"
            )
        return array
    if not np.issubdtype(array.dtype, np.floating) or array.ndim < 2:
        raise StoreError(
            f"{key!r}: low-dim arrays must be floating point (T, D), got {array.dtype} "
            f"{array.shape}"
        )
    if key == ACTION and array.shape[1:] != (ACTION_DIM,):
        raise StoreError(f"{key!r}: actions must be (T, {ACTION_DIM}), got {array.shape}")
    array = array.astype(np.float32, copy=False)
    finite = np.isfinite(array.reshape(array.shape[0], -1)).all(axis=1)
    if not finite.all():
        raise StoreError(f"{key!r}: NaN or inf at frame {int(np.argmin(finite))}")
    return array


def validate_episode(episode: Mapping[str, Any]) -> tuple[dict[str, np.ndarray], int]:
    """Check one episode on its own; returns (arrays in stored dtypes, T)."""
    if not isinstance(episode, Mapping) or not episode:
        raise StoreError("an episode is a non-empty dict of arrays {key: (T, ...)}")
    if ACTION not in episode:
        raise StoreError(f"episode lacks the {ACTION!r} array (T, {ACTION_DIM})")
    arrays = {key: _as_stored_array(key, value) for key, value in episode.items()}
    lengths = {key: array.shape[0] for key, array in arrays.items()}
    if len(set(lengths.values())) != 1:
        raise StoreError(f"inconsistent episode length T across keys: {lengths}")
    T = next(iter(lengths.values()))
    if T == 0:
        raise StoreError("episode has no frames (T = 0)")
    return arrays, T
