"""Windows cut from decoded takes, one at a time: the per-sample path of the datasets.

``loader()`` copies plain windows in bulk through the Rust core instead; it falls back to this
path when windows are augmented.
"""

from __future__ import annotations

import numpy as np
import torch

from .augment import Augment
from .batch import Batch, BatchSchema
from .plan import EpochPlan
from .store import TakeStore


class WindowReader:
    """Reads plan windows from a ``TakeStore`` into samples and lanes batches."""

    def __init__(self, store: TakeStore, schema: BatchSchema, *, augment: Augment | None, seed: int) -> None:
        self.store, self.schema = store, schema
        self.augment = augment
        self.seed = int(seed)  # the augmentation's default seed

    def read(
        self, plan: EpochPlan, i: int, window: tuple[int, int, int, bool] | None = None
    ) -> tuple[int, int, np.ndarray, np.ndarray, np.ndarray | None]:
        """(file index, start frame, audio, blendshapes, pose or None) of plan window ``i``,
        augmented when ``augment`` is set; the arrays are the caller's own. ``window``: the
        window's (file, start frame, start sample, dense) when the caller looked it up."""
        file_index, frame, sample, _dense = window if window is not None else plan.window(i)
        audio, blendshapes, pose = self.store.get(file_index)
        window_samples, window_frames = self.schema.window_samples, self.schema.window_frames
        if self.augment is None:
            # Copies: a caller may modify a sample in place, and neighbouring windows share data.
            face = slice(frame, frame + window_frames)
            return (
                file_index,
                frame,
                audio[sample : sample + window_samples].copy(),
                blendshapes[face].copy(),
                None if pose is None else pose[face].copy(),
            )
        # The pose rides along as extra columns, so a speed change moves it exactly like the face.
        track = blendshapes if pose is None else np.concatenate((blendshapes, pose), axis=1)
        # Drawn from (augment seed, epoch, plan index) only: the same under any number of
        # workers or ranks. Speed perturbation reads its span from the whole take.
        timing = self.store.table.timing
        a, b = self.augment.window(
            audio,
            track,
            start_sample=sample,
            start_frame=frame,
            window_samples=window_samples,
            window_frames=window_frames,
            sample_rate=timing.sample_rate,
            fps=timing.target_fps,
            epoch=plan.epoch,
            index=i,
            default_seed=self.seed,
        )
        n = blendshapes.shape[1]
        return (
            file_index,
            frame,
            a,
            np.ascontiguousarray(b[:, :n]),
            None if pose is None else np.ascontiguousarray(b[:, n:]),
        )

    def sample(self, plan: EpochPlan, i: int) -> Batch:
        """Plan window ``i`` as a sample dict (the schema in ``koemorph_data.batch``)."""
        return self.schema.sample(plan, i, *self.read(plan, i))

    def lane_batch(self, plan: EpochPlan, index: np.ndarray, reset: np.ndarray) -> Batch:
        """One lanes batch: slot b holds plan window ``index[b]`` (-1: an invalid slot)."""
        lanes = len(index)
        audio, blendshapes = self.schema.empty(lanes, zero=True)
        pose = self.schema.empty_pose(lanes, zero=True)
        file_indices = torch.full((lanes,), -1, dtype=torch.int64)
        start_frames = torch.full((lanes,), -1, dtype=torch.int64)
        found = plan.lookup(np.maximum(index, 0)) if (index >= 0).any() else None
        for slot, i in enumerate(index.tolist()):
            if i < 0 or found is None:
                continue
            window = (int(found.file[slot]), int(found.start_frame[slot]), int(found.start_sample[slot]), False)
            file_index, frame, a, b, p = self.read(plan, i, window)
            audio[slot] = torch.from_numpy(a)
            blendshapes[slot] = torch.from_numpy(b)
            if pose is not None:
                pose[slot] = torch.from_numpy(p)
            file_indices[slot] = file_index
            start_frames[slot] = frame
        valid = torch.from_numpy(index >= 0)
        flags = self.schema.flags(plan, index, found)
        return self.schema.batch(
            audio, blendshapes, file_indices, start_frames, pose=pose, lanes=(reset, valid), flags=flags
        )
