"""Issue 10, section 5: resume that cannot silently go wrong."""

from __future__ import annotations

import pytest
import torch
from conftest import first_batches
from torch.utils.data import DataLoader

from koemorph_data import SequentialKoeMorphDataset
from koemorph_data.synthetic import make_dataset


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny_resume")
    make_dataset(root, takes=3, seconds=[9.0, 9.2, 8.8], subtype="FLOAT", seed=5)
    return root


def make(data, **kw):
    args = dict(stride_frames=3, loop_dataset=False, seed=1)
    args.update(kw)
    return SequentialKoeMorphDataset(data, **args)


def saved_after_workers(data, workers, **kw):
    ds = make(data, **kw)
    first_batches(DataLoader(ds, batch_size=2, num_workers=workers), 2)
    return ds.state_dict(consumed=4)


def test_state_dict_after_workers_needs_consumed(tiny):
    ds = make(tiny, batch_size=2)
    first_batches(DataLoader(ds, batch_size=2, num_workers=2), 2)
    with pytest.raises(ValueError, match=r"consumed="):
        ds.state_dict()
    state = ds.state_dict(consumed=4)
    assert state["epoch"] == 0 and state["consumed"] == 4
    assert state["num_workers"] == 2 and state["batch_size"] == 2 and state["world_size"] == 1
    assert state["shuffle"] == "takes" and state["lanes"] is None
    # In-process iteration: the dataset's own count is the training loop's.
    own = make(tiny)
    next(iter(own))
    assert own.state_dict()["consumed"] == 1 and own.state_dict()["num_workers"] == 0


@pytest.mark.parametrize("workers", [0, 3])
def test_other_worker_count_without_batch_size_raises(tiny, workers):
    state = saved_after_workers(tiny, 2)
    assert state["num_workers"] == 2 and state["batch_size"] is None
    resumed = make(tiny)
    resumed.load_state_dict(state)
    with pytest.raises(ValueError, match=rf"num_workers=2.*num_workers={workers}"):
        list(DataLoader(resumed, batch_size=2, num_workers=workers))


def test_block_state_into_whole_batches_raises(tiny):
    state = saved_after_workers(tiny, 2)
    resumed = make(tiny, batch_size=2)
    resumed.load_state_dict(state)
    with pytest.raises(ValueError, match="num_workers=2"):
        list(DataLoader(resumed, batch_size=2, num_workers=2))


def test_same_worker_count_or_whole_batches_resume(tiny):
    state = saved_after_workers(tiny, 2)
    full = list(DataLoader(make(tiny), batch_size=2, num_workers=2))
    resumed = make(tiny)
    resumed.load_state_dict(state)
    rest = list(DataLoader(resumed, batch_size=2, num_workers=2))
    assert all(torch.equal(a["audio"], b["audio"]) for a, b in zip(rest, full[2:]))
    state = saved_after_workers(tiny, 2, batch_size=2)
    for workers in (0, 3):
        resumed = make(tiny, batch_size=2)
        resumed.load_state_dict(state)
        assert len(list(DataLoader(resumed, batch_size=2, num_workers=workers))) == len(full) - 2


def test_other_world_size_raises(tiny):
    state = make(tiny, rank=0, world_size=2).state_dict(consumed=4)
    assert state["world_size"] == 2
    resumed = make(tiny, rank=0, world_size=1)
    resumed.load_state_dict(state)
    with pytest.raises(ValueError, match=r"world_size=2.*world_size=1"):
        next(iter(resumed))
    resumed = make(tiny, rank=0, world_size=1, batch_size=2)
    resumed.load_state_dict(state)
    with pytest.raises(ValueError, match=r"world_size=2.*world_size=1"):
        next(iter(resumed.loader()))


def test_other_shuffle_raises(tiny):
    state = make(tiny).state_dict(consumed=4)
    resumed = make(tiny, shuffle_files=False)
    resumed.load_state_dict(state)
    with pytest.raises(ValueError, match="shuffle='takes'.*shuffle='none'"):
        next(iter(resumed))


def test_old_states_still_load(tiny):
    resumed = make(tiny)
    resumed.load_state_dict({"epoch": 0, "consumed": 3})
    assert len(list(resumed)) == len(make(tiny)) - 3
