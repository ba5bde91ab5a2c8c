"""How the training loop draws data: endless, per-epoch seeded batches split over processes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, default_collate


class EpochBatchSampler:
    """Endless batch sampler: per-epoch seeded permutations, this process's share of each global batch."""

    def __init__(self, n: int, global_batch: int, rank: int, world: int, seed: int, start_micro: int):
        self.n, self.global_batch, self.rank, self.world = n, global_batch, rank, world
        self.seed, self.start_micro = seed, start_micro
        self.per_proc = global_batch // world
        self.batches_per_epoch = n // global_batch
        self.epoch = start_micro // self.batches_per_epoch

    def __iter__(self) -> Iterator[list[int]]:
        offset = self.start_micro % self.batches_per_epoch
        while True:
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            perm = torch.randperm(self.n, generator=gen)
            for b in range(offset, self.batches_per_epoch):
                glob = perm[b * self.global_batch : (b + 1) * self.global_batch]
                yield glob[self.rank * self.per_proc : (self.rank + 1) * self.per_proc].tolist()
            offset = 0
            self.epoch += 1


def unpack_data(train_data: Dataset | DataLoader, collate_fn: Any) -> tuple[Dataset, Any]:
    # A DataLoader is accepted for convenience; only its dataset and collate_fn are used.
    if isinstance(train_data, DataLoader):
        return train_data.dataset, collate_fn or train_data.collate_fn
    return train_data, collate_fn or default_collate
