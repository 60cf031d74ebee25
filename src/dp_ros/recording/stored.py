"""What a store already holds, so that recording never stores the same demonstration twice.

Re-running a recording on an existing store restarted the simulator's seeds at the first one and
appended exact copies of earlier episodes. Three checks, each against the store's own metadata:

* seed: a simulated episode is reproducible from (task, seed); an episode whose task and seed the
  store holds is a re-recording (recorders skip such seeds before recording them, `free_seed`).
* digest: a SHA-256 over every array of the episode (names, dtypes, shapes, bytes), stored as
  `digest`; an identical episode is refused whatever its metadata says (bags converted twice,
  stores merged twice).
* bag: `dp-bag-to-store` stores the bag's path; converting it into the same store again is
  refused unless the caller allows it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import numpy as np

from dp_ros.data.store import EpisodeStore


def episode_digest(arrays: Mapping[str, np.ndarray]) -> str:
    """Hex SHA-256 (first 32 digits) of an episode's arrays, independent of key order."""
    digest = hashlib.sha256()
    for key in sorted(arrays):
        array = np.ascontiguousarray(arrays[key])
        digest.update(f"{key}|{array.dtype.str}|{array.shape}|".encode())
        digest.update(array.data)
    return digest.hexdigest()[:32]


class StoredEpisodes:
    """Seeds per task, digests and bag sources of the episodes in one store."""

    def __init__(self) -> None:
        self.seeds: dict[str, dict[int, int]] = {}  # task -> seed -> episode index
        self.digests: dict[str, int] = {}  # digest -> episode index
        self.bags: set[str] = set()

    @classmethod
    def of(cls, store: EpisodeStore) -> StoredEpisodes:
        known = cls()
        for index, metadata in enumerate(store.all_metadata()):
            known.add(index, metadata)
        return known

    def add(self, index: int, metadata: Mapping[str, Any]) -> None:
        seed = metadata.get("seed")
        if isinstance(seed, int) and seed >= 0:
            self.seeds.setdefault(str(metadata.get("task", "")), {})[seed] = index
        if metadata.get("digest"):
            self.digests[str(metadata["digest"])] = index
        if metadata.get("bag"):
            self.bags.add(str(metadata["bag"]))

    def seed_index(self, task: str, seed: int | None) -> int | None:
        """The stored episode recorded from (task, seed), if any."""
        if seed is None or seed < 0:
            return None
        return self.seeds.get(task, {}).get(int(seed))

    def free_seed(self, task: str) -> int:
        """The first seed after every stored seed of `task` (0 for none)."""
        seeds = self.seeds.get(task, {})
        return max(seeds) + 1 if seeds else 0

    def refusal(self, metadata: Mapping[str, Any], digest: str, seeds: bool = True) -> str | None:
        """Why an episode with this metadata and digest must not be stored; None when new.
        `seeds` false: a stored (task, seed) is no reason (several demonstrations per scene)."""
        if digest in self.digests:
            return f"identical to stored episode {self.digests[digest]} (same digest)"
        if not seeds:
            return None
        task, seed = str(metadata.get("task", "")), metadata.get("seed")
        index = self.seed_index(task, seed if isinstance(seed, int) else None)
        if index is not None:
            return f"task {task!r} seed {seed} is already stored (episode {index})"
        return None


class SeedClaims:
    """The seeds a live recording must not record again (with `unique`): those the store holds
    and those of episodes this run began (recording, or queued for writing). A discarded
    episode's seed is released, free to be recorded again."""

    def __init__(self, known: StoredEpisodes, unique: bool = True) -> None:
        self.known = known
        self.unique = unique
        self._claimed: dict[str, set[int]] = {}  # task -> seeds begun by this run

    def claim(self, task: str, seed: int) -> None:
        if seed >= 0:
            self._claimed.setdefault(task, set()).add(seed)

    def release(self, task: str, seed: Any) -> None:
        self._claimed.get(task, set()).discard(seed)

    def taken(self, task: str, seed: int) -> bool:
        """`seed` of `task` must not be recorded: stored already, or begun by this run."""
        if not self.unique or seed < 0:
            return False
        return self.known.seed_index(task, seed) is not None or seed in self._claimed.get(task, ())

    def free_seed(self, task: str) -> int:
        """The first seed after every stored and claimed seed of `task`."""
        claimed = self._claimed.get(task, ())
        return max([self.known.free_seed(task), *(seed + 1 for seed in claimed)])
