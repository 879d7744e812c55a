"""The design document's SequentialKoeMorphDataset, reimplemented faithfully in pure Python.

This is the benchmark baseline (``benches/bench_loader.py``), not part of the package. It
follows ``01_sequential_data_loading.ja.md`` line by line: ``glob("**/*.wav")`` pairs,
``soundfile.read``, a ``json.loads`` per JSONL line into a list of lists, ``len(audio) //
hop_length`` frame counts, ``f * 533`` sample offsets, a dict of tensors per window, and no
worker sharding, so under ``DataLoader(num_workers=2)`` every worker yields the whole stream
(everything is delivered once per worker: the document's bug, kept on purpose and counted
as delivered windows by the benchmark). Its window loop ``range(0, num_frames -
window_frames, stride)`` drops the last full window, as in the document.

Only two changes, both needed to run at all: ``num_frames`` is defined when the counts
agree (the document assigns it only inside the mismatch branch, a NameError otherwise), and
``file_idx`` is the file's position in the sorted pair list (undefined in the document).
Resampling uses soxr instead of librosa (never imported here; the benchmark's takes are at
16 kHz, so it is not called).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from torch.utils.data import IterableDataset


class SeedSequentialKoeMorphDataset(IterableDataset):
    def __init__(
        self,
        data_dir: str | Path,
        window_frames: int = 256,  # ~8.5 seconds at 30fps
        stride_frames: int = 1,  # 1 frame stride for true sequential
        sample_rate: int = 16000,
        target_fps: int = 30,
        shuffle_files: bool = True,
        loop_dataset: bool = True,
    ):
        super().__init__()
        self.data_dir = Path(data_dir)
        self.window_frames = window_frames
        self.stride_frames = stride_frames
        self.sample_rate = sample_rate
        self.target_fps = target_fps
        self.hop_length = sample_rate // target_fps  # 533
        self.shuffle_files = shuffle_files
        self.loop_dataset = loop_dataset
        self.file_pairs = self._find_file_pairs()

    def _find_file_pairs(self) -> list[tuple[Path, Path]]:
        pairs = []
        for audio_path in self.data_dir.glob("**/*.wav"):
            jsonl_path = audio_path.with_suffix(".jsonl")
            if jsonl_path.exists():
                pairs.append((audio_path, jsonl_path))
        return sorted(pairs)

    def _load_audio(self, audio_path: Path) -> np.ndarray:
        audio, sr = sf.read(audio_path, dtype="float32")
        if sr != self.sample_rate:
            import soxr  # the document uses librosa.resample here

            audio = soxr.resample(audio, sr, self.sample_rate)
        return audio

    def _load_blendshapes(self, jsonl_path: Path) -> np.ndarray:
        blendshapes = []
        with open(jsonl_path) as f:
            for line in f:
                frame_data = json.loads(line.strip())
                blendshapes.append(frame_data["blendshapes"])
        return np.array(blendshapes, dtype=np.float32)

    def _process_file_pair(self, file_idx: int, audio_path: Path, jsonl_path: Path):
        audio = self._load_audio(audio_path)
        blendshapes = self._load_blendshapes(jsonl_path)

        expected_frames = len(audio) // self.hop_length
        num_frames = min(len(blendshapes), expected_frames)  # the document: only inside the branch
        if abs(len(blendshapes) - expected_frames) > 1:
            num_frames = min(len(blendshapes), expected_frames)
            audio = audio[: num_frames * self.hop_length]
            blendshapes = blendshapes[:num_frames]

        for i in range(0, num_frames - self.window_frames, self.stride_frames):
            start_frame = i
            end_frame = start_frame + self.window_frames
            start_sample = start_frame * self.hop_length
            end_sample = end_frame * self.hop_length
            yield {
                "audio": torch.from_numpy(audio[start_sample:end_sample]),
                "blendshapes": torch.from_numpy(blendshapes[start_frame:end_frame]),
                "file_indices": torch.tensor(file_idx),
                "start_frames": torch.tensor(start_frame),
                "file_names": audio_path.stem,
            }

    def __iter__(self):
        while True:
            files = list(enumerate(self.file_pairs))
            if self.shuffle_files:
                random.shuffle(files)
            for file_idx, (audio_path, jsonl_path) in files:
                yield from self._process_file_pair(file_idx, audio_path, jsonl_path)
            if not self.loop_dataset:
                break


def seed_dataloader(dataset, num_workers: int = 2) -> torch.utils.data.DataLoader:
    """The document's DataLoader configuration."""
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=4,
        num_workers=num_workers,
        pin_memory=True,
        persistent_workers=num_workers > 0,
        drop_last=True,
    )
