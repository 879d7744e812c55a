"""The sample and batch schema: keys, dtypes and shapes, in one place.

A sample (one window, what iterating a dataset yields)::

    audio         float32 [window_samples]
    blendshapes   float32 [window_frames, 52]   (ARKIT_BLENDSHAPES order)
    pose          float32 [window_frames, 9]    (POSE_NAMES order; with pose=True only)
    file_indices  int64 0-d                     (position in dataset.file_pairs)
    start_frames  int64 0-d
    window_indices int64 0-d                    (the window's index within its take at the
                                                 epoch's stride: start_frames // stride; a
                                                 mixed-mode dense draw (is_dense) has its
                                                 index at stride 1, its start frame, as in
                                                 KoeMorph; -1 for an invalid lanes slot)
    file_names    str                           (the take's stem)
    is_dense      bool 0-d                      (AdaptiveSequentialDataset only)
    frame_mask    bool [window_frames]          (tail="pad" only: True on the take's real
                                                 frames, False on the zero padding)

A batch stacks these over its first axis (``file_names`` becomes a list). Lanes batches add
``reset`` and ``valid`` (bool [lanes]); an invalid slot has zero audio and blendshapes,
``file_indices`` / ``start_frames`` -1 and name "".
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from . import _core
from .plan import EpochPlan, PlanWindows

Batch = dict[str, Any]


def window_indices(plan: EpochPlan, windows: PlanWindows, valid: np.ndarray) -> np.ndarray:
    """int64 ``window_indices`` of looked-up plan ``windows`` (-1 where not ``valid``): the
    index at the epoch's stride, or at stride 1 (the start frame) for a mixed-mode dense draw."""
    start = windows.start_frame.astype(np.int64)
    out = np.where(windows.dense, start, start // max(1, plan.stride))
    return np.where(valid, out, -1).astype(np.int64)


def window_index(plan: EpochPlan, i: int) -> int:
    """``window_indices`` of one plan window (the per-sample path: no arrays)."""
    _file, start, _sample, dense = plan.window(i)
    return start if dense else start // max(1, plan.stride)


def _no_windows(n: int) -> PlanWindows:
    """``n`` invalid slots of an empty plan (nothing to look up)."""
    empty = np.zeros(n, dtype=np.int64)
    return PlanWindows(empty, empty, empty, np.zeros(n, dtype=bool))


class BatchSchema:
    """Builds samples and batches with the dataset's keys (see the module docstring)."""

    def __init__(
        self,
        *,
        window_frames: int,
        window_samples: int,
        names: Sequence[str],
        dense_flag: bool,
        real_frames: np.ndarray | None = None,
        pose: bool = False,
    ) -> None:
        self.window_frames = int(window_frames)
        self.window_samples = int(window_samples)
        self.names = list(names)  # the take names, by file index
        self.dense_flag = bool(dense_flag)
        self.pose = bool(pose)
        # tail="pad": the real frames of every take, for the frame_mask key (None: no key)
        self.real_frames = None if real_frames is None else np.asarray(real_frames, dtype=np.int64)

    def frame_mask(self, files: np.ndarray, frames: np.ndarray) -> torch.Tensor:
        """bool [n, window_frames]: True where a window's frame lies inside its take (all
        False for an invalid slot, file -1)."""
        assert self.real_frames is not None
        files, frames = np.asarray(files, dtype=np.int64), np.asarray(frames, dtype=np.int64)
        ends = np.where(files >= 0, self.real_frames[np.maximum(files, 0)], -1)
        return torch.from_numpy(frames[:, None] + np.arange(self.window_frames)[None, :] < ends[:, None])

    def empty(self, rows: int, *, pin_memory: bool = False, zero: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """(audio [rows, window_samples], blendshapes [rows, window_frames, 52]) float32 tensors."""
        make = torch.zeros if zero else torch.empty
        audio = make((rows, self.window_samples), dtype=torch.float32, pin_memory=pin_memory)
        blendshapes = make(
            (rows, self.window_frames, _core.NUM_BLENDSHAPES), dtype=torch.float32, pin_memory=pin_memory
        )
        return audio, blendshapes

    def empty_pose(self, rows: int, *, pin_memory: bool = False, zero: bool = False) -> torch.Tensor | None:
        """pose [rows, window_frames, 9] float32, or None without pose."""
        if not self.pose:
            return None
        make = torch.zeros if zero else torch.empty
        return make((rows, self.window_frames, _core.NUM_POSE), dtype=torch.float32, pin_memory=pin_memory)

    def flags(self, plan: EpochPlan, index: np.ndarray, windows: PlanWindows | None = None) -> dict[str, torch.Tensor]:
        """Per-window keys beyond the common ones, for plan indices ``index`` (-1: an invalid
        slot); ``windows``: the windows at ``index`` when the caller looked them up already."""
        index = np.asarray(index, dtype=np.int64)
        valid = index >= 0
        if windows is None:
            windows = plan.lookup(np.maximum(index, 0)) if len(plan) else _no_windows(len(index))
        flags: dict[str, torch.Tensor] = {"window_indices": torch.from_numpy(window_indices(plan, windows, valid))}
        if self.dense_flag:
            flags["is_dense"] = torch.from_numpy(valid & windows.dense)
        if self.real_frames is not None:
            files = np.where(valid, windows.file, -1)
            flags["frame_mask"] = self.frame_mask(files, windows.start_frame)
        return flags

    def sample(
        self,
        plan: EpochPlan,
        i: int,
        file_index: int,
        frame: int,
        audio: np.ndarray,
        blendshapes: np.ndarray,
        pose: np.ndarray | None = None,
    ) -> Batch:
        """One window as the datasets yield it."""
        sample: Batch = {"audio": torch.from_numpy(audio), "blendshapes": torch.from_numpy(blendshapes)}
        if self.pose:
            sample["pose"] = torch.from_numpy(pose)
        sample |= {
            "file_indices": torch.tensor(file_index, dtype=torch.int64),
            "start_frames": torch.tensor(frame, dtype=torch.int64),
            "file_names": self.names[file_index],
            "window_indices": torch.tensor(window_index(plan, i), dtype=torch.int64),
        }
        if self.dense_flag:
            sample["is_dense"] = torch.tensor(plan.window(i)[3])
        if self.real_frames is not None:
            sample["frame_mask"] = self.frame_mask(np.array([file_index]), np.array([frame]))[0]
        return sample

    def batch(
        self,
        audio: torch.Tensor,
        blendshapes: torch.Tensor,
        file_indices: torch.Tensor,
        start_frames: torch.Tensor,
        *,
        pose: torch.Tensor | None = None,
        lanes: tuple[np.ndarray, torch.Tensor] | None = None,
        flags: dict[str, torch.Tensor] | None = None,
    ) -> Batch:
        """A batch from its stacked tensors; ``lanes`` = (reset flags, valid mask) in lanes mode."""
        names = self.names
        batch: Batch = {"audio": audio, "blendshapes": blendshapes}
        if self.pose:
            batch["pose"] = pose
        batch |= {
            "file_indices": file_indices,
            "start_frames": start_frames,
            "file_names": [names[f] if f >= 0 else "" for f in file_indices.tolist()],
        }
        if lanes is not None:
            reset, valid = lanes
            batch["reset"] = torch.from_numpy(reset.copy())
            batch["valid"] = valid
        if flags:
            batch.update(flags)
        return batch
