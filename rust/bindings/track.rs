//! Bindings of `crate::track`: loading a take's track converted to the training frame rate.

use pyo3::prelude::*;
use pyo3::types::PyTuple;

use super::errors::detached;
use super::jsonl::to_numpy;
use crate::track;

/// Parses and converts to `target_fps`: (values [F, 52], timestamps [F], source_fps or None, source rows).
#[pyfunction]
pub fn load_blendshapes<'py>(py: Python<'py>, path: &str, target_fps: f64) -> PyResult<Bound<'py, PyTuple>> {
    let loaded = detached(py, &format!("loading {path}"), || {
        track::load_file(path, &Default::default(), target_fps)
    })??;
    let (values, timestamps) = to_numpy(py, loaded.blendshapes)?;
    (values, timestamps, loaded.source_fps, loaded.rows).into_pyobject(py)
}
