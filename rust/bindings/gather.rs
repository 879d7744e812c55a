//! Bindings of `crate::gather`: copying windows of a batch out of decoded takes or the cache,
//! without the GIL, in the foreground or on the core's pool.

use std::sync::{Arc, Condvar, Mutex};

use numpy::{PyReadonlyArray1, PyReadonlyArrayDyn, PyReadwriteArrayDyn, PyUntypedArrayMethods};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use super::errors::{catching, detached, Panicked};
use crate::gather::{self, GatherError};

/// Copies windows into `out` (float32, C-contiguous, writable, shape [N, ...]) with the GIL
/// released: window k = sources[ids[k]].ravel()[starts[k] : starts[k] + out[k].size].
/// Sources are C-contiguous float32 arrays (decoded takes or np.memmap of the cache).
#[pyfunction]
#[pyo3(signature = (sources, ids, starts, out, threads = 1))]
pub fn gather_windows<'py>(
    py: Python<'py>,
    sources: Vec<PyReadonlyArrayDyn<'py, f32>>,
    ids: PyReadonlyArray1<'py, i64>,
    starts: PyReadonlyArray1<'py, i64>,
    mut out: PyReadwriteArrayDyn<'py, f32>,
    threads: usize,
) -> PyResult<()> {
    let slices: Vec<&[f32]> = sources
        .iter()
        .enumerate()
        .map(|(i, s)| {
            s.as_slice()
                .map_err(|_| PyValueError::new_err(format!("source {i} is not a C-contiguous float32 array")))
        })
        .collect::<PyResult<_>>()?;
    let ids = ids
        .as_slice()
        .map_err(|_| PyValueError::new_err("ids must be a contiguous int64 array"))?;
    let starts = starts
        .as_slice()
        .map_err(|_| PyValueError::new_err("starts must be a contiguous int64 array"))?;
    let shape = PyUntypedArrayMethods::shape(&**out).to_vec();
    if shape.first().copied() != Some(ids.len()) {
        return Err(PyValueError::new_err(format!(
            "out has shape {shape:?}; its first axis must be len(ids) = {}",
            ids.len()
        )));
    }
    let window_len: usize = shape[1..].iter().product();
    let out = out
        .as_slice_mut()
        .map_err(|_| PyValueError::new_err("out must be a C-contiguous float32 array"))?;
    detached(py, "gathering windows", move || {
        gather::gather_windows(&slices, ids, starts, window_len, out, threads)
    })??;
    Ok(())
}

/// A validated batch gather whose buffers are addressed by raw parts, so that it can run on
/// another thread after the borrows of the numpy arrays end (the caller keeps the arrays alive
/// and does not touch the outputs until the gather is done: see `GatherTicket`).
struct BatchJob {
    audio_sources: Vec<(usize, usize)>,
    bs_sources: Vec<(usize, usize)>,
    ids: Vec<i64>,
    sample_starts: Vec<i64>,
    bs_starts: Vec<i64>,
    audio_out: (usize, usize),
    bs_out: (usize, usize),
    a_len: usize,
    b_len: usize,
    threads: usize,
}

impl BatchJob {
    /// SAFETY: every (pointer, length) must address live float32 memory for the duration of the
    /// call, and the outputs must not be accessed by anyone else meanwhile.
    unsafe fn run(&self) -> Result<(), gather::GatherError> {
        let src = |v: &[(usize, usize)]| -> Vec<&[f32]> {
            v.iter()
                .map(|&(p, n)| {
                    if n == 0 {
                        &[][..]
                    } else {
                        std::slice::from_raw_parts(p as *const f32, n)
                    }
                })
                .collect()
        };
        let out = |(p, n): (usize, usize)| -> &mut [f32] {
            if n == 0 {
                &mut [][..]
            } else {
                std::slice::from_raw_parts_mut(p as *mut f32, n)
            }
        };
        let a = src(&self.audio_sources);
        let b = src(&self.bs_sources);
        gather::gather_windows(
            &a,
            &self.ids,
            &self.sample_starts,
            self.a_len,
            out(self.audio_out),
            self.threads,
        )?;
        gather::gather_windows(&b, &self.ids, &self.bs_starts, self.b_len, out(self.bs_out), 1)
    }
}

