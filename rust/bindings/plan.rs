//! Bindings of `crate::plan`: epoch window plans and their split across ranks and workers.

use numpy::ndarray::Array2;
use numpy::{IntoPyArray, PyArray1, PyReadonlyArray1};
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyTuple;

use super::errors::detached;
use crate::plan::{self, PlanConfig, Stride};

/// The epoch's window plan: (file int64 [N], start_frame int64 [N], dense bool [N]).
#[pyfunction]
#[pyo3(signature = (frames, window_frames, stride, seed, epoch, shuffle_files, dense_ratio = None))]
#[allow(clippy::too_many_arguments)]
pub fn plan_epoch<'py>(
    py: Python<'py>,
    frames: PyReadonlyArray1<'py, u64>,
    window_frames: u64,
    stride: u64,
    seed: u64,
    epoch: u64,
    shuffle_files: bool,
    dense_ratio: Option<f64>,
) -> PyResult<Bound<'py, PyTuple>> {
    if window_frames == 0 || stride == 0 {
        return Err(PyValueError::new_err("window_frames and stride must be positive"));
    }
    let stride = match dense_ratio {
        None => Stride::Fixed(stride),
        Some(r) if (0.0..=1.0).contains(&r) => Stride::Mixed {
            sparse_stride: stride,
            dense_ratio: r,
        },
        Some(r) => {
            return Err(PyValueError::new_err(format!(
                "dense_sampling_ratio must be in [0, 1], got {r}"
            )))
        }
    };
    let cfg = PlanConfig {
        window_frames,
        stride,
        seed,
        epoch,
        shuffle_files,
    };
    let frames = frames.as_slice()?.to_vec();
    let p = detached(py, "planning an epoch", move || plan::plan_epoch(&frames, &cfg))?;
    let file: Vec<i64> = p.file.iter().map(|&f| f as i64).collect();
    let start: Vec<i64> = p.start_frame.iter().map(|&s| s as i64).collect();
    (
        PyArray1::from_vec(py, file),
        PyArray1::from_vec(py, start),
        PyArray1::from_vec(py, p.dense),
    )
        .into_pyobject(py)
}

/// (start, len) of a rank's share in the padded index space (index i = window i % total).
#[pyfunction]
pub fn rank_share(total: u64, rank: u64, world_size: u64, drop_uneven: bool) -> PyResult<(u64, u64)> {
    if world_size == 0 || rank >= world_size {
        return Err(PyValueError::new_err(format!("rank {rank} is not in 0..{world_size}")));
    }
    Ok(plan::rank_share(total, rank, world_size, drop_uneven))
}

/// (offset, len) of a worker's contiguous block of `len` windows.
#[pyfunction]
pub fn worker_block(len: u64, worker: u64, num_workers: u64) -> PyResult<(u64, u64)> {
    if num_workers == 0 || worker >= num_workers {
        return Err(PyValueError::new_err(format!(
            "worker {worker} is not in 0..{num_workers}"
        )));
    }
    Ok(plan::worker_block(len, worker, num_workers))
}

/// Files (by window count, epoch order) balanced across ranks: a list of file positions per rank.
#[pyfunction]
pub fn assign_files_to_ranks(window_counts: Vec<u64>, world_size: usize) -> PyResult<Vec<Vec<usize>>> {
    if world_size == 0 {
        return Err(PyValueError::new_err("world_size must be positive"));
    }
    Ok(plan::assign_files_to_ranks(&window_counts, world_size))
}

/// Lanes over file segments: (index int64 [steps, lanes] with -1 for invalid slots, reset bool [steps, lanes]).
#[pyfunction]
pub fn lane_plan<'py>(py: Python<'py>, segments: Vec<(usize, usize)>, lanes: usize) -> PyResult<Bound<'py, PyTuple>> {
    if lanes == 0 {
        return Err(PyValueError::new_err("lanes must be positive"));
    }
    let lp = detached(py, "planning lanes", move || plan::lane_plan(&segments, lanes))?;
    let to_err = |e: numpy::ndarray::ShapeError| PyRuntimeError::new_err(format!("internal shape error: {e}"));
    let index = Array2::from_shape_vec((lp.steps, lp.lanes), lp.index).map_err(to_err)?;
    let reset = Array2::from_shape_vec((lp.steps, lp.lanes), lp.reset).map_err(to_err)?;
    (index.into_pyarray(py), reset.into_pyarray(py)).into_pyobject(py)
}
