"""Type stubs for the Rust extension ``koemorph_data._core``."""

from collections.abc import Sequence
from typing import Any, final

import numpy as np
import numpy.typing as npt

# pyo3 lists every name the module adds.
__all__ = [
    "__version__",
    "ARKIT_BLENDSHAPES",
    "NUM_BLENDSHAPES",
    "KOEMORPH_BLENDSHAPES",
    "POSE_NAMES",
    "NUM_POSE",
    "resolve_blendshape_order",
    "read_blendshapes",
    "parse_blendshapes_bytes",
    "load_blendshapes",
    "load_blendshapes_bytes",
    "frames_to_samples",
    "frames_covered",
    "resampled_length",
    "frames_covered_each",
    "resampled_lengths",
    "track_facts_bytes",
    "conformed_frame_counts",
    "parse_manifest_lines",
    "plan_runs",
    "plan_windows",
    "window_order",
    "rank_share",
    "worker_block",
    "assign_files_to_ranks",
    "lane_schedule",
    "gather_windows",
    "gather_batch",
    "gather_batch_async",
    "GatherTicket",
    "_panic_for_test",
]

__version__: str
ARKIT_BLENDSHAPES: tuple[str, ...]
"""The 52 blendshape names in Live Link Face's order; every returned track is in this order."""
NUM_BLENDSHAPES: int
KOEMORPH_BLENDSHAPES: tuple[str, ...]
"""KoeMorph's positional order (jawLeft/jawRight and mouthLeft/mouthRight swapped)."""
POSE_NAMES: tuple[str, ...]
"""Live Link Face's 9 head and eye pose columns, in its order."""
NUM_POSE: int

def resolve_blendshape_order(order: str | Sequence[str]) -> list[int]:
    """perm with file column j = ARKIT_BLENDSHAPES[perm[j]]; order is "live_link", "koemorph" or
    the 52 names (case-insensitive, each once). ValueError naming missing/repeated/unknown names."""

def read_blendshapes(
    path: str, order: str | Sequence[str] | None = None, timestamp_unit: str = "s"
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float64], npt.NDArray[np.float32] | None]:
    """Rows as they are: (values [T, 52], timestamps [T] in seconds, pose [T, 9] or None).
    order: positional column order of the file (None = "live_link"); timestamp_unit: "s", "ms"
    or "us". Raises DataFormatError(path, line); ValueError for a bad order or unit."""

def load_blendshapes(
    path: str, target_fps: float, order: str | Sequence[str] | None = None, timestamp_unit: str = "s"
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float64], float | None, int, npt.NDArray[np.float32] | None]:
    """(values [F, 52], timestamps [F], detected source fps or None, source rows, pose [F, 9] or
    None), converted to target_fps. A detected rate outside 10-240 fps or a timestamp gap over
    60 s raises DataFormatError."""

def parse_blendshapes_bytes(
    data: bytes,
    name: str = "<bytes>",
    threads: int | None = None,
    order: str | Sequence[str] | None = None,
    timestamp_unit: str = "s",
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float64], npt.NDArray[np.float32] | None]:
    """read_blendshapes of an in-memory document; errors name ``name`` as the path."""

def load_blendshapes_bytes(
    data: bytes, name: str, target_fps: float, order: str | Sequence[str] | None = None, timestamp_unit: str = "s"
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float64], float | None, int, npt.NDArray[np.float32] | None]:
    """load_blendshapes of an in-memory document; errors name ``name`` as the path."""

def frames_to_samples(
    frames: npt.NDArray[np.int64], sample_rate: int, fps: int, alignment: str
) -> npt.NDArray[np.int64]: ...
def frames_covered(samples: int, sample_rate: int, fps: int, alignment: str) -> int: ...
def resampled_length(samples: int, from_rate: int, to_rate: int) -> int: ...
def frames_covered_each(
    samples: npt.NDArray[np.uint64], sample_rate: int, fps: int, alignment: str
) -> npt.NDArray[np.uint64]:
    """frames_covered of every element."""

def resampled_lengths(
    samples: npt.NDArray[np.uint64], from_rates: npt.NDArray[np.uint64], to_rate: int
) -> npt.NDArray[np.uint64]:
    """resampled_length of every (samples, from_rate) pair."""

def track_facts_bytes(
    data: bytes, name: str, order: str | Sequence[str] | None = None, timestamp_unit: str = "s"
) -> tuple[int, float | None, float | None, float | None, float, bool]:
    """(rows, source fps or None, first and last timestamp or None, longest step between
    timestamps (0 below 2 rows), pose present) of a JSONL document, with load_blendshapes'
    checks (DataFormatError naming ``name``), without converting it."""