#[allow(clippy::too_many_arguments)]
fn batch_job(
    audio_sources: &[PyReadonlyArrayDyn<'_, f32>],
    blendshape_sources: &[PyReadonlyArrayDyn<'_, f32>],
    ids: &PyReadonlyArray1<'_, i64>,
    sample_starts: &PyReadonlyArray1<'_, i64>,
    frame_starts: &PyReadonlyArray1<'_, i64>,
    audio_out: &mut PyReadwriteArrayDyn<'_, f32>,
    blendshape_out: &mut PyReadwriteArrayDyn<'_, f32>,
    threads: usize,
) -> PyResult<BatchJob> {
    fn parts(what: &str, arrays: &[PyReadonlyArrayDyn<'_, f32>]) -> PyResult<Vec<(usize, usize)>> {
        arrays
            .iter()
            .enumerate()
            .map(|(i, s)| {
                s.as_slice().map(|s| (s.as_ptr() as usize, s.len())).map_err(|_| {
                    PyValueError::new_err(format!("{what} source {i} is not a C-contiguous float32 array"))
                })
            })
            .collect()
    }
    let audio_parts = parts("audio", audio_sources)?;
    let bs_parts = parts("blendshape", blendshape_sources)?;
    if audio_parts.len() != bs_parts.len() {
        return Err(PyValueError::new_err(
            "audio_sources and blendshape_sources differ in length",
        ));
    }
    let contiguous = |what: &str| PyValueError::new_err(format!("{what} must be a contiguous int64 array"));
    let ids = ids.as_slice().map_err(|_| contiguous("ids"))?;
    let sample_starts = sample_starts.as_slice().map_err(|_| contiguous("sample_starts"))?;
    let frame_starts = frame_starts.as_slice().map_err(|_| contiguous("frame_starts"))?;
    let a_shape = PyUntypedArrayMethods::shape(&***audio_out).to_vec();
    let b_shape = PyUntypedArrayMethods::shape(&***blendshape_out).to_vec();
    if a_shape.first().copied() != Some(ids.len()) || b_shape.len() < 2 || b_shape[0] != ids.len() {
        return Err(PyValueError::new_err(format!(
            "audio_out {a_shape:?} and blendshape_out {b_shape:?} must have len(ids) = {} rows (blendshape_out at least 2-D)",
            ids.len()
        )));
    }
    if frame_starts.len() != ids.len() {
        return Err(PyValueError::new_err(format!(
            "frame_starts has {} entries but ids has {}",
            frame_starts.len(),
            ids.len()
        )));
    }
    let row: usize = b_shape[2..].iter().product();
    let bs_starts: Vec<i64> = frame_starts
        .iter()
        .map(|&f| if f < 0 { -1 } else { f.saturating_mul(row as i64) })
        .collect();
    let a_len: usize = a_shape[1..].iter().product();
    let b_len: usize = b_shape[1..].iter().product();
    let a_out = audio_out
        .as_slice_mut()
        .map_err(|_| PyValueError::new_err("audio_out must be a C-contiguous float32 array"))?;
    let b_out = blendshape_out
        .as_slice_mut()
        .map_err(|_| PyValueError::new_err("blendshape_out must be a C-contiguous float32 array"))?;
    // Validate both requests before writing either.
    let a_lens: Vec<usize> = audio_parts.iter().map(|&(_, n)| n).collect();
    let b_lens: Vec<usize> = bs_parts.iter().map(|&(_, n)| n).collect();
    gather::validate(&a_lens, ids, sample_starts, a_len, a_out.len())?;
    gather::validate(&b_lens, ids, &bs_starts, b_len, b_out.len())?;
    Ok(BatchJob {
        audio_sources: audio_parts,
        bs_sources: bs_parts,
        ids: ids.to_vec(),
        sample_starts: sample_starts.to_vec(),
        bs_starts,
        audio_out: (a_out.as_mut_ptr() as usize, a_out.len()),
        bs_out: (b_out.as_mut_ptr() as usize, b_out.len()),
        a_len,
        b_len,
        threads,
    })
}

/// Audio and blendshape windows of a batch in one call (one GIL release): window k is
/// audio_sources[ids[k]][sample_starts[k]:][:audio_out[k].size] and the rows
/// blendshape_sources[ids[k]][frame_starts[k]:][:blendshape_out.shape[1]].
#[pyfunction]
#[pyo3(signature = (audio_sources, blendshape_sources, ids, sample_starts, frame_starts, audio_out, blendshape_out, threads = 1))]
#[allow(clippy::too_many_arguments)]
pub fn gather_batch<'py>(
    py: Python<'py>,
    audio_sources: Vec<PyReadonlyArrayDyn<'py, f32>>,
    blendshape_sources: Vec<PyReadonlyArrayDyn<'py, f32>>,
    ids: PyReadonlyArray1<'py, i64>,
    sample_starts: PyReadonlyArray1<'py, i64>,
    frame_starts: PyReadonlyArray1<'py, i64>,
    mut audio_out: PyReadwriteArrayDyn<'py, f32>,
    mut blendshape_out: PyReadwriteArrayDyn<'py, f32>,
    threads: usize,
) -> PyResult<()> {
    let job = batch_job(
        &audio_sources,
        &blendshape_sources,
        &ids,
        &sample_starts,
        &frame_starts,
        &mut audio_out,
        &mut blendshape_out,
        threads,
    )?;
    // SAFETY: the borrowed arrays outlive the call.
    detached(py, "gathering a batch", move || unsafe { job.run() })??;
    Ok(())
}

/// Why a background gather failed: a refused request (ValueError) or a panic (RuntimeError).
#[derive(Debug, Clone)]
enum BackgroundFailure {
    Refused(GatherError),
    Panicked(Panicked),
}

impl From<BackgroundFailure> for PyErr {
    fn from(failure: BackgroundFailure) -> PyErr {
        match failure {
            BackgroundFailure::Refused(e) => e.into(),
            BackgroundFailure::Panicked(p) => p.into(),
        }
    }
}

/// Completion state of a background gather.
struct Completion {
    state: Mutex<Option<Result<(), BackgroundFailure>>>,
    cv: Condvar,
}

impl Completion {
    fn wait(&self) -> Result<(), BackgroundFailure> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        while state.is_none() {
            state = self.cv.wait(state).unwrap_or_else(|e| e.into_inner());
        }
        state.clone().unwrap()
    }
}

/// A gather running on the core's thread pool, never touching Python (no GIL hand-offs).
/// Holds references to its source and output arrays until it is done; the outputs must not
/// be read or written before ``wait()`` returns. Dropping an unfinished ticket blocks until
/// the copy ends.
#[pyclass(module = "koemorph_data._core")]
pub struct GatherTicket {
    done: Arc<Completion>,
    _keep: Vec<Py<PyAny>>,
}

#[pymethods]
impl GatherTicket {
    /// Blocks (without the GIL) until the copy is done; raises ValueError if it was refused,
    /// RuntimeError if it panicked.
    fn wait(&self, py: Python<'_>) -> PyResult<()> {
        let done = self.done.clone();
        Ok(py.detach(move || done.wait())?)
    }

    /// Whether the copy has finished.
    fn done(&self) -> bool {
        self.done.state.lock().map(|s| s.is_some()).unwrap_or(true)
    }
}

impl Drop for GatherTicket {
    fn drop(&mut self) {
        let _ = self.done.wait();
    }
}

/// ``gather_batch`` started in the background on the core's pool (arguments are validated
/// here; the copy itself never needs the GIL). Returns a ``GatherTicket``.
#[pyfunction]
#[pyo3(signature = (audio_sources, blendshape_sources, ids, sample_starts, frame_starts, audio_out, blendshape_out, threads = 1))]
#[allow(clippy::too_many_arguments)]
pub fn gather_batch_async<'py>(
    audio_sources: Vec<PyReadonlyArrayDyn<'py, f32>>,
    blendshape_sources: Vec<PyReadonlyArrayDyn<'py, f32>>,
    ids: PyReadonlyArray1<'py, i64>,
    sample_starts: PyReadonlyArray1<'py, i64>,
    frame_starts: PyReadonlyArray1<'py, i64>,
    mut audio_out: PyReadwriteArrayDyn<'py, f32>,
    mut blendshape_out: PyReadwriteArrayDyn<'py, f32>,
    threads: usize,
) -> PyResult<GatherTicket> {
    let job = batch_job(
        &audio_sources,
        &blendshape_sources,
        &ids,
        &sample_starts,
        &frame_starts,
        &mut audio_out,
        &mut blendshape_out,
        threads,
    )?;
    let mut keep: Vec<Py<PyAny>> = Vec::with_capacity(audio_sources.len() * 2 + 2);
    for a in audio_sources.iter().chain(blendshape_sources.iter()) {
        keep.push((**a).clone().into_any().unbind());
    }
    keep.push((**audio_out).clone().into_any().unbind());
    keep.push((**blendshape_out).clone().into_any().unbind());
    let done = Arc::new(Completion {
        state: Mutex::new(None),
        cv: Condvar::new(),
    });
    let signal = done.clone();
    crate::pool::pool().spawn(move || {
        // SAFETY: the ticket keeps every array alive until this job has signalled completion
        // (its Drop waits), and the caller does not touch the outputs before wait().
        let result = match catching("gathering a batch", || unsafe { job.run() }) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(refused)) => Err(BackgroundFailure::Refused(refused)),
            Err(panicked) => Err(BackgroundFailure::Panicked(panicked)),
        };
        *signal.state.lock().unwrap_or_else(|e| e.into_inner()) = Some(result);
        signal.cv.notify_all();
    });
    Ok(GatherTicket { done, _keep: keep })
}
