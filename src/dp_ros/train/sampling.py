"""How a training run walks its data and seeds its generators, identically on every rank and
across a resume."""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import torch

# Each rank draws different diffusion noise and crops; rank r uses seed + r * this.
RANK_SEED_STRIDE = 1_000_003


class EpochSampler(torch.utils.data.Sampler):
    """A seeded shuffle per epoch, dealt out to ranks, that can start part-way into an epoch.

    Every rank gets the same number of samples (the order wraps around to pad), so every rank
    runs the same number of steps, which DDP needs. `skip` drops a rank's first samples: a run
    resumed mid-epoch sees exactly the batches the stopped run had left.
    """

    def __init__(self, size: int, rank: int, world_size: int, seed: int, shuffle: bool) -> None:
        self.size, self.rank, self.world_size = size, rank, world_size
        self.seed, self.shuffle = seed, shuffle
        self.epoch, self.skip = 0, 0

    @property
    def per_rank(self) -> int:
        return math.ceil(self.size / self.world_size)

    def start(self, epoch: int, skip: int = 0) -> None:
        """Iterate epoch `epoch` from its `skip`-th sample on.

        Not named `set_epoch`: Fabric calls a sampler's `set_epoch` with its own count of
        iterations, which would undo the skip of a resumed epoch.
        """
        self.epoch, self.skip = epoch, skip

    def __iter__(self) -> Iterator[int]:
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
            order = torch.randperm(self.size, generator=generator)
        else:
            order = torch.arange(self.size)
        padded = order.repeat(math.ceil(self.per_rank * self.world_size / self.size))
        mine = padded[: self.per_rank * self.world_size][self.rank :: self.world_size]
        return iter(mine[self.skip :].tolist())

    def __len__(self) -> int:
        return max(0, self.per_rank - self.skip)


def seed_everything(seed: int) -> None:
    import random

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
