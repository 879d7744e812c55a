"""Drop-in replacements for KoeMorph's data loader factories.

KoeMorph's training code builds its loaders with ``create_sequential_dataloader`` and
``create_adaptive_dataloader`` from ``src/data``; the functions here have the same signatures
and DataLoader settings (pinned memory when CUDA is present, persistent workers,
``drop_last=True``) and build this package's datasets, so switching is one import::

    from koemorph_data.compat import create_sequential_dataloader

Differences, all in the user's favour: the DataLoader's batch size is passed to the dataset
(``batch_size=``), so workers deal whole batches in take order and only the epoch's last
batch can be partial; ``len()`` works with ``loop_dataset=False``. With ``lanes=`` in
``kwargs`` the dataset yields ready-made batches and the DataLoader gets ``batch_size=None``.
``drop_last`` may be given in ``kwargs`` (False keeps the last, partial batch: a validation
loader then delivers every window); every other keyword goes to the dataset.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from .dataset import AdaptiveSequentialDataset, SequentialKoeMorphDataset, WindowDataset

__all__ = ["create_adaptive_dataloader", "create_sequential_dataloader"]


def _dataloader(dataset: WindowDataset, batch_size: int | None, num_workers: int, drop_last: bool) -> DataLoader:
    """The DataLoader of KoeMorph's factories around one of this package's datasets."""
    lanes = dataset.lanes is not None
    return DataLoader(
        dataset,
        batch_size=None if lanes else batch_size,
        num_workers=num_workers,
        pin_memory=torch.cuda.is_available(),
        persistent_workers=num_workers > 0,
        drop_last=bool(drop_last) and not lanes,  # batch_size=None excludes drop_last
    )


def create_sequential_dataloader(
    data_dir: str | Path,
    batch_size: int = 4,
    window_frames: int = 256,
    stride_frames: int = 128,
    num_workers: int = 2,
    **kwargs: Any,
) -> DataLoader:
    """KoeMorph's ``create_sequential_dataloader`` over ``SequentialKoeMorphDataset``.

    :param data_dir: directory searched recursively for ``*.wav`` + ``.jsonl`` takes.
    :param batch_size: windows per batch (also the dataset's ``batch_size``).
    :param window_frames: window length in frames.
    :param stride_frames: frames between windows of a take.
    :param num_workers: DataLoader worker processes.
    :param kwargs: ``SequentialKoeMorphDataset`` keywords (``shuffle_files``, ``loop_dataset``,
        ``lanes``, ``split``, ...), and ``drop_last`` for the DataLoader (default True).
    """
    drop_last = kwargs.pop("drop_last", True)
    lanes = kwargs.get("lanes") is not None
    dataset = SequentialKoeMorphDataset(
        data_dir=data_dir,
        window_frames=window_frames,
        stride_frames=stride_frames,
        batch_size=None if lanes else batch_size,
        **kwargs,
    )
    return _dataloader(dataset, batch_size, num_workers, drop_last)


def create_adaptive_dataloader(
    data_dir: str | Path,
    batch_size: int = 4,
    stride_mode: str = "progressive",
    epoch: int = 0,
    max_epochs: int = 100,
    num_workers: int = 2,
    **kwargs: Any,
) -> DataLoader:
    """KoeMorph's ``create_adaptive_dataloader`` over ``AdaptiveSequentialDataset``.

    :param data_dir: directory searched recursively for ``*.wav`` + ``.jsonl`` takes.
    :param batch_size: windows per batch (also the dataset's ``batch_size``).
    :param stride_mode: ``"dense"``, ``"sparse"``, ``"progressive"`` or ``"mixed"``.
    :param epoch: the epoch the first iteration plays (``loader.dataset.set_epoch`` later).
    :param max_epochs: length of the progressive schedule.
    :param num_workers: DataLoader worker processes.
    :param kwargs: ``AdaptiveSequentialDataset`` keywords, and ``drop_last`` for the DataLoader.
    """
    drop_last = kwargs.pop("drop_last", True)
    lanes = kwargs.get("lanes") is not None
    dataset = AdaptiveSequentialDataset(
        data_dir=data_dir,
        stride_mode=stride_mode,
        epoch=epoch,
        max_epochs=max_epochs,
        batch_size=None if lanes else batch_size,
        **kwargs,
    )
    return _dataloader(dataset, batch_size, num_workers, drop_last)
