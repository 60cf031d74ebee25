"""A writer process for the store tests: appends known episodes, then optionally a huge one.

Run as `python store_writer.py STORE N_SMALL [BIG_T]`. After each committed episode it prints
`committed <index>`; before the big episode it prints `big`. The test kills it with SIGKILL.
"""

import sys

import numpy as np

from dp_ros.data.store import EpisodeStore
from dp_ros.keys import ACTION, AGENTVIEW_IMAGE, EEF_POS

IMAGE_SHAPE = (16, 16, 3)


def small_length(index: int) -> int:
    return 5 + index % 7


def known_episode(index: int, length: int | None = None) -> dict[str, np.ndarray]:
    """Episode `index` with values that say where they come from (episode, frame)."""
    T = small_length(index) if length is None else length
    t = np.arange(T)
    image = np.broadcast_to(
        ((index * 7 + t) % 256).astype(np.uint8)[:, None, None, None], (T, *IMAGE_SHAPE)
    )
    return {
        AGENTVIEW_IMAGE: np.ascontiguousarray(image),
        EEF_POS: np.stack([index * 1000.0 + t, t, -t], axis=1).astype(np.float32),
        ACTION: np.repeat((index + t / 100.0)[:, None], 7, axis=1).astype(np.float32),
    }


def main() -> None:
    path, n_small = sys.argv[1], int(sys.argv[2])
    big = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    store = EpisodeStore.open(path, mode="a")
    for index in range(store.n_episodes, store.n_episodes + n_small):
        store.append_episode(known_episode(index), {"index": index, "task": "test"})
        print(f"committed {index}", flush=True)
    if big:
        print("big", flush=True)
        store.append_episode(known_episode(store.n_episodes, big), {"big": True})
        print("big committed", flush=True)


if __name__ == "__main__":
    main()
