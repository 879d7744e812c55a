//! Bindings of `crate::track`: loading a take's track converted to the training frame rate.

use numpy::{PyArray1, PyReadonlyArray1};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyTuple;

use super::arkit::OrderSpec;
use super::errors::detached;
use super::jsonl::{parse_options, to_numpy};
use crate::fps::TrackShape;
use crate::track::{self, LoadedTrack};

fn check_target_fps(target_fps: f64) -> PyResult<()> {
    if target_fps.is_finite() && target_fps > 0.0 {
        Ok(())
    } else {
        Err(PyValueError::new_err(format!(
            "target_fps must be a positive number, got {target_fps}"
        )))
    }
}

/// (values [F, 52], timestamps [F], source_fps or None, source rows, pose [F, 9] or None).
fn as_tuple<'py>(py: Python<'py>, loaded: LoadedTrack) -> PyResult<Bound<'py, PyTuple>> {
    let arrays = to_numpy(py, loaded.blendshapes)?;
    (
        arrays.values,
        arrays.timestamps,
        loaded.source_fps,
        loaded.rows,
        arrays.pose,
    )
        .into_pyobject(py)
}

/// Parses and converts to `target_fps`: (values [F, 52], timestamps [F], source_fps or None,
/// source rows, pose [F, 9] or None).
#[pyfunction]
#[pyo3(signature = (path, target_fps, order = None, timestamp_unit = "s"))]
pub fn load_blendshapes<'py>(
    py: Python<'py>,
    path: &str,
    target_fps: f64,
    order: Option<OrderSpec>,
    timestamp_unit: &str,
) -> PyResult<Bound<'py, PyTuple>> {
    check_target_fps(target_fps)?;
    let options = parse_options(order, timestamp_unit)?;
    let loaded = detached(py, &format!("loading {path}"), || {
        track::load_file(path, &options, target_fps)
    })??;
    as_tuple(py, loaded)
}

/// load_blendshapes of an in-memory JSONL document; `name` is the path in errors.
#[pyfunction]
#[pyo3(signature = (data, name, target_fps, order = None, timestamp_unit = "s"))]
pub fn load_blendshapes_bytes<'py>(
    py: Python<'py>,
    data: &[u8],
    name: &str,
    target_fps: f64,
    order: Option<OrderSpec>,
    timestamp_unit: &str,
) -> PyResult<Bound<'py, PyTuple>> {
    check_target_fps(target_fps)?;
    let options = parse_options(order, timestamp_unit)?;
    let loaded = detached(py, &format!("loading {name}"), || {
        track::load_bytes(data, name, &options, target_fps)
    })??;
    as_tuple(py, loaded)
}

/// What a take's manifest line records about its JSONL, with loading's checks (errors name
/// `name`): (rows, source_fps or None, first_s or None, last_s or None, max_step_s, pose present).
#[pyfunction]
#[pyo3(signature = (data, name, order = None, timestamp_unit = "s"))]
pub fn track_facts_bytes<'py>(
    py: Python<'py>,
    data: &[u8],
    name: &str,
    order: Option<OrderSpec>,
    timestamp_unit: &str,
) -> PyResult<Bound<'py, PyTuple>> {
    let options = parse_options(order, timestamp_unit)?;
    let facts = detached(py, &format!("reading {name}"), || {
        track::facts_bytes(data, name, &options)
    })??;
    let shape = facts.shape;
    (
        shape.rows,
        shape.source_fps,
        facts.first,
        facts.last,
        shape.longest_step,
        facts.pose,
    )
        .into_pyobject(py)
}

/// Frames at `target_fps` of tracks described by their shapes, one array element per track:
/// rows, detected fps (NaN: none), span (last - first timestamp) and longest step, as
/// `track_facts_bytes` gives them. The count loading would deliver (`fps::TrackShape`).
#[pyfunction]
pub fn conformed_frame_counts<'py>(
    py: Python<'py>,
    rows: PyReadonlyArray1<'py, u64>,
    source_fps: PyReadonlyArray1<'py, f64>,
    span: PyReadonlyArray1<'py, f64>,
    longest_step: PyReadonlyArray1<'py, f64>,
    target_fps: f64,
) -> PyResult<Bound<'py, PyArray1<u64>>> {
    check_target_fps(target_fps)?;
    let (rows, fps, span, step) = (
        rows.as_slice()?,
        source_fps.as_slice()?,
        span.as_slice()?,
        longest_step.as_slice()?,
    );
    if fps.len() != rows.len() || span.len() != rows.len() || step.len() != rows.len() {
        return Err(PyValueError::new_err(
            "rows, source_fps, span and longest_step differ in length",
        ));
    }
    let out: Vec<u64> = (0..rows.len())
        .map(|i| {
            let shape = TrackShape {
                rows: rows[i] as usize,
                source_fps: Some(fps[i]).filter(|f| !f.is_nan()),
                span: span[i],
                longest_step: step[i],
            };
            shape.conformed_frames(target_fps) as u64
        })
        .collect();
    Ok(PyArray1::from_vec(py, out))
}