def conformed_frame_counts(
    rows: npt.NDArray[np.uint64],
    source_fps: npt.NDArray[np.float64],
    span: npt.NDArray[np.float64],
    longest_step: npt.NDArray[np.float64],
    target_fps: float,
) -> npt.NDArray[np.uint64]:
    """Frames load_blendshapes delivers at target_fps for tracks of these rows, detected fps
    (NaN: none), spans (last - first timestamp) and longest steps."""

def parse_manifest_lines(data: bytes, name: str, first_line: int) -> dict[str, Any]:
    """A take manifest's take lines (line ``first_line`` onwards) as columns: lists "wav",
    "jsonl", "wav_version", "jsonl_version"; uint64 arrays "wav_size", "jsonl_size", "rate",
    "channels", "frames", "rows"; float64 arrays (NaN: absent) "source_fps", "first_s",
    "last_s", "max_step_s"; bool array "pose"; "errors": [(take, file, line, reason)].
    ValueError naming ``name`` and the line for a line that is not a take line."""

def plan_runs(
    frames: npt.NDArray[np.uint64],
    window_frames: int,
    stride: int,
    seed: int,
    epoch: int,
    shuffle_files: bool,
    dense_ratio: float | None = None,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """(file, window count) of each take with windows, in the epoch's order."""

def plan_windows(
    frames: npt.NDArray[np.uint64],
    run_file: npt.NDArray[np.int64],
    run_end: npt.NDArray[np.int64],
    indices: npt.NDArray[np.int64],
    window_frames: int,
    stride: int,
    seed: int,
    epoch: int,
    dense_ratio: float | None = None,
    shuffle_windows: bool = False,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.bool_]]:
    """(file, start_frame, dense) of the windows at plan ``indices`` of the runs ``run_file``
    with cumulative counts ``run_end``; ``shuffle_windows``: through ``window_order`` first.
    ValueError for an index outside the plan or runs that do not match ``frames``."""

def window_order(indices: npt.NDArray[np.int64], total: int, seed: int, epoch: int) -> npt.NDArray[np.int64]:
    """The base index each of ``indices`` delivers under shuffle="windows": a seeded bijection
    of [0, total) per (seed, epoch), computed per index."""

def rank_share(total: int, rank: int, world_size: int, drop_uneven: bool) -> tuple[int, int]: ...
def worker_block(len: int, worker: int, num_workers: int) -> tuple[int, int]: ...
def assign_files_to_ranks(window_counts: list[int], world_size: int) -> list[list[int]]: ...
def lane_schedule(counts: npt.NDArray[np.int64], lanes: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """(lane, start step) of each segment of ``counts`` windows queued onto ``lanes`` lanes
    (lane -1 for a segment without windows)."""

def gather_windows(
    sources: list[npt.NDArray[np.float32]],
    ids: npt.NDArray[np.int64],
    starts: npt.NDArray[np.int64],
    out: npt.NDArray[np.float32],
    threads: int = 1,
) -> None:
    """Copies window k = sources[ids[k]].ravel()[starts[k]:starts[k] + out[k].size] into out[k]
    without the GIL (out: C-contiguous, writable, first axis len(ids)). ValueError on bad input."""

def gather_batch(
    audio_sources: list[npt.NDArray[np.float32]],
    blendshape_sources: list[npt.NDArray[np.float32]],
    ids: npt.NDArray[np.int64],
    sample_starts: npt.NDArray[np.int64],
    frame_starts: npt.NDArray[np.int64],
    audio_out: npt.NDArray[np.float32],
    blendshape_out: npt.NDArray[np.float32],
    threads: int = 1,
) -> None:
    """Audio and blendshape windows of a batch in one GIL-free call (frame_starts in rows of
    blendshape_out's trailing shape). Validates everything before writing; ValueError on bad input."""

@final
class GatherTicket:
    """A background gather: keeps its arrays alive; dropping it waits for the copy."""

    def wait(self) -> None:
        """Blocks (without the GIL) until the copy is done; raises what the copy raised."""
    def done(self) -> bool: ...

def gather_batch_async(
    audio_sources: list[npt.NDArray[np.float32]],
    blendshape_sources: list[npt.NDArray[np.float32]],
    ids: npt.NDArray[np.int64],
    sample_starts: npt.NDArray[np.int64],
    frame_starts: npt.NDArray[np.int64],
    audio_out: npt.NDArray[np.float32],
    blendshape_out: npt.NDArray[np.float32],
    threads: int = 1,
) -> GatherTicket:
    """``gather_batch`` validated now and copied on the core's threads; do not touch the
    outputs before ``wait()``."""

def _panic_for_test() -> None: ...
