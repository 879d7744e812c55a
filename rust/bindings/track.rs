//! Bindings of `crate::track`: loading a take's track converted to the training frame rate.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyTuple;

use super::arkit::OrderSpec;
use super::errors::detached;
use super::jsonl::{parse_options, to_numpy};
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
