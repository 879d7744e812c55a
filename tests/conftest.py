"""Shared fixtures: datasets are generated per test session (no network, no bundled fixtures)."""

from __future__ import annotations

import contextlib
import json
import logging
import math
import re
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from koemorph_data.synthetic import make_dataset, make_take

# Live Link Face's CSV header (blendshapes, then pose), as the app writes it: the tests' own
# copy of the order, independent of the package's ARKIT_BLENDSHAPES.
LIVE_LINK_HEADER = (
    "EyeBlinkLeft EyeLookDownLeft EyeLookInLeft EyeLookOutLeft EyeLookUpLeft EyeSquintLeft EyeWideLeft "
    "EyeBlinkRight EyeLookDownRight EyeLookInRight EyeLookOutRight EyeLookUpRight EyeSquintRight EyeWideRight "
    "JawForward JawRight JawLeft JawOpen MouthClose MouthFunnel MouthPucker MouthRight MouthLeft "
    "MouthSmileLeft MouthSmileRight MouthFrownLeft MouthFrownRight MouthDimpleLeft MouthDimpleRight "
    "MouthStretchLeft MouthStretchRight MouthRollLower MouthRollUpper MouthShrugLower MouthShrugUpper "
    "MouthPressLeft MouthPressRight MouthLowerDownLeft MouthLowerDownRight MouthUpperUpLeft MouthUpperUpRight "
    "BrowDownLeft BrowDownRight BrowInnerUp BrowOuterUpLeft BrowOuterUpRight CheekPuff CheekSquintLeft "
    "CheekSquintRight NoseSneerLeft NoseSneerRight TongueOut "
    "HeadYaw HeadPitch HeadRoll LeftEyeYaw LeftEyePitch LeftEyeRoll RightEyeYaw RightEyePitch RightEyeRoll"
).split()

SR = 16000
FPS = 30
WINDOW = 256
WINDOW_SAMPLES = WINDOW * 533


