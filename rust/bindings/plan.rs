//! Bindings of `crate::plan`: epoch runs, windows looked up by plan index, the window shuffle,
//! and the split across ranks, workers and lanes.

use numpy::{PyArray1, PyReadonlyArray1};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyTuple;

use super::errors::detached;
use crate::plan::{self, PlanConfig, Stride, WindowOrder};

fn config(
    window_frames: u64,
    stride: u64,
    seed: u64,
    epoch: u64,
    shuffle_files: bool,
    dense_ratio: Option<f64>,
) -> PyResult<PlanConfig> {
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
    Ok(PlanConfig {
        window_frames,
        stride,
        seed,
        epoch,
        shuffle_files,
    })
}

/// The epoch's runs: (file int64 [R], window count int64 [R]) of the files with windows, in epoch order.
#[pyfunction]
#[pyo3(signature = (frames, window_frames, stride, seed, epoch, shuffle_files, dense_ratio = None))]
#[allow(clippy::too_many_arguments)]
pub fn plan_runs<'py>(
    py: Python<'py>,
    frames: PyReadonlyArray1<'py, u64>,
    window_frames: u64,
    stride: u64,
    seed: u64,
    epoch: u64,
    shuffle_files: bool,
    dense_ratio: Option<f64>,
) -> PyResult<Bound<'py, PyTuple>> {
    let cfg = config(window_frames, stride, seed, epoch, shuffle_files, dense_ratio)?;
    let frames = frames.as_slice()?;
    let runs = detached(py, "planning an epoch", || plan::plan_runs(frames, &cfg))?;
    let file: Vec<i64> = runs.file.iter().map(|&f| f as i64).collect();
    let count: Vec<i64> = runs.count.iter().map(|&c| c as i64).collect();
    (PyArray1::from_vec(py, file), PyArray1::from_vec(py, count)).into_pyobject(py)
}

/// (file int64 [K], start_frame int64 [K], dense bool [K]) of the windows at plan `indices`,
/// for the runs `run_file` with cumulative counts `run_end`; `shuffle_windows`: the indices
/// go through the epoch's window permutation first.
#[pyfunction]
#[pyo3(signature = (
    frames, run_file, run_end, indices, window_frames, stride, seed, epoch, dense_ratio = None,
    shuffle_windows = false
))]
#[allow(clippy::too_many_arguments)]
pub fn plan_windows<'py>(
    py: Python<'py>,
    frames: PyReadonlyArray1<'py, u64>,
    run_file: PyReadonlyArray1<'py, i64>,
    run_end: PyReadonlyArray1<'py, i64>,
    indices: PyReadonlyArray1<'py, i64>,
    window_frames: u64,
    stride: u64,
    seed: u64,
    epoch: u64,
    dense_ratio: Option<f64>,
    shuffle_windows: bool,
) -> PyResult<Bound<'py, PyTuple>> {
    let cfg = config(window_frames, stride, seed, epoch, false, dense_ratio)?;
    let (frames, run_file, run_end) = (frames.as_slice()?, run_file.as_slice()?, run_end.as_slice()?);
    let indices = indices.as_array().to_vec(); // any strides
    let indices = &indices[..];
    let total = run_end.last().copied().unwrap_or(0);
    if let Some(&bad) = indices.iter().find(|&&i| i < 0 || i >= total) {
        return Err(PyValueError::new_err(format!("plan index {bad} is not in 0..{total}")));
    }
    let found = detached(py, "looking up plan windows", || {
        let base: Vec<i64>;
        let at = if shuffle_windows {
            let order = WindowOrder::new(total as u64, seed, epoch);
            base = indices.iter().map(|&i| order.get(i as u64) as i64).collect();
            &base[..]
        } else {
            indices
        };
        plan::windows_at(frames, run_file, run_end, at, &cfg)
    })?
    .map_err(|e| PyValueError::new_err(e.to_string()))?;
    let file: Vec<i64> = found.file.iter().map(|&f| f as i64).collect();
    let start: Vec<i64> = found.start_frame.iter().map(|&s| s as i64).collect();
    (
        PyArray1::from_vec(py, file),
        PyArray1::from_vec(py, start),
        PyArray1::from_vec(py, found.dense),
    )
        .into_pyobject(py)
}

/// The base index each of `indices` delivers under `shuffle="windows"`: a seeded bijection of
/// `0..total` per (seed, epoch), computed per index.
#[pyfunction]
pub fn window_order<'py>(
    py: Python<'py>,
    indices: PyReadonlyArray1<'py, i64>,
    total: u64,
    seed: u64,
    epoch: u64,
) -> PyResult<Bound<'py, PyArray1<i64>>> {
    let indices = indices.as_array().to_vec(); // any strides
    if let Some(&bad) = indices.iter().find(|&&i| i < 0 || i as u64 >= total) {
        return Err(PyValueError::new_err(format!("index {bad} is not in 0..{total}")));
    }
    let order = WindowOrder::new(total, seed, epoch);
    let out = detached(py, "ordering windows", || {
        indices
            .iter()
            .map(|&i| order.get(i as u64) as i64)
            .collect::<Vec<i64>>()
    })?;
    Ok(PyArray1::from_vec(py, out))
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

/// Lanes over segments with `counts` windows, in queue order: (lane int64 [S], start step
/// int64 [S]), lane -1 for a segment without windows.
#[pyfunction]
pub fn lane_schedule<'py>(
    py: Python<'py>,
    counts: PyReadonlyArray1<'py, i64>,
    lanes: usize,
) -> PyResult<Bound<'py, PyTuple>> {
    if lanes == 0 {
        return Err(PyValueError::new_err("lanes must be positive"));
    }
    let counts = counts.as_slice()?;
    if let Some(&bad) = counts.iter().find(|&&c| c < 0) {
        return Err(PyValueError::new_err(format!(
            "window counts must be non-negative, got {bad}"
        )));
    }
    let counts: Vec<u64> = counts.iter().map(|&c| c as u64).collect();
    let schedule = detached(py, "planning lanes", || plan::lane_schedule(&counts, lanes))?;
    let lane: Vec<i64> = schedule.iter().map(|s| s.map_or(-1, |(l, _)| l as i64)).collect();
    let start: Vec<i64> = schedule.iter().map(|s| s.map_or(0, |(_, t)| t as i64)).collect();
    (PyArray1::from_vec(py, lane), PyArray1::from_vec(py, start)).into_pyobject(py)
}
