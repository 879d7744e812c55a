//! Bindings of `crate::arkit`: the blendshape name tables.

use pyo3::prelude::*;
use pyo3::types::PyTuple;

use crate::arkit::{ARKIT_BLENDSHAPES, NUM_BLENDSHAPES};

/// Adds the name tables to the module as tuples and their lengths as ints.
pub fn add_constants(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("ARKIT_BLENDSHAPES", PyTuple::new(m.py(), ARKIT_BLENDSHAPES)?)?;
    m.add("NUM_BLENDSHAPES", NUM_BLENDSHAPES)?;
    Ok(())
}
