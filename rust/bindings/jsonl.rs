//! Bindings of `crate::jsonl`: reading and parsing blendshape JSONL as it is.

use numpy::ndarray::Array2;
use numpy::{IntoPyArray, PyArray1, PyArray2};
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::PyTuple;

use super::errors::detached;
use crate::arkit::NUM_BLENDSHAPES;
use crate::jsonl::{self, Blendshapes};

/// (values [T, 52], timestamps [T]) as numpy arrays.
pub type BlendshapeArrays<'py> = (Bound<'py, PyArray2<f32>>, Bound<'py, PyArray1<f64>>);

/// Hands the Rust allocations to numpy: no copy.
pub fn to_numpy<'py>(py: Python<'py>, bs: Blendshapes) -> PyResult<BlendshapeArrays<'py>> {
    let rows = bs.timestamps.len();
    let values = Array2::from_shape_vec((rows, NUM_BLENDSHAPES), bs.values)
        .map_err(|e| PyRuntimeError::new_err(format!("internal shape error: {e}")))?;
    Ok((values.into_pyarray(py), PyArray1::from_vec(py, bs.timestamps)))
}

/// The file's rows as they are: (values float32 [T, 52], timestamps float64 [T]).
#[pyfunction]
pub fn read_blendshapes<'py>(py: Python<'py>, path: &str) -> PyResult<Bound<'py, PyTuple>> {
    let bs = detached(py, &format!("parsing {path}"), || {
        jsonl::read_file(path, &Default::default())
    })??;
    let (values, timestamps) = to_numpy(py, bs)?;
    PyTuple::new(py, [values.into_any(), timestamps.into_any()])
}

/// Parses an in-memory JSONL document (for tests and tools); `name` is used in errors.
#[pyfunction]
#[pyo3(signature = (data, name = "<bytes>", threads = None))]
pub fn parse_blendshapes_bytes<'py>(
    py: Python<'py>,
    data: &[u8],
    name: &str,
    threads: Option<usize>,
) -> PyResult<Bound<'py, PyTuple>> {
    // None: one thread per CPU (0); an explicit 0 means single-threaded.
    let threads = threads.map_or(0, |t| t.max(1));
    let bs = detached(py, &format!("parsing {name}"), || {
        jsonl::parse_document(data, name, &Default::default(), threads)
    })??;
    let (values, timestamps) = to_numpy(py, bs)?;
    PyTuple::new(py, [values.into_any(), timestamps.into_any()])
}
