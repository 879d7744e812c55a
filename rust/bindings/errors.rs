//! The one place where core errors and panics become Python exceptions. Binding functions
//! return the core's errors with `?`; the `From` impls below pick the exception.

use std::panic::{catch_unwind, AssertUnwindSafe};

use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::arkit::OrderError;
use crate::gather::GatherError;
use crate::jsonl::DataFormatError;

/// `koemorph_data.errors.DataFormatError(message, path=, line=, reason=)`, where message is
/// "path:line: reason" (or "path: reason"); a plain ValueError if that class cannot be imported.
impl From<DataFormatError> for PyErr {
    fn from(err: DataFormatError) -> PyErr {
        let message = err.to_string();
        Python::attach(|py| {
            let build = || -> PyResult<PyErr> {
                let cls = py.import("koemorph_data.errors")?.getattr("DataFormatError")?;
                let kwargs = PyDict::new(py);
                kwargs.set_item("path", &err.path)?;
                kwargs.set_item("line", err.line)?;
                kwargs.set_item("reason", &err.reason)?;
                Ok(PyErr::from_value(cls.call((message.clone(),), Some(&kwargs))?))
            };
            build().unwrap_or_else(|_| PyValueError::new_err(message.clone()))
        })
    }
}

/// An `order=` that is not a preset or not a permutation of the 52 names is a bad argument.
impl From<OrderError> for PyErr {
    fn from(err: OrderError) -> PyErr {
        PyValueError::new_err(err.to_string())
    }
}

/// A refused gather request is a bad argument.
impl From<GatherError> for PyErr {
    fn from(err: GatherError) -> PyErr {
        PyValueError::new_err(err.to_string())
    }
}

/// A panic inside the core, caught at the boundary: `what` says what the core was doing.
#[derive(Debug, Clone)]
pub struct Panicked {
    what: String,
    message: String,
}

impl Panicked {
    fn from_payload(what: &str, payload: Box<dyn std::any::Any + Send>) -> Panicked {
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".to_string());
        Panicked {
            what: what.to_string(),
            message,
        }
    }
}

/// RuntimeError, not pyo3's BaseException-derived PanicException (which `except Exception`
/// would not catch).
impl From<Panicked> for PyErr {
    fn from(p: Panicked) -> PyErr {
        PyRuntimeError::new_err(format!(
            "internal error in koemorph_data while {}: {}",
            p.what, p.message
        ))
    }
}

/// Runs `f` on the calling thread, catching a panic.
pub fn catching<T>(what: &str, f: impl FnOnce() -> T) -> Result<T, Panicked> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|payload| Panicked::from_payload(what, payload))
}

/// Runs `f` without the GIL; a panic becomes a RuntimeError instead of aborting.
pub fn detached<T: Send>(py: Python<'_>, what: &str, f: impl FnOnce() -> T + Send) -> Result<T, Panicked> {
    py.detach(|| catching(what, f))
}

/// Deliberately panics inside the core (tests check that a panic reaches Python as an exception).
#[pyfunction]
pub fn _panic_for_test(py: Python<'_>) -> PyResult<()> {
    Ok(detached(py, "testing panic handling", || {
        panic!("deliberate test panic")
    })?)
}
