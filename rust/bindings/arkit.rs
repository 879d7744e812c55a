//! Bindings of `crate::arkit`: the name tables and column orders.

use pyo3::prelude::*;
use pyo3::types::PyTuple;

use crate::arkit::{
    BlendshapeOrder, OrderError, ARKIT_BLENDSHAPES, KOEMORPH_BLENDSHAPES, NUM_BLENDSHAPES, NUM_POSE, POSE_NAMES,
};

/// Adds the name tables to the module as tuples and their lengths as ints.
pub fn add_constants(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("ARKIT_BLENDSHAPES", PyTuple::new(py, ARKIT_BLENDSHAPES)?)?;
    m.add("NUM_BLENDSHAPES", NUM_BLENDSHAPES)?;
    m.add("KOEMORPH_BLENDSHAPES", PyTuple::new(py, KOEMORPH_BLENDSHAPES)?)?;
    m.add("POSE_NAMES", PyTuple::new(py, POSE_NAMES)?)?;
    m.add("NUM_POSE", NUM_POSE)?;
    Ok(())
}

/// An `order=` argument: a preset name ("live_link", "koemorph") or the file's column names.
/// (A str is tried first: it is a sequence of strings too.)
#[derive(FromPyObject)]
pub enum OrderSpec {
    Preset(String),
    Names(Vec<String>),
}

/// `None` is Live Link Face's order.
pub fn resolve_order(order: Option<OrderSpec>) -> Result<BlendshapeOrder, OrderError> {
    match order {
        None => Ok(BlendshapeOrder::live_link()),
        Some(OrderSpec::Preset(name)) => BlendshapeOrder::named(&name),
        Some(OrderSpec::Names(names)) => BlendshapeOrder::from_names(&names),
    }
}

/// The permutation of an order: file column j holds ARKIT_BLENDSHAPES[perm[j]].
#[pyfunction]
pub fn resolve_blendshape_order(order: OrderSpec) -> PyResult<Vec<usize>> {
    Ok(resolve_order(Some(order))?.permutation().to_vec())
}
