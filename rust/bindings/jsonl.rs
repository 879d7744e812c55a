//! Bindings of `crate::jsonl`: reading and parsing blendshape JSONL as it is.

use numpy::ndarray::Array2;
use numpy::{IntoPyArray, PyArray1, PyArray2};
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyTuple;

use super::arkit::{resolve_order, OrderSpec};
use super::errors::detached;
use crate::arkit::{NUM_BLENDSHAPES, NUM_POSE};
use crate::jsonl::{self, Blendshapes, ParseOptions, TimestampUnit};

/// The `order=` and `timestamp_unit=` arguments, checked before any I/O.
pub fn parse_options(order: Option<OrderSpec>, timestamp_unit: &str) -> PyResult<ParseOptions> {
    let order = resolve_order(order)?;
    let timestamp_unit = TimestampUnit::parse(timestamp_unit).ok_or_else(|| {
        PyValueError::new_err(format!(
            "timestamp_unit must be \"s\", \"ms\" or \"us\", got {timestamp_unit:?}"
        ))
    })?;
    Ok(ParseOptions { order, timestamp_unit })
}

/// (values [T, 52], timestamps [T], pose [T, 9] or None) as numpy arrays.
pub struct BlendshapeArrays<'py> {
    pub values: Bound<'py, PyArray2<f32>>,
    pub timestamps: Bound<'py, PyArray1<f64>>,
    pub pose: Option<Bound<'py, PyArray2<f32>>>,
}

fn rows_of<'py>(py: Python<'py>, flat: Vec<f32>, rows: usize, width: usize) -> PyResult<Bound<'py, PyArray2<f32>>> {
    let array = Array2::from_shape_vec((rows, width), flat)
        .map_err(|e| PyRuntimeError::new_err(format!("internal shape error: {e}")))?;
    Ok(array.into_pyarray(py))
}

/// Hands the Rust allocations to numpy: no copy.
pub fn to_numpy<'py>(py: Python<'py>, bs: Blendshapes) -> PyResult<BlendshapeArrays<'py>> {
    let rows = bs.timestamps.len();
    Ok(BlendshapeArrays {
        values: rows_of(py, bs.values, rows, NUM_BLENDSHAPES)?,
        timestamps: PyArray1::from_vec(py, bs.timestamps),
        pose: bs.pose.map(|pose| rows_of(py, pose, rows, NUM_POSE)).transpose()?,
    })
}

fn as_tuple<'py>(py: Python<'py>, bs: Blendshapes) -> PyResult<Bound<'py, PyTuple>> {
    let arrays = to_numpy(py, bs)?;
    (arrays.values, arrays.timestamps, arrays.pose).into_pyobject(py)
}

/// The file's rows as they are: (values float32 [T, 52] in ARKIT_BLENDSHAPES order,
/// timestamps float64 [T] in seconds, pose float32 [T, 9] or None).
#[pyfunction]
#[pyo3(signature = (path, order = None, timestamp_unit = "s"))]
pub fn read_blendshapes<'py>(
    py: Python<'py>,
    path: &str,
    order: Option<OrderSpec>,
    timestamp_unit: &str,
) -> PyResult<Bound<'py, PyTuple>> {
    let options = parse_options(order, timestamp_unit)?;
    let bs = detached(py, &format!("parsing {path}"), || jsonl::read_file(path, &options))??;
    as_tuple(py, bs)
}

/// Parses an in-memory JSONL document (for tests, tools and object storage); `name` is the
/// path in errors. Returns what read_blendshapes returns.
#[pyfunction]
#[pyo3(signature = (data, name = "<bytes>", threads = None, order = None, timestamp_unit = "s"))]
pub fn parse_blendshapes_bytes<'py>(
    py: Python<'py>,
    data: &[u8],
    name: &str,
    threads: Option<usize>,
    order: Option<OrderSpec>,
    timestamp_unit: &str,
) -> PyResult<Bound<'py, PyTuple>> {
    let options = parse_options(order, timestamp_unit)?;
    // None: one thread per CPU (0); an explicit 0 means single-threaded.
    let threads = threads.map_or(0, |t| t.max(1));
    let bs = detached(py, &format!("parsing {name}"), || {
        jsonl::parse_document(data, name, &options, threads)
    })??;
    as_tuple(py, bs)
}
