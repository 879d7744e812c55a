"""Windows cut from decoded takes, one at a time: the per-sample path of the datasets.

``loader()`` copies plain windows in bulk through the Rust core instead; it falls back to this
path when windows are augmented.
"""

from __future__ import annotations

import numpy as np
import torch

from .augment import Augment
from .batch import Batch, BatchSchema
from .sampling import EpochPlan
from .store import TakeStore


class WindowReader:
    """Reads plan windows from a ``TakeStore`` into samples and lanes batches."""

    def __init__(self, store: TakeStore, schema: BatchSchema, *, augment: Augment | None, seed: int) -> None:
        self.store, self.schema = store, schema
        self.augment = augment
        self.seed = int(seed)  # the augmentation's default seed

    def read(self, plan: EpochPlan, i: int) -> tuple[int, int, np.ndarray, np.ndarray]:
        """(file index, start frame, audio, blendshapes) of plan window ``i``, augmented when
        ``augment`` is set; the arrays are the caller's own."""
        file_index, frame, sample = int(plan.file[i]), int(plan.start_frame[i]), int(plan.start_sample[i])
        audio, blendshapes = self.store.get(file_index)
        window_samples, window_frames = self.schema.window_samples, self.schema.window_frames
        if self.augment is not None:
            # Drawn from (augment seed, epoch, plan index) only: the same under any number of
            # workers or ranks. Speed perturbation reads its span from the whole take.
            a, b = self.augment.window(
                audio,
                blendshapes,
                start_sample=sample,
                start_frame=frame,
                window_samples=window_samples,
                window_frames=window_frames,
                sample_rate=self.store.table.timing.sample_rate,
                fps=self.store.table.timing.target_fps,
                epoch=plan.epoch,
                index=i,
                default_seed=self.seed,
            )
            return file_index, frame, a, b
        # Copies: a caller may modify a sample in place, and neighbouring windows share data.
        return (
            file_index,
            frame,
            audio[sample : sample + window_samples].copy(),
            blendshapes[frame : frame + window_frames].copy(),
        )

    def sample(self, plan: EpochPlan, i: int) -> Batch:
        """Plan window ``i`` as a sample dict (the schema in ``koemorph_data.batch``)."""
        return self.schema.sample(plan, i, *self.read(plan, i))

    def lane_batch(self, plan: EpochPlan, index: np.ndarray, reset: np.ndarray) -> Batch:
        """One lanes batch: slot b holds plan window ``index[b]`` (-1: an invalid slot)."""
        lanes = len(index)
        audio, blendshapes = self.schema.empty(lanes, zero=True)
        file_indices = torch.full((lanes,), -1, dtype=torch.int64)
        start_frames = torch.full((lanes,), -1, dtype=torch.int64)
        for slot, i in enumerate(index.tolist()):
            if i < 0:
                continue
            file_index, frame, a, b = self.read(plan, i)
            audio[slot] = torch.from_numpy(a)
            blendshapes[slot] = torch.from_numpy(b)
            file_indices[slot] = file_index
            start_frames[slot] = frame
        valid = torch.from_numpy(index >= 0)
        flags = self.schema.flags(plan, index)
        return self.schema.batch(audio, blendshapes, file_indices, start_frames, lanes=(reset, valid), flags=flags)
