"""Editing episode stores: remove episodes, merge stores (`dp-dataset remove`, `merge`); ROS-free.

Both build the result as a new store in a temporary directory beside the target, episode by
episode through `EpisodeStore.append_episode` (so every episode passes the store's own rules
again: keys, shapes, dtypes, finite values), and only then move it into place with a rename.
A failure or a kill at any point leaves the original store as it was. `remove` holds the
store's writer lock throughout, so no recorder appends to it meanwhile.

Merging refuses stores whose keys or shapes differ (naming them), and leaves out episodes
identical to one already merged (same digest, see recording.stored): merging a store with
itself or a copy adds nothing twice.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path

from tqdm import tqdm

from dp_ros.data.episode_rules import StoreError
from dp_ros.data.store import EpisodeStore


def _temporary_sibling(target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent))
    path.chmod(0o755)  # mkdtemp's 0700 would otherwise become the store's
    return path


def _copy_episodes(
    sources: Iterable[tuple[EpisodeStore, int]], out: EpisodeStore, progress: bool
) -> list[str]:
    """Append each (store, index) to `out`; returns notes on episodes left out as duplicates."""
    from dp_ros.recording.stored import episode_digest

    seen: dict[str, int] = {}
    notes = []
    items = list(sources)
    for store, index in tqdm(items, desc="episodes", unit="ep", disable=not progress):
        arrays = store.episode(index)
        metadata = store.episode_metadata(index)
        digest = metadata.get("digest") or episode_digest(arrays)
        if digest in seen:
            notes.append(f"{store.path} episode {index}: identical to episode {seen[digest]}")
            continue
        metadata = {**metadata, "digest": digest}
        metadata.setdefault("copied_from", f"{store.path}#{index}")
        seen[digest] = out.append_episode(arrays, metadata)
    return notes


def remove_episodes(path: str | os.PathLike, indices: Iterable[int], progress: bool = True) -> int:
    """Remove episodes `indices` from the store at `path`; returns the episodes left."""
    path = Path(path)
    with EpisodeStore.open(path, mode="a") as store:  # the lock: no other writer meanwhile
        n = store.n_episodes
        drop = set()
        for index in indices:
            if not -n <= index < n:
                raise IndexError(f"episode {index} out of range: {path} has {n} episodes")
            drop.add(index % n)
        keep = [i for i in range(n) if i not in drop]
        if not keep:
            raise StoreError(f"removing every episode of {path} would leave an empty store")
        temporary = _temporary_sibling(path)
        try:
            out = EpisodeStore.create(temporary, overwrite=True)
            with out:
                _copy_episodes(((store, i) for i in keep), out, progress)
            backup = temporary.with_suffix(".old")
            os.rename(path, backup)
            os.rename(temporary, path)
        except BaseException:
            shutil.rmtree(temporary, ignore_errors=True)
            raise
    shutil.rmtree(backup)
    return len(keep)


def merge_stores(
    inputs: Iterable[str | os.PathLike], output: str | os.PathLike, progress: bool = True
) -> tuple[int, list[str]]:
    """Merge stores into a new store at `output` (must not exist); (episodes, notes)."""
    output = Path(output)
    if output.exists():
        raise FileExistsError(f"{output} exists: merge writes a new store")
    stores = [EpisodeStore.open(path) for path in inputs]
    try:
        keyed = [store for store in stores if store.n_episodes]
        for store in keyed[1:]:
            _check_compatible(keyed[0], store)
        temporary = _temporary_sibling(output)
        try:
            out = EpisodeStore.create(temporary, overwrite=True)
            with out:
                pairs = ((store, i) for store in stores for i in range(store.n_episodes))
                notes = _copy_episodes(pairs, out, progress)
                n = out.n_episodes
            os.rename(temporary, output)
        except BaseException:
            shutil.rmtree(temporary, ignore_errors=True)
            raise
    finally:
        for store in stores:
            store.close()
    return n, notes


def _check_compatible(a: EpisodeStore, b: EpisodeStore) -> None:
    if a.keys != b.keys:
        raise StoreError(f"{a.path} has keys {list(a.keys)} but {b.path} has {list(b.keys)}")
    for key in a.keys:
        x, y = a.array(key), b.array(key)
        if x.shape[1:] != y.shape[1:] or x.dtype != y.dtype:
            raise StoreError(
                f"{key!r}: {a.path} holds {x.dtype} {x.shape[1:]} but {b.path} holds "
                f"{y.dtype} {y.shape[1:]}"
            )
