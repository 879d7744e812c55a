"""The sequential window datasets of the KoeMorph design, as torch IterableDatasets.

A dataset composes four pieces, each in its own module: the validated takes
(``takes.TakeTable``), the epoch plans and their split over ranks, workers and lanes
(``sampling.WindowSampler``, metadata only), the decoded takes (``store.TakeStore``) and the
sample / batch schema (``batch.BatchSchema``). ``loader()`` (``loader.py``) reads the same
pieces through the public attributes ``sampler``, ``store``, ``schema`` and ``position``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from .augment import as_augment
from .batch import Batch, BatchSchema
from .blendshapes import BlendshapeOrder, LabelFormat
from .budget import parse_size
from .loader import BatchLoader
from .lookahead import TakeLookahead, lane_starts, piece_start, take_pieces
from .plan import EpochPlan
from .sampling import (
    AdaptiveStride,
    FixedStride,
    StreamPosition,
    WindowSampler,
    check_positive,
    check_sampling,
    resume_state,
)
from .splits import pair_selector
from .store import TakeStore
from .takes import TakeTable
from .timing import Timing
from .windows import WindowReader

logger = logging.getLogger("koemorph_data")

_COMMON_PARAMETERS = """
    :param data_dir: directory searched recursively for takes: every ``*.wav`` with its
        same-stem ``.jsonl`` beside it; or an fsspec URL (``s3://bucket/prefix``, ``gs://``,
        ``memory://``; ``file://`` is a local path), which needs ``cache_dir``: each take is
        fetched by the process that first reads it and decoded into the prepared cache.
    :param storage_options: fsspec filesystem options for a URL ``data_dir`` (credentials,
        ``client_kwargs={"endpoint_url": ...}``); ignored for local paths.
    :param manifest: a manifest written by ``koemorph-data manifest`` (path or URL): the takes
        and their counts are taken from it without opening any take, and a take whose size
        (or ETag) differs from it is a DataFormatError when read. None: ``data_dir``'s
        ``koemorph-manifest.jsonl.gz`` when it lists exactly the takes found, with their sizes;
        False: never a manifest.
    :param window_frames: window length in blendshape frames (256 = 8.5 s at 30 fps).
    :param sample_rate: audio rate the windows are delivered at (other rates are resampled).
    :param target_fps: blendshape rate the windows are delivered at (other rates are converted).
    :param shuffle_files: shuffle the take order per epoch from ``(seed, epoch)``; a take's
        windows always come in temporal order (the same as ``shuffle="takes"``; False:
        ``shuffle="none"``; ``shuffle`` wins when given).
    :param loop_dataset: True: the stream starts at ``epoch`` and runs epoch after epoch
        without end; False: one epoch, and ``len()`` works.
    :param seed: seed of the take order, mixed-mode draws and (by default) augmentation.
    :param alignment: ``"exact"``: frame f starts at sample ``floor(f * sample_rate /
        target_fps)``; ``"hop"``: at ``f * hop_length`` (KoeMorph's rule, drifts).
    :param on_error: ``"raise"``: a malformed take raises DataFormatError; ``"skip"``: it is
        logged, skipped and listed in ``skipped``.
    :param epoch: the epoch the first ``iter()`` plays (see ``set_epoch``).
    :param rank: this process's rank (default: from torch.distributed, else 0).
    :param world_size: number of ranks (default: from torch.distributed, else 1).
    :param drop_uneven: False: short ranks are padded with windows from the start of the
        epoch (as DistributedSampler does); True: the remainder is dropped.
    :param lanes: yield ready-made batches of this many slots, each slot following one take
        window after window (with ``reset`` and ``valid`` keys); use ``batch_size=None`` in
        the DataLoader.
    :param cache_dir: prepared cache directory (``koemorph-data prepare``): takes are
        memory-mapped from it and filled on first use.
    :param cache_limit: bytes ``cache_dir`` may hold, as an integer or a string such as
        ``"20GB"``, ``"500MB"`` or ``"1.5GiB"`` (GB = 10^9 bytes, GiB = 2^30): storing a take
        first evicts the least recently used ones, safely across processes (a take another
        process has mapped stays readable for it; a half-written take is never served); an
        evicted take needed again is decoded (or fetched) again. Needs ``cache_dir``. None:
        no bound.
    :param prefetch_takes: takes loaded ahead in background threads: while a DataLoader
        worker (or ``loader()``) reads one take, the next ``prefetch_takes`` takes of its own
        stream are fetched, decoded or mapped, so that network and decoding overlap training;
        a failed load raises its error when its take is reached. They are kept in the
        per-process take store, whose capacity is raised to make room (see
        ``max_cached_takes``). 0: each take is loaded when it is first needed.
    :param augment: an ``augment.Augment``, a list of transforms or a config dict (see
        ``koemorph_data.augment``); None: no augmentation.
    :param max_cached_takes: decoded takes kept per process (at least 1 + ``prefetch_takes``,
        or ``lanes`` + ``prefetch_takes`` in lanes mode; memory-mapped, not in RAM, with
        ``cache_dir``).
    :param worker_sharing_strategy: torch sharing strategy set inside DataLoader workers
        (``"file_system"``: batches passed by name, faster here); None keeps torch's.
    :param batch_size: the DataLoader's batch size: DataLoader workers then deal whole
        batches (worker w makes batches w, w + W, ...), so any ``num_workers`` delivers the
        batches of ``num_workers=0`` in the same order, only the stream's last batch can be
        partial, and resume needs no per-worker arithmetic. None: each worker delivers one
        contiguous block (a warning says so when there are several workers).
    :param split: None: every take; ``"train"``, ``"val"`` or ``"test"``: only the takes of that
        split (``koemorph_data.splits``: a stable hash of each take's relative path, so adding
        takes never moves existing ones; the three splits are disjoint and cover every take).
    :param val_fraction: share of takes (or speakers) in the ``"val"`` split.
    :param test_fraction: share of takes (or speakers) in the ``"test"`` split.
    :param split_by: ``"take"``: each take is assigned on its own; ``"speaker"``: all takes of a
        directory (the take's parent relative to ``data_dir``) go to the same split.
    :param split_seed: seed of the split assignment.
    :param max_files: use only the first ``max_files`` takes in sorted order (None or 0: all),
        before the split, as KoeMorph's datasets do.
    :param tail: ``"drop"``: frames after a take's last whole window are not delivered;
        ``"pad"``: one more window at the next stride position, zero-padded past the take's
        end, and a ``frame_mask`` key (bool [window_frames], True on real frames) on every
        window; with ``stride_frames == window_frames`` every frame is delivered exactly once
        (a take shorter than one window gives one padded window).
    :param reproduce: None: this package's exact behaviour; ``"koemorph"``: KoeMorph's own
        datasets window for window (``alignment="hop"``: frame f at ``f * hop_length``, and
        AdaptiveSequentialDataset's linear progressive stride with KoeMorph's
        ``progress = min(1, epoch / max(1, max_epochs - 1))``), to reproduce old experiments.
    :param shuffle: ``"takes"``: take order shuffled per epoch, windows in temporal order;
        ``"windows"``: one seeded permutation of all the epoch's windows across takes (each
        exactly once, for non-recurrent models; needs ``cache_dir``: random access reads the
        memory-mapped prepared cache); ``"none"``: sorted take order. None: from
        ``shuffle_files`` (True: "takes", False: "none").
    :param blendshape_order: column order of positional ``"blendshapes"`` arrays in the JSONL:
        ``"live_link"`` (Live Link Face's), ``"koemorph"`` (KoeMorph's list) or the 52 names in
        the file's order; samples are always in ARKIT_BLENDSHAPES order.
    :param timestamp_unit: unit of the JSONL timestamps: ``"s"``, ``"ms"`` or ``"us"``.
    :param pose: also deliver the head/eye pose as ``pose`` float32 [window_frames, 9] on the
        blendshapes' frames (a take without pose is then a DataFormatError naming it).
"""


def check_reproduce(reproduce: str | None) -> str | None:
    """The ``reproduce`` option, checked: None or ``"koemorph"``."""
    if reproduce not in (None, "koemorph"):
        raise ValueError(f"reproduce must be None or 'koemorph', got {reproduce!r}")
    return reproduce


def _forward(piece: str, name: str, doc: str) -> property:
    """A read-only attribute answered by one of the dataset's pieces."""
    return property(lambda self: getattr(getattr(self, piece), name), doc=doc)


def _check_options(options: Mapping[str, Any]) -> int | None:
    """Checks WindowDataset's arguments (its ``locals()``) before any I/O; returns the cache
    limit in bytes."""
    check_positive(**{key: options[key] for key in ("window_frames", "sample_rate", "target_fps", "max_cached_takes")})
    on_error, worker_sharing_strategy = options["on_error"], options["worker_sharing_strategy"]
    shuffle, cache_dir, cache_limit = options["sampling"].get("shuffle"), options["cache_dir"], options["cache_limit"]
    if cache_limit is not None and cache_dir is None:
        raise ValueError("cache_limit bounds the prepared cache: pass cache_dir= as well")
    prefetch_takes = options["prefetch_takes"]
    if not isinstance(prefetch_takes, (int, np.integer)) or isinstance(prefetch_takes, bool) or prefetch_takes < 0:
        raise ValueError(f"prefetch_takes must be a non-negative integer, got {prefetch_takes!r}")
    if shuffle == "windows" and cache_dir is None:
        raise ValueError(
            "shuffle='windows' reads windows in random order across takes, which is cheap only from "
            "the memory-mapped prepared cache: pass cache_dir= (filled on first use, or by "
            "`koemorph-data prepare`)"
        )
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    strategies = torch.multiprocessing.get_all_sharing_strategies()
    if worker_sharing_strategy is not None and worker_sharing_strategy not in strategies:
        raise ValueError(
            f"worker_sharing_strategy must be one of {sorted(strategies)} or None, got {worker_sharing_strategy!r}"
        )
    return None if cache_limit is None else parse_size(cache_limit)


def _store_and_schema(
    takes: TakeTable, sampler: WindowSampler, timing: Timing, options: Mapping[str, Any]
) -> tuple[TakeStore, BatchSchema]:
    """The take store and batch schema of a dataset (``options``: WindowDataset's
    ``locals()``): zero-padded takes and ``frame_mask`` with ``tail="pad"``; room for the
    takes being read plus the prefetched ones, and for every memory-mapped take with
    ``shuffle="windows"``."""
    prefetch_takes, labels = int(options["prefetch_takes"]), options["labels"]
    capacity = max(int(options["max_cached_takes"]), (sampler.lanes or 1) + prefetch_takes)
    window = sampler.window_frames
    pad = sampler.tail == "pad"
    if sampler.shuffle == "windows":
        capacity = max(capacity, len(takes.pairs))  # memory-mapped from the cache: costs no RAM
    store = TakeStore(
        takes,
        capacity=capacity,
        pad_window=window if pad else None,
        cache_limit=options["self"].cache_limit,
        prefetch_takes=prefetch_takes,
    )
    schema = BatchSchema(
        window_frames=window,
        window_samples=timing.window_samples(window),
        names=takes.names,
        dense_flag=isinstance(options["stride"], AdaptiveStride),
        real_frames=takes.frames if pad else None,
        pose=labels is not None and labels.pose,
    )
    return store, schema


def _describe(ds: WindowDataset) -> str:
    """``repr`` of a dataset: its directory, takes and the arguments that shape its epochs."""
    fields = [repr(str(ds.data_dir)), f"takes={len(ds.takes.pairs)}"]
    if ds.takes.skipped:
        fields.append(f"skipped={len(ds.takes.skipped)}")
    fields += [
        f"window_frames={ds.window_frames}",
        *ds._repr_fields(),
        f"epoch={ds.epoch}",
        f"windows_in_epoch={len(ds.plan())}",
    ]
    optional = {
        "rank": ds.rank,
        "world_size": ds.world_size,
        "lanes": ds.lanes,
        "cache_dir": None if ds.cache_dir is None else str(ds.cache_dir),
        "cache_limit": ds.cache_limit,
        "augment": ds.augment,
    }
    fields += [f"{k}={v!r}" for k, v in optional.items() if v is not None]
    if not ds.loop_dataset:
        fields.append("loop_dataset=False")
    return f"{type(ds).__name__}({', '.join(fields)})"


# Subclass arguments WindowDataset takes as they are.
_PASSED = (
    "window_frames", "sample_rate", "target_fps", "shuffle_files", "loop_dataset", "seed", "epoch", "on_error",
    "rank", "world_size", "drop_uneven", "lanes", "cache_dir", "augment", "max_cached_takes",
    "worker_sharing_strategy", "batch_size", "tail", "shuffle", "storage_options", "manifest",
    "cache_limit", "prefetch_takes",
)  # fmt: skip
_SPLIT = ("split", "val_fraction", "test_fraction", "split_by", "split_seed", "max_files")


def _passed(options: Mapping[str, Any]) -> dict[str, Any]:
    """WindowDataset's keyword arguments from a subclass's ``locals()``: the arguments passed
    as they are, the take selection (``max_files`` and the split) and the alignment."""
    passed = {key: options[key] for key in _PASSED}
    passed["select"] = pair_selector(options["data_dir"], **{key: options[key] for key in _SPLIT})
    passed["alignment"] = "hop" if check_reproduce(options["reproduce"]) == "koemorph" else options["alignment"]
    passed["labels"] = LabelFormat(options["blendshape_order"], options["timestamp_unit"], options["pose"])
    return passed


class KoeMorphNames:
    """The epoch-size methods of KoeMorph's datasets, under their names (exact here)."""

    def num_windows(self) -> int:
        raise NotImplementedError

    def get_num_windows(self) -> int:
        """KoeMorph's name for ``num_windows()`` (exact here, not estimated from file sizes)."""
        return self.num_windows()

    def estimate_epoch_size(self) -> int:
        """KoeMorph's name for ``num_windows()`` (exact here, not estimated from 300-frame takes)."""
        return self.num_windows()


class WindowDataset(KoeMorphNames, IterableDataset):
    """Shared machinery of both datasets; subclasses choose the stride of each epoch.

    ``sampling`` holds ``WindowSampler``'s arguments: shuffle_files, loop_dataset, seed,
    epoch, rank, world_size, drop_uneven, lanes, batch_size.
    """

    def __init__(
        self,
        data_dir: str | Path,
        *,
        stride: FixedStride | AdaptiveStride,
        window_frames: int,
        sample_rate: int,
        target_fps: int,
        alignment: str,
        on_error: str,
        cache_dir: str | Path | None,
        augment: Any,
        max_cached_takes: int,
        worker_sharing_strategy: str | None,
        select: Any = None,
        labels: LabelFormat | None = None,
        storage_options: Mapping[str, Any] | None = None,
        manifest: Any = None,
        cache_limit: int | str | None = None,
        prefetch_takes: int = 2,
        **sampling: Any,
    ) -> None:
        super().__init__()
        self.cache_limit = _check_options(locals())
        self.timing = Timing(int(sample_rate), int(target_fps), alignment)
        check_sampling(**{k: sampling[k] for k in ("seed", "epoch", "rank", "world_size", "lanes")})  # before I/O
        self.window_frames = int(window_frames)
        self.on_error = on_error
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.worker_sharing_strategy = worker_sharing_strategy
        pad = sampling.get("tail", "drop") == "pad"
        self.takes = TakeTable(
            data_dir,
            timing=self.timing,
            window_frames=self.window_frames,
            on_error=on_error,
            cache_dir=self.cache_dir,
            **dict(select=select, short_takes=pad, labels=labels, storage_options=storage_options, manifest=manifest),
        )
        self.data_dir = self.takes.data_dir  # a Path, or the URL as given
        self.sampler = WindowSampler(
            self.takes.frames, window_frames=self.window_frames, stride=stride, timing=self.timing, **sampling
        )
        self.store, self.schema = _store_and_schema(self.takes, self.sampler, self.timing, locals())
        self.reader = WindowReader(self.store, self.schema, augment=as_augment(augment), seed=sampling["seed"])
        self.position = StreamPosition(int(sampling["epoch"]))

    # ------------------------------------------------------------------ configuration
    sample_rate = _forward("timing", "sample_rate", "Audio rate of the windows (Hz).")
    target_fps = _forward("timing", "target_fps", "Blendshape rate of the windows (frames/s).")
    alignment = _forward("timing", "alignment", "Frame-to-sample rule: 'exact' or 'hop'.")
    hop_length = _forward("timing", "hop_length", "Audio samples per frame, rounded down (533).")
    seed = _forward("sampler", "seed", "Seed of take order, mixed-mode draws and augmentation.")
    shuffle_files = _forward("sampler", "shuffle_files", "Shuffled per epoch (shuffle is 'takes' or 'windows').")
    shuffle = _forward("sampler", "shuffle", "'takes', 'windows' or 'none'.")
    loop_dataset = _forward("sampler", "loop_dataset", "The stream runs epoch after epoch without end.")
    rank = _forward("sampler", "rank", "The rank given (None: from torch.distributed).")
    world_size = _forward("sampler", "world_size", "The world size given (None: from torch.distributed).")
    drop_uneven = _forward("sampler", "drop_uneven", "Ranks drop the epoch's remainder instead of padding.")
    lanes = _forward("sampler", "lanes", "Slots per lanes batch (None: window mode).")
    batch_size = _forward("sampler", "batch_size", "Windows per batch workers deal whole (None: blocks).")
    tail = _forward("sampler", "tail", "'drop' or 'pad' (one more zero-padded window per take).")
    augment = _forward("reader", "augment", "The augmentation (an augment.Augment) or None.")
    max_cached_takes = _forward("store", "capacity", "Decoded takes kept per process.")
    prefetch_takes = _forward("store", "prefetch_takes", "Takes loaded ahead of the reader, in the background.")

    @property
    def window_samples(self) -> int:
        """Audio samples per window (window_frames * hop_length)."""
        return self.timing.window_samples(self.window_frames)

    # ------------------------------------------------------------------ takes
    @property
    def file_pairs(self) -> list[tuple[Path, Path]]:
        """(wav, jsonl) of every take, sorted; a sample's ``file_indices`` indexes this list."""
        return list(self.takes.pairs)

    @property
    def skipped(self) -> list[tuple[Path, str]]:
        """(path, reason) of every take skipped with ``on_error="skip"``."""
        return list(self.takes.skipped)

    @property
    def orphans(self) -> list[Path]:
        """Wavs without a jsonl and jsonls without a wav (logged, not used)."""
        return list(self.takes.orphans)

    @property
    def usable_frames(self) -> np.ndarray:
        """Usable frames per take (0 for skipped takes), in file_pairs order."""
        return self.takes.frames.astype(np.int64)

    # ------------------------------------------------------------------ epochs
    @property
    def epoch(self) -> int:
        return self.sampler.epoch

    def set_epoch(self, epoch: int) -> None:
        """Selects the epoch the next ``iter()`` plays (DistributedSampler's convention)."""
        if epoch < 0:
            raise ValueError("epoch must be non-negative")
        self.sampler.shared_epoch.value = epoch
        self.position.reset(epoch)

    def stride_for_epoch(self, epoch: int) -> int:
        """The window stride (frames) of an epoch."""
        return self.sampler.stride.stride_for_epoch(epoch)

    def plan(self, epoch: int | None = None) -> EpochPlan:
        """The epoch's global window plan (before rank/worker sharding)."""
        return self.sampler.plan(epoch)

    def num_windows(self) -> int:
        """Windows the current epoch delivers to this rank (padding included), without decoding."""
        return self.sampler.num_windows()

    def __len__(self) -> int:
        if self.loop_dataset:
            raise TypeError(
                "len() is defined only with loop_dataset=False "
                "(with loop_dataset=True the stream has no end); see num_windows()"
            )
        return self.sampler.epoch_items()

    def __repr__(self) -> str:
        return _describe(self)

    def _repr_fields(self) -> list[str]:
        return []

    # ------------------------------------------------------------------ resume
    def state_dict(self, consumed: int | None = None, batch_size: int | None = None) -> dict[str, Any]:
        """Resume state: ``epoch``, ``consumed`` and what exactness depends on (``num_workers``
        of the last iteration, None if never iterated; ``batch_size``, ``world_size``,
        ``whole_batches``, ``lanes``, ``shuffle``, ``drop_uneven``, ``tail``).
        ``load_state_dict`` + iteration under a configuration that cannot continue the same
        stream raises ValueError instead of delivering other windows.

        :param consumed: with DataLoader workers (required then: a ValueError says so), the
            windows (lane slots in lanes mode) the training loop has received since the
            stream's epoch started; iterating in-process (or through ``loader()``) the
            dataset's own count is used when it is None.
        :param batch_size: the DataLoader's batch size (lets any batch boundary resume exactly
            without the dataset's ``batch_size``; must equal it when that is set).
        """
        return resume_state(self.sampler, self.position, consumed, batch_size)

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Makes the next iteration continue exactly after ``state["consumed"]`` windows of
        ``state["epoch"]``."""
        resume = self.position.load(state, self.lanes)
        self.sampler.shared_epoch.value = resume.epoch

    # ------------------------------------------------------------------ iteration
    def __iter__(self) -> Iterator[Batch]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        if info is not None and self.worker_sharing_strategy is not None:
            # How this worker hands its batches to the training process. "file_system" passes
            # shared memory by name instead of one file-descriptor round trip per tensor over
            # a socket: ~1.4x the windows/s of torch's default here (see README, Performance).
            torch.multiprocessing.set_sharing_strategy(self.worker_sharing_strategy)
        epoch = self.epoch
        counting = info is None  # a worker's count never reaches the training process
        resume = self.position.begin(epoch, count=counting)
        self.sampler.start_stream(worker, 0 if info is None else workers, resume)
        ahead = TakeLookahead(self.store)  # the next takes of this worker's stream, in the background
        if self.lanes is not None:
            step = self.lanes
            steps = self.sampler.lane_steps(epoch, worker, workers, resume)
            stream: Iterator[Batch] = (
                self.reader.lane_batch(plan, index, reset) for plan, index, reset in ahead.follow(steps, lane_starts)
            )
        else:
            step = 1
            pieces = take_pieces(self.sampler.window_runs(epoch, worker, workers, resume))
            stream = (
                self.reader.sample(plan, i)
                for _take, plan, positions in ahead.follow(pieces, piece_start)
                for i in positions.tolist()
            )
        for item in stream:
            if counting:  # counted when handed over: a consumer may stop right after it
                self.position.advance(step)
            yield item

    def loader(
        self,
        batch_size: int | None = None,
        num_threads: int = 2,
        pin_memory: bool = False,
        drop_last: bool = True,
        prefetch: int = 2,
    ) -> BatchLoader:
        """Batches assembled in this process by the Rust core, without DataLoader workers.

        Iterating the result yields exactly what ``DataLoader(dataset, batch_size=batch_size,
        num_workers=0, drop_last=drop_last)`` would (same keys, shapes, dtypes and order:
        rank sharding, ``loop_dataset``, ``load_state_dict`` resume and the stride modes carry
        over because both walk the same epoch plan). In lanes mode every batch is one lane
        step (``[lanes, ...]``) and ``batch_size`` and ``drop_last`` are ignored.

        :param batch_size: windows per batch (None: the dataset's ``batch_size``, else 4; when
            both are given they must agree).
        :param num_threads: threads copying windows (the core's own, GIL released).
        :param pin_memory: allocate batches in pinned memory when CUDA is available.
        :param drop_last: drop the last, partial batch of the stream.
        :param prefetch: batches gathered ahead of the caller (0: all in the caller's thread).

        Only indices move through Python: the core's threads copy the windows of the next
        few batches from the decoded takes (or the memory-mapped cache with ``cache_dir``)
        straight into the batch tensors. Consecutive batches are row views of one chunk
        tensor (holding a batch keeps its chunk's memory alive). The dataset's
        ``prefetch_takes`` next takes of the stream load in the background from the second
        batch on (the first is out before that). A batch counts as consumed
        for ``state_dict()`` once it is handed over. With ``augment`` set, batches are built
        window by window through ``reader.sample`` (correct and in order, not faster than a
        DataLoader with num_workers=0).
        """
        own = self.sampler.batch_size
        if batch_size is not None and own is not None and batch_size != own:
            raise ValueError(f"loader(batch_size={batch_size}) differs from the dataset's batch_size={own}")
        return BatchLoader(
            self,
            batch_size=batch_size if batch_size is not None else (own or 4),
            num_threads=num_threads,
            pin_memory=pin_memory,
            drop_last=drop_last,
            prefetch=prefetch,
        )


class SequentialKoeMorphDataset(WindowDataset):
    __doc__ = (
        """Fixed-stride sliding windows over every take (stride 1 = every frame transition).

    Samples are dicts: ``audio`` float32 [window_frames * hop_length], ``blendshapes`` float32
    [window_frames, 52] (``ARKIT_BLENDSHAPES`` order), ``file_indices`` and ``start_frames``
    int64 0-d tensors and ``file_names`` (the take's stem).

    :param stride_frames: frames between consecutive windows of a take (1: every frame)."""
        + _COMMON_PARAMETERS
    )

    def __init__(
        self,
        data_dir: str | Path,
        window_frames: int = 256,
        stride_frames: int = 1,
        sample_rate: int = 16000,
        target_fps: int = 30,
        shuffle_files: bool = True,
        loop_dataset: bool = True,
        max_files: int | None = None,
        *,
        seed: int = 0,
        alignment: str = "exact",
        on_error: str = "raise",
        epoch: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
        drop_uneven: bool = False,
        lanes: int | None = None,
        cache_dir: str | Path | None = None,
        augment: Any = None,
        max_cached_takes: int = 2,
        worker_sharing_strategy: str | None = "file_system",
        batch_size: int | None = None,
        split: str | None = None,
        val_fraction: float = 0.0,
        test_fraction: float = 0.0,
        split_by: str = "take",
        split_seed: int = 0,
        tail: str = "drop",
        reproduce: str | None = None,
        shuffle: str | None = None,
        blendshape_order: BlendshapeOrder = "live_link",
        timestamp_unit: str = "s",
        pose: bool = False,
        storage_options: Mapping[str, Any] | None = None,
        manifest: str | Path | bool | None = None,
        cache_limit: int | str | None = None,
        prefetch_takes: int = 2,
    ) -> None:
        check_positive(stride_frames=stride_frames)
        self.stride_frames = int(stride_frames)
        options = locals()
        super().__init__(data_dir, stride=FixedStride(self.stride_frames), **_passed(options))

    def _repr_fields(self) -> list[str]:
        return [f"stride_frames={self.stride_frames}"]


class AdaptiveSequentialDataset(WindowDataset):
    __doc__ = (
        """Windows whose stride follows the training stage (dense / sparse / progressive / mixed).

    Samples carry ``is_dense`` (bool 0-d tensor) besides the SequentialKoeMorphDataset keys.

    :param stride_mode: ``"dense"`` (stride 1), ``"sparse"`` (``initial_stride``),
        ``"progressive"`` (from ``initial_stride`` to ``final_stride`` over ``max_epochs``)
        or ``"mixed"`` (every ``initial_stride``-th window plus a share of stride-1 windows).
    :param initial_stride: the sparse stride, and the progressive schedule's first stride.
    :param final_stride: the progressive schedule's last stride.
    :param max_epochs: length of the progressive schedule in epochs.
    :param dense_sampling_ratio: mixed mode: share of each take's stride-1 positions drawn
        as extra windows per epoch (``is_dense`` marks them).
    :param progressive_schedule: ``"linear"``: ``max(final, int(initial - epoch / max_epochs
        * (initial - final)))``; ``"step"``: initial, /2, /4, final at 20 %, 50 %, 80 %."""
        + _COMMON_PARAMETERS
    )

    def __init__(
        self,
        data_dir: str | Path,
        window_frames: int = 256,
        stride_mode: str = "progressive",
        initial_stride: int = 32,
        final_stride: int = 1,
        epoch: int = 0,
        max_epochs: int = 100,
        sample_rate: int = 16000,
        target_fps: int = 30,
        dense_sampling_ratio: float = 0.1,
        shuffle_files: bool = True,
        loop_dataset: bool = True,
        max_files: int | None = None,
        *,
        progressive_schedule: str = "linear",
        seed: int = 0,
        alignment: str = "exact",
        on_error: str = "raise",
        rank: int | None = None,
        world_size: int | None = None,
        drop_uneven: bool = False,
        lanes: int | None = None,
        cache_dir: str | Path | None = None,
        augment: Any = None,
        max_cached_takes: int = 2,
        worker_sharing_strategy: str | None = "file_system",
        batch_size: int | None = None,
        split: str | None = None,
        val_fraction: float = 0.0,
        test_fraction: float = 0.0,
        split_by: str = "take",
        split_seed: int = 0,
        tail: str = "drop",
        reproduce: str | None = None,
        shuffle: str | None = None,
        blendshape_order: BlendshapeOrder = "live_link",
        timestamp_unit: str = "s",
        pose: bool = False,
        storage_options: Mapping[str, Any] | None = None,
        manifest: str | Path | bool | None = None,
        cache_limit: int | str | None = None,
        prefetch_takes: int = 2,
    ) -> None:
        koemorph, ratio = check_reproduce(reproduce) == "koemorph", float(dense_sampling_ratio)
        schedule = AdaptiveStride(
            stride_mode, initial_stride, final_stride, max_epochs, progressive_schedule, ratio, koemorph=koemorph
        )
        self.stride_mode, self.progressive_schedule = stride_mode, progressive_schedule
        self.initial_stride, self.final_stride = int(initial_stride), int(final_stride)
        self.max_epochs, self.dense_sampling_ratio = int(max_epochs), ratio
        options = locals()
        super().__init__(data_dir, stride=schedule, **_passed(options))

    @property
    def current_stride(self) -> int:
        """The stride of the current epoch."""
        return self.stride_for_epoch(self.epoch)

    def _repr_fields(self) -> list[str]:
        fields = [f"stride_mode={self.stride_mode!r}", f"stride={self.current_stride}"]
        if self.stride_mode == "mixed":
            fields.append(f"dense_sampling_ratio={self.dense_sampling_ratio:g}")
        return fields
