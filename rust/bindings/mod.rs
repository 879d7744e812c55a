//! The PyO3 binding layer (`koemorph_data._core`): one file per core module, each converting
//! arguments, releasing the GIL around the pure core and handing results to numpy without
//! copying; `errors` is the one place where core errors and panics become Python exceptions.

mod arkit;
mod errors;
mod gather;
mod jsonl;
mod manifest;
mod plan;
mod timing;
mod track;

use pyo3::prelude::*;

#[pymodule]
#[pyo3(name = "_core")]
fn core_module(m: &Bound<'_, PyModule>) -> PyResult<()> {
    // The version lives once, in Cargo.toml (pyproject.toml declares it dynamic).
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    arkit::add_constants(m)?;
    m.add_function(wrap_pyfunction!(arkit::resolve_blendshape_order, m)?)?;
    m.add_function(wrap_pyfunction!(jsonl::read_blendshapes, m)?)?;
    m.add_function(wrap_pyfunction!(jsonl::parse_blendshapes_bytes, m)?)?;
    m.add_function(wrap_pyfunction!(track::load_blendshapes, m)?)?;
    m.add_function(wrap_pyfunction!(track::load_blendshapes_bytes, m)?)?;
    m.add_function(wrap_pyfunction!(track::track_facts_bytes, m)?)?;
    m.add_function(wrap_pyfunction!(track::conformed_frame_counts, m)?)?;
    m.add_function(wrap_pyfunction!(manifest::parse_manifest_lines, m)?)?;
    m.add_function(wrap_pyfunction!(timing::frames_to_samples, m)?)?;
    m.add_function(wrap_pyfunction!(timing::frames_covered, m)?)?;
    m.add_function(wrap_pyfunction!(timing::resampled_length, m)?)?;
    m.add_function(wrap_pyfunction!(timing::frames_covered_each, m)?)?;
    m.add_function(wrap_pyfunction!(timing::resampled_lengths, m)?)?;
    m.add_function(wrap_pyfunction!(plan::plan_runs, m)?)?;
    m.add_function(wrap_pyfunction!(plan::plan_windows, m)?)?;
    m.add_function(wrap_pyfunction!(plan::window_order, m)?)?;
    m.add_function(wrap_pyfunction!(plan::rank_share, m)?)?;
    m.add_function(wrap_pyfunction!(plan::worker_block, m)?)?;
    m.add_function(wrap_pyfunction!(plan::assign_files_to_ranks, m)?)?;
    m.add_function(wrap_pyfunction!(plan::lane_schedule, m)?)?;
    m.add_function(wrap_pyfunction!(gather::gather_windows, m)?)?;
    m.add_function(wrap_pyfunction!(gather::gather_batch, m)?)?;
    m.add_function(wrap_pyfunction!(gather::gather_batch_async, m)?)?;
    m.add_class::<gather::GatherTicket>()?;
    m.add_function(wrap_pyfunction!(errors::_panic_for_test, m)?)?;
    Ok(())
}