def read_jsonl_by_hand(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Independent reference reader (json module, array form only)."""
    values, stamps = [], []
    for line in Path(path).read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            stamps.append(row["timestamp"])
            values.append(row["blendshapes"])
    return np.asarray(values, dtype=np.float32), np.asarray(stamps, dtype=np.float64)


def read_wav_by_hand(path: Path) -> np.ndarray:
    data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    assert rate == SR
    return data.mean(axis=1, dtype=np.float32) if data.shape[1] > 1 else data[:, 0]


def first_batches(loader, count: int) -> list:
    """The first ``count`` batches of a loader (its iterator is dropped after them)."""
    out = []
    for batch in loader:
        out.append(batch)
        if len(out) == count:
            break
    return out


def expected_windows(frames: int, stride: int, window: int = WINDOW) -> list[int]:
    return list(range(0, frames - window + 1, stride)) if frames >= window else []


@pytest.fixture(scope="session")
def small_dataset(tmp_path_factory) -> Path:
    """Three takes of different lengths (float wavs so audio compares exactly)."""
    root = tmp_path_factory.mktemp("small")
    make_dataset(root, takes=3, seconds=[9.5, 10.2, 11.0], subtype="FLOAT", seed=7)
    return root


@pytest.fixture(scope="session")
def many_dataset(tmp_path_factory) -> Path:
    """Seven short takes in subdirectories, for sharding tests."""
    root = tmp_path_factory.mktemp("many")
    make_dataset(root, takes=7, seconds=[9.0, 9.3, 8.9, 10.0, 9.6, 9.1, 12.0], subtype="PCM_16", subdirs=True, seed=11)
    return root


def usable_frames(wav: Path, jsonl: Path) -> int:
    n_audio = sf.info(str(wav)).frames
    return min(len(read_jsonl_by_hand(jsonl)[1]), math.floor(n_audio * FPS / SR))


__all__ = [
    "LIVE_LINK_HEADER",
    "first_batches",
    "SR",
    "FPS",
    "WINDOW",
    "WINDOW_SAMPLES",
    "read_jsonl_by_hand",
    "read_wav_by_hand",
    "expected_windows",
    "usable_frames",
    "make_take",
    "make_dataset",
]


# ---------------------------------------------------------------------------- object storage
S3_KEYS = {"key": "testing", "secret": "testing"}


def s3_options(endpoint: str) -> dict:
    """s3fs storage_options for the loopback moto server (no credential lookup, no network)."""
    return {**S3_KEYS, "client_kwargs": {"endpoint_url": endpoint, "region_name": "eu-west-1"}}


def start_s3_server():
    """A moto S3 server on 127.0.0.1 at a free port: ``(server, endpoint_url)``."""
    pytest.importorskip("s3fs")
    moto_server = pytest.importorskip("moto.server")
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    return server, f"http://{host}:{port}"


@pytest.fixture(scope="session")
def s3_endpoint():
    """The endpoint of a moto S3 server running for the test session (stopped at its end)."""
    server, endpoint = start_s3_server()
    try:
        yield endpoint
    finally:
        server.stop()


def upload_dir(local: Path, endpoint: str, url: str) -> str:
    """Copies a local directory to ``url`` (``s3://bucket/prefix``), making the bucket; returns url."""
    import s3fs

    fs = s3fs.S3FileSystem(**s3_options(endpoint), skip_instance_cache=True)
    bucket = url[len("s3://") :].split("/", 1)[0]
    if not fs.exists(bucket):
        fs.mkdir(bucket)
    for path in sorted(Path(local).rglob("*")):
        if path.is_file():
            fs.pipe_file(f"{url.rstrip('/')}/{path.relative_to(local).as_posix()}", path.read_bytes())
    return url


REQUEST_DEADLINE_S = 60.0  # for a background request to show up; a hang fails instead of blocking


class RequestLog(logging.Handler):
    """The object paths the moto server (werkzeug) served for one bucket, in order (``paths``;
    ``methods``: the same requests as (method, path))."""

    def __init__(self, bucket: str) -> None:
        super().__init__(level=logging.INFO)
        self.prefix = f"/{bucket}/"
        self.paths: list[str] = []
        self.methods: list[tuple[str, str]] = []
        self.paths_lock = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        found = re.search(r"(GET|HEAD) (/\S+) HTTP", record.getMessage())
        if found and found[2].startswith(self.prefix):
            with self.paths_lock:
                self.paths.append(found[2].split("?")[0])
                self.methods.append((found[1], self.paths[-1]))

    def clear(self) -> None:
        with self.paths_lock:
            self.paths.clear()
            self.methods.clear()

    def requested(self, ds, take: int) -> bool:
        """Any request for one of the take's two objects."""
        wanted = {"/" + p.as_posix() for p in ds.file_pairs[take]}
        with self.paths_lock:
            return any(path in wanted for path in self.paths)

    def count(self, url: str) -> int:
        """Requests for one object (its ``s3://`` URL)."""
        with self.paths_lock:
            return self.paths.count(url[len("s3:/") :])

    def wait_for(self, ds, take: int) -> None:
        deadline = time.monotonic() + REQUEST_DEADLINE_S
        while not self.requested(ds, take):
            assert time.monotonic() < deadline, f"take {take} was never requested"
            time.sleep(0.005)


@contextlib.contextmanager
def request_log_of(bucket_url: str):
    """A ``RequestLog`` of the moto server's requests for ``bucket_url``'s bucket while the block runs."""
    log = RequestLog(bucket_url[len("s3://") :].split("/")[0])
    werkzeug = logging.getLogger("werkzeug")
    werkzeug.addHandler(log)
    level = werkzeug.level
    werkzeug.setLevel(logging.INFO)
    try:
        yield log
    finally:
        werkzeug.removeHandler(log)
        werkzeug.setLevel(level)
