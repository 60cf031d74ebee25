"""Demonstration data: the episode store, training windows over it, and importers.

Nothing here imports rclpy: the recorder node writes through `EpisodeStore`, the trainer reads
through `SequenceDataset`. The dataset is imported lazily so that writing a store (the recorder)
does not pay for importing torch.
"""

from typing import Any

from dp_ros.data.store import EpisodeStore, StoreError

__all__ = ["EpisodeStore", "SequenceDataset", "StoreError"]


def __getattr__(name: str) -> Any:
    if name == "SequenceDataset":
        from dp_ros.data.sequence import SequenceDataset

        return SequenceDataset
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
