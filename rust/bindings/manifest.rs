//! Bindings of `crate::manifest`: a manifest's take lines as columns (numpy arrays and lists).

use numpy::PyArray1;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyInt, PyList, PyString};

use super::errors::detached;
use crate::manifest::{self, Version};

fn versions<'py>(py: Python<'py>, column: Vec<Option<Version>>) -> PyResult<Bound<'py, PyList>> {
    let objects: Vec<Bound<'py, PyAny>> = column
        .into_iter()
        .map(|version| match version {
            Some(Version::Int(n)) => PyInt::new(py, n).into_any(),
            Some(Version::Text(text)) => PyString::new(py, &text).into_any(),
            None => py.None().into_bound(py),
        })
        .collect();
    PyList::new(py, objects)
}

/// The take lines of `data` (line `first_line` onwards of the manifest `name`) as a dict of
/// columns: "wav" and "jsonl" (lists of str), "wav_version" and "jsonl_version" (lists of
/// int, str or None), uint64 arrays "wav_size", "jsonl_size", "rate", "channels", "frames",
/// "rows", float64 arrays "source_fps", "first_s", "last_s", "max_step_s" (NaN: absent), bool
/// array "pose", and "errors": (take index, file, line, reason) of the takes that failed
/// validation. ValueError "name:line: ..." for a line that is not a take line.
#[pyfunction]
pub fn parse_manifest_lines<'py>(
    py: Python<'py>,
    data: &[u8],
    name: &str,
    first_line: usize,
) -> PyResult<Bound<'py, PyDict>> {
    let parsed = detached(py, &format!("reading {name}"), || {
        manifest::parse_lines(data, first_line)
    })?;
    let c = parsed.map_err(|e| {
        PyValueError::new_err(format!(
            "{name}:{}: not a take line of a koemorph manifest ({})",
            e.line, e.message
        ))
    })?;
    let out = PyDict::new(py);
    out.set_item("wav", c.wav)?;
    out.set_item("jsonl", c.jsonl)?;
    out.set_item("wav_version", versions(py, c.wav_version)?)?;
    out.set_item("jsonl_version", versions(py, c.jsonl_version)?)?;
    for (key, column) in [
        ("wav_size", c.wav_size),
        ("jsonl_size", c.jsonl_size),
        ("rate", c.rate),
        ("channels", c.channels),
        ("frames", c.frames),
        ("rows", c.rows),
    ] {
        out.set_item(key, PyArray1::from_vec(py, column))?;
    }
    for (key, column) in [
        ("source_fps", c.source_fps),
        ("first_s", c.first_s),
        ("last_s", c.last_s),
        ("max_step_s", c.max_step_s),
    ] {
        out.set_item(key, PyArray1::from_vec(py, column))?;
    }
    out.set_item("pose", PyArray1::from_vec(py, c.pose))?;
    let errors: Vec<(usize, String, Option<u64>, String)> = c
        .errors
        .into_iter()
        .map(|(i, e)| (i, e.file, e.line, e.reason))
        .collect();
    out.set_item("errors", errors)?;
    Ok(out)
}
