//! Bindings of `crate::timing`: frame <-> sample alignment.

use numpy::{PyArray1, PyReadonlyArray1};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::timing::{self, Alignment, Timing};

fn parse_alignment(name: &str) -> PyResult<Alignment> {
    Alignment::parse(name)
        .ok_or_else(|| PyValueError::new_err(format!("alignment must be 'exact' or 'hop', got {name:?}")))
}

fn timing_of(sample_rate: u64, fps: u64, alignment: &str) -> PyResult<Timing> {
    if sample_rate == 0 || fps == 0 {
        return Err(PyValueError::new_err("sample_rate and target_fps must be positive"));
    }
    Ok(Timing::new(sample_rate, fps, parse_alignment(alignment)?))
}

/// First sample of each frame in `frames` (int64 array).
#[pyfunction]
pub fn frames_to_samples<'py>(
    py: Python<'py>,
    frames: PyReadonlyArray1<'py, i64>,
    sample_rate: u64,
    fps: u64,
    alignment: &str,
) -> PyResult<Bound<'py, PyArray1<i64>>> {
    let t = timing_of(sample_rate, fps, alignment)?;
    let out: Vec<i64> = frames
        .as_slice()?
        .iter()
        .map(|&f| if f < 0 { -1 } else { t.frame_to_sample(f as u64) as i64 })
        .collect();
    Ok(PyArray1::from_vec(py, out))
}

/// Whole frames covered by `samples` audio samples.
#[pyfunction]
pub fn frames_covered(samples: u64, sample_rate: u64, fps: u64, alignment: &str) -> PyResult<u64> {
    Ok(timing_of(sample_rate, fps, alignment)?.frames_covered(samples))
}

/// Length of a soxr resampling of `samples` samples from `from_rate` to `to_rate`.
#[pyfunction]
pub fn resampled_length(samples: u64, from_rate: u64, to_rate: u64) -> PyResult<u64> {
    if from_rate == 0 || to_rate == 0 {
        return Err(PyValueError::new_err("sample rates must be positive"));
    }
    Ok(timing::resampled_length(samples, from_rate, to_rate))
}

/// `frames_covered` of every element of `samples` (uint64 array).
#[pyfunction]
pub fn frames_covered_each<'py>(
    py: Python<'py>,
    samples: PyReadonlyArray1<'py, u64>,
    sample_rate: u64,
    fps: u64,
    alignment: &str,
) -> PyResult<Bound<'py, PyArray1<u64>>> {
    let t = timing_of(sample_rate, fps, alignment)?;
    let out: Vec<u64> = samples.as_slice()?.iter().map(|&s| t.frames_covered(s)).collect();
    Ok(PyArray1::from_vec(py, out))
}

/// `resampled_length` of every pair of `samples` and `from_rates` (uint64 arrays of one length).
#[pyfunction]
pub fn resampled_lengths<'py>(
    py: Python<'py>,
    samples: PyReadonlyArray1<'py, u64>,
    from_rates: PyReadonlyArray1<'py, u64>,
    to_rate: u64,
) -> PyResult<Bound<'py, PyArray1<u64>>> {
    let (samples, from_rates) = (samples.as_slice()?, from_rates.as_slice()?);
    if samples.len() != from_rates.len() {
        return Err(PyValueError::new_err(format!(
            "samples and from_rates differ in length: {} and {}",
            samples.len(),
            from_rates.len()
        )));
    }
    if to_rate == 0 || from_rates.contains(&0) {
        return Err(PyValueError::new_err("sample rates must be positive"));
    }
    let out: Vec<u64> = samples
        .iter()
        .zip(from_rates)
        .map(|(&n, &rate)| timing::resampled_length(n, rate, to_rate))
        .collect();
    Ok(PyArray1::from_vec(py, out))
}
