"""Type stubs for the Rust extension ``koemorph_data._core``."""
import numpy as np
import numpy.typing as npt

__version__: str
ARKIT_BLENDSHAPES: tuple[str, ...]
NUM_BLENDSHAPES: int

def read_blendshapes(path: str) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float64]]:
    """Rows as they are: values [T, 52] and timestamps [T]. Raises DataFormatError(path, line)."""

def load_blendshapes(
    path: str, target_fps: float
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float64], float | None, int]:
    """(values [F, 52], timestamps [F], detected source fps or None, source rows), converted to target_fps."""

def parse_blendshapes_bytes(
    data: bytes, name: str = "<bytes>", threads: int | None = None
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float64]]: ...
def frames_to_samples(
    frames: npt.NDArray[np.int64], sample_rate: int, fps: int, alignment: str
) -> npt.NDArray[np.int64]: ...
def frames_covered(samples: int, sample_rate: int, fps: int, alignment: str) -> int: ...
def resampled_length(samples: int, from_rate: int, to_rate: int) -> int: ...
def plan_epoch(
    frames: npt.NDArray[np.uint64],
    window_frames: int,
    stride: int,
    seed: int,
    epoch: int,
    shuffle_files: bool,
    dense_ratio: float | None = None,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.bool_]]:
    """(file, start_frame, dense) of every window of the epoch, in delivery order."""

def rank_share(total: int, rank: int, world_size: int, drop_uneven: bool) -> tuple[int, int]: ...
def worker_block(len: int, worker: int, num_workers: int) -> tuple[int, int]: ...
def assign_files_to_ranks(window_counts: list[int], world_size: int) -> list[list[int]]: ...
def lane_plan(
    segments: list[tuple[int, int]], lanes: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.bool_]]: ...
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
