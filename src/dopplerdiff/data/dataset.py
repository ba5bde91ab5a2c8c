"""Torch dataset over a SpectrogramSet (images in [-1, 1] with identity labels)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from dopplerdiff.config.data import AugmentConfig
from dopplerdiff.data.images import SpectrogramSet


class ImageDataset(Dataset):
    """Items ``{"pixel_values": FloatTensor (C, H, W) in [-1, 1], "labels": LongTensor ()}``.

    ``augment`` (optional) applies ``augment_batch`` per item with the global torch RNG, so DataLoader
    workers (seeded by torch per worker) draw different augmentations.
    """

    def __init__(
        self, ds: SpectrogramSet, indices: Sequence[int] | np.ndarray | None = None,
        augment: AugmentConfig | None = None,
    ) -> None:
        idx = np.arange(len(ds)) if indices is None else np.asarray(indices, dtype=np.int64)
        # One contiguous tensor up front: per-item indexing is then a cheap view.
        self.images = torch.from_numpy(np.ascontiguousarray(ds.images[idx], dtype=np.float32))
        self.labels = torch.from_numpy(ds.labels[idx].astype(np.int64))
        self.augment = augment

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        x = self.images[i]
        if self.augment is not None:
            from dopplerdiff.data.transforms import augment_batch

            x = augment_batch(x[None], self.augment)[0]
        return {"pixel_values": x, "labels": self.labels[i]}
