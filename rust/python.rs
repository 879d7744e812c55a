//! The thin PyO3 binding layer: converts arguments, releases the GIL around the pure core,
//! hands results to numpy without copying, and turns core errors and panics into Python
//! exceptions.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex};

use numpy::ndarray::Array2;
use numpy::{IntoPyArray, PyArray1, PyArray2, PyReadonlyArray1};
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyTuple;

use crate::arkit::{ARKIT_BLENDSHAPES, NUM_BLENDSHAPES};
use crate::fps;
use crate::gather;
use crate::jsonl::{self, Blendshapes, ParseError};
use crate::plan::{self, PlanConfig, Stride};
use crate::timing::{self, Alignment, Timing};

/// Runs `f` without the GIL; a panic becomes a RuntimeError instead of aborting or
/// surfacing as pyo3's BaseException-derived PanicException.
fn detached<T: Send>(py: Python<'_>, what: &str, f: impl FnOnce() -> T + Send) -> PyResult<T> {
    py.detach(|| catch_unwind(AssertUnwindSafe(f))).map_err(|payload| {
        let msg = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".to_string());
        PyRuntimeError::new_err(format!("internal error in koemorph_data while {what}: {msg}"))
    })
}

/// koemorph_data.errors.DataFormatError(message, path=..., line=...)
fn data_format_error(py: Python<'_>, path: &str, line: Option<usize>, message: &str) -> PyErr {
    let text = match line {
        Some(l) => format!("{path}:{l}: {message}"),
        None => format!("{path}: {message}"),
    };
    let build = || -> PyResult<PyErr> {
        let cls = py.import("koemorph_data.errors")?.getattr("DataFormatError")?;
        let kwargs = pyo3::types::PyDict::new(py);
        kwargs.set_item("path", path)?;
        kwargs.set_item("line", line)?;
        kwargs.set_item("reason", message)?;
        Ok(PyErr::from_value(cls.call((text.clone(),), Some(&kwargs))?))
    };
    build().unwrap_or_else(|_| PyValueError::new_err(text))
}

fn parse_error(py: Python<'_>, path: &str, err: &ParseError) -> PyErr {
    data_format_error(py, path, err.line, &err.message)
}

fn read_and_parse(py: Python<'_>, path: &str) -> PyResult<Blendshapes> {
    let owned = path.to_string();
    let parsed = detached(py, &format!("parsing {path}"), move || {
        std::fs::read(&owned).map(|bytes| jsonl::parse_jsonl(&bytes))
    })?;
    match parsed {
        Err(io) => Err(data_format_error(py, path, None, &format!("cannot read file: {io}"))),
        Ok(Err(e)) => Err(parse_error(py, path, &e)),
        Ok(Ok(bs)) => Ok(bs),
    }
}

/// (values [T, 52], timestamps [T]) as numpy arrays.
type BlendshapeArrays<'py> = (Bound<'py, PyArray2<f32>>, Bound<'py, PyArray1<f64>>);

fn to_numpy<'py>(py: Python<'py>, bs: Blendshapes) -> PyResult<BlendshapeArrays<'py>> {
    let rows = bs.timestamps.len();
    let values = Array2::from_shape_vec((rows, NUM_BLENDSHAPES), bs.values)
        .map_err(|e| PyRuntimeError::new_err(format!("internal shape error: {e}")))?;
    // Both conversions hand the Rust allocation to numpy: no copy.
    Ok((values.into_pyarray(py), PyArray1::from_vec(py, bs.timestamps)))
}

/// The file's rows as they are: (values float32 [T, 52], timestamps float64 [T]).
#[pyfunction]
fn read_blendshapes<'py>(py: Python<'py>, path: &str) -> PyResult<Bound<'py, PyTuple>> {
    let bs = read_and_parse(py, path)?;
    let (values, timestamps) = to_numpy(py, bs)?;
    PyTuple::new(py, [values.into_any(), timestamps.into_any()])
}

/// Parses and converts to `target_fps`: (values [F, 52], timestamps [F], source_fps or None, source rows).
#[pyfunction]
fn load_blendshapes<'py>(py: Python<'py>, path: &str, target_fps: f64) -> PyResult<Bound<'py, PyTuple>> {
    let bs = read_and_parse(py, path)?;
    let rows = bs.rows();
    if let Some((row, gap)) = fps::first_long_gap(&bs.timestamps) {
        let message = format!(
            "timestamp {} is {gap} s after the previous one; gaps over {} s are rejected",
            bs.timestamps[row],
            fps::MAX_GAP_S
        );
        // The parse keeps rows, not lines: find the row's line again (error path only).
        let line = std::fs::read(path).ok().and_then(|bytes| jsonl::line_of_row(&bytes, row));
        return Err(data_format_error(py, path, line, &message));
    }
    let (conformed, source_fps) = detached(py, "converting frame rate", move || {
        let source_fps = fps::detect_fps(&bs.timestamps);
        (fps::conform_fps(bs, target_fps), source_fps)
    })?;
    let (values, timestamps) = to_numpy(py, conformed)?;
    (values, timestamps, source_fps, rows).into_pyobject(py)
}

/// Parses an in-memory JSONL document (for tests and tools); `name` is used in errors.
#[pyfunction]
#[pyo3(signature = (data, name = "<bytes>", threads = None))]
fn parse_blendshapes_bytes<'py>(py: Python<'py>, data: &[u8], name: &str, threads: Option<usize>) -> PyResult<Bound<'py, PyTuple>> {
    let owned = data.to_vec();
    let parsed = detached(py, &format!("parsing {name}"), move || match threads {
        Some(t) => jsonl::parse_jsonl_with_threads(&owned, t.max(1)),
        None => jsonl::parse_jsonl(&owned),
    })?;
    let bs = parsed.map_err(|e| parse_error(py, name, &e))?;
    let (values, timestamps) = to_numpy(py, bs)?;
    PyTuple::new(py, [values.into_any(), timestamps.into_any()])
}

fn parse_alignment(name: &str) -> PyResult<Alignment> {
    Alignment::parse(name).ok_or_else(|| PyValueError::new_err(format!("alignment must be 'exact' or 'hop', got {name:?}")))
}

fn timing_of(sample_rate: u64, fps: u64, alignment: &str) -> PyResult<Timing> {
    if sample_rate == 0 || fps == 0 {
        return Err(PyValueError::new_err("sample_rate and target_fps must be positive"));
    }
    Ok(Timing::new(sample_rate, fps, parse_alignment(alignment)?))
}

/// First sample of each frame in `frames` (int64 array).
#[pyfunction]
fn frames_to_samples<'py>(
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
fn frames_covered(samples: u64, sample_rate: u64, fps: u64, alignment: &str) -> PyResult<u64> {
    Ok(timing_of(sample_rate, fps, alignment)?.frames_covered(samples))
}

/// Length of a soxr resampling of `samples` samples from `from_rate` to `to_rate`.
#[pyfunction]
fn resampled_length(samples: u64, from_rate: u64, to_rate: u64) -> PyResult<u64> {
    if from_rate == 0 || to_rate == 0 {
        return Err(PyValueError::new_err("sample rates must be positive"));
    }
    Ok(timing::resampled_length(samples, from_rate, to_rate))
}

/// The epoch's window plan: (file int64 [N], start_frame int64 [N], dense bool [N]).
#[pyfunction]
#[pyo3(signature = (frames, window_frames, stride, seed, epoch, shuffle_files, dense_ratio = None))]
#[allow(clippy::too_many_arguments)]
fn plan_epoch<'py>(
    py: Python<'py>,
    frames: PyReadonlyArray1<'py, u64>,
    window_frames: u64,
    stride: u64,
    seed: u64,
    epoch: u64,
    shuffle_files: bool,
    dense_ratio: Option<f64>,
) -> PyResult<Bound<'py, PyTuple>> {
    if window_frames == 0 || stride == 0 {
        return Err(PyValueError::new_err("window_frames and stride must be positive"));
    }
    let stride = match dense_ratio {
        None => Stride::Fixed(stride),
        Some(r) if (0.0..=1.0).contains(&r) => Stride::Mixed { sparse_stride: stride, dense_ratio: r },
        Some(r) => return Err(PyValueError::new_err(format!("dense_sampling_ratio must be in [0, 1], got {r}"))),
    };
    let cfg = PlanConfig { window_frames, stride, seed, epoch, shuffle_files };
    let frames = frames.as_slice()?.to_vec();
    let p = detached(py, "planning an epoch", move || plan::plan_epoch(&frames, &cfg))?;
    let file: Vec<i64> = p.file.iter().map(|&f| f as i64).collect();
    let start: Vec<i64> = p.start_frame.iter().map(|&s| s as i64).collect();
    (PyArray1::from_vec(py, file), PyArray1::from_vec(py, start), PyArray1::from_vec(py, p.dense)).into_pyobject(py)
}

/// (start, len) of a rank's share in the padded index space (index i = window i % total).
#[pyfunction]
fn rank_share(total: u64, rank: u64, world_size: u64, drop_uneven: bool) -> PyResult<(u64, u64)> {
    if world_size == 0 || rank >= world_size {
        return Err(PyValueError::new_err(format!("rank {rank} is not in 0..{world_size}")));
    }
    Ok(plan::rank_share(total, rank, world_size, drop_uneven))
}

/// (offset, len) of a worker's contiguous block of `len` windows.
#[pyfunction]
fn worker_block(len: u64, worker: u64, num_workers: u64) -> PyResult<(u64, u64)> {
    if num_workers == 0 || worker >= num_workers {
        return Err(PyValueError::new_err(format!("worker {worker} is not in 0..{num_workers}")));
    }
    Ok(plan::worker_block(len, worker, num_workers))
}

/// Files (by window count, epoch order) balanced across ranks: a list of file positions per rank.
#[pyfunction]
fn assign_files_to_ranks(window_counts: Vec<u64>, world_size: usize) -> PyResult<Vec<Vec<usize>>> {
    if world_size == 0 {
        return Err(PyValueError::new_err("world_size must be positive"));
    }
    Ok(plan::assign_files_to_ranks(&window_counts, world_size))
}

/// Lanes over file segments: (index int64 [steps, lanes] with -1 for invalid slots, reset bool [steps, lanes]).
#[pyfunction]
fn lane_plan<'py>(py: Python<'py>, segments: Vec<(usize, usize)>, lanes: usize) -> PyResult<Bound<'py, PyTuple>> {
    if lanes == 0 {
        return Err(PyValueError::new_err("lanes must be positive"));
    }
    let lp = detached(py, "planning lanes", move || plan::lane_plan(&segments, lanes))?;
    let to_err = |e: numpy::ndarray::ShapeError| PyRuntimeError::new_err(format!("internal shape error: {e}"));
    let index = Array2::from_shape_vec((lp.steps, lp.lanes), lp.index).map_err(to_err)?;
    let reset = Array2::from_shape_vec((lp.steps, lp.lanes), lp.reset).map_err(to_err)?;
    (index.into_pyarray(py), reset.into_pyarray(py)).into_pyobject(py)
}

/// Copies windows into `out` (float32, C-contiguous, writable, shape [N, ...]) with the GIL
/// released: window k = sources[ids[k]].ravel()[starts[k] : starts[k] + out[k].size].
/// Sources are C-contiguous float32 arrays (decoded takes or np.memmap of the cache).
#[pyfunction]
#[pyo3(signature = (sources, ids, starts, out, threads = 1))]
fn gather_windows<'py>(
    py: Python<'py>,
    sources: Vec<numpy::PyReadonlyArrayDyn<'py, f32>>,
    ids: PyReadonlyArray1<'py, i64>,
    starts: PyReadonlyArray1<'py, i64>,
    mut out: numpy::PyReadwriteArrayDyn<'py, f32>,
    threads: usize,
) -> PyResult<()> {
    let slices: Vec<&[f32]> = sources
        .iter()
        .enumerate()
        .map(|(i, s)| s.as_slice().map_err(|_| PyValueError::new_err(format!("source {i} is not a C-contiguous float32 array"))))
        .collect::<PyResult<_>>()?;
    let ids = ids.as_slice().map_err(|_| PyValueError::new_err("ids must be a contiguous int64 array"))?;
    let starts = starts.as_slice().map_err(|_| PyValueError::new_err("starts must be a contiguous int64 array"))?;
    let shape = numpy::PyUntypedArrayMethods::shape(&**out).to_vec();
    if shape.first().copied() != Some(ids.len()) {
        return Err(PyValueError::new_err(format!("out has shape {shape:?}; its first axis must be len(ids) = {}", ids.len())));
    }
    let window_len: usize = shape[1..].iter().product();
    let out = out.as_slice_mut().map_err(|_| PyValueError::new_err("out must be a C-contiguous float32 array"))?;
    let result = detached(py, "gathering windows", move || gather::gather_windows(&slices, ids, starts, window_len, out, threads))?;
    result.map_err(|e| PyValueError::new_err(e.to_string()))
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
            v.iter().map(|&(p, n)| if n == 0 { &[][..] } else { std::slice::from_raw_parts(p as *const f32, n) }).collect()
        };
        let out = |(p, n): (usize, usize)| -> &mut [f32] {
            if n == 0 { &mut [][..] } else { std::slice::from_raw_parts_mut(p as *mut f32, n) }
        };
        let a = src(&self.audio_sources);
        let b = src(&self.bs_sources);
        gather::gather_windows(&a, &self.ids, &self.sample_starts, self.a_len, out(self.audio_out), self.threads)?;
        gather::gather_windows(&b, &self.ids, &self.bs_starts, self.b_len, out(self.bs_out), 1)
    }
}

#[allow(clippy::too_many_arguments)]
fn batch_job(
    audio_sources: &[numpy::PyReadonlyArrayDyn<'_, f32>],
    blendshape_sources: &[numpy::PyReadonlyArrayDyn<'_, f32>],
    ids: &PyReadonlyArray1<'_, i64>,
    sample_starts: &PyReadonlyArray1<'_, i64>,
    frame_starts: &PyReadonlyArray1<'_, i64>,
    audio_out: &mut numpy::PyReadwriteArrayDyn<'_, f32>,
    blendshape_out: &mut numpy::PyReadwriteArrayDyn<'_, f32>,
    threads: usize,
) -> PyResult<BatchJob> {
    fn parts(what: &str, arrays: &[numpy::PyReadonlyArrayDyn<'_, f32>]) -> PyResult<Vec<(usize, usize)>> {
        arrays
            .iter()
            .enumerate()
            .map(|(i, s)| {
                s.as_slice()
                    .map(|s| (s.as_ptr() as usize, s.len()))
                    .map_err(|_| PyValueError::new_err(format!("{what} source {i} is not a C-contiguous float32 array")))
            })
            .collect()
    }
    let audio_parts = parts("audio", audio_sources)?;
    let bs_parts = parts("blendshape", blendshape_sources)?;
    if audio_parts.len() != bs_parts.len() {
        return Err(PyValueError::new_err("audio_sources and blendshape_sources differ in length"));
    }
    let contiguous = |what: &str| PyValueError::new_err(format!("{what} must be a contiguous int64 array"));
    let ids = ids.as_slice().map_err(|_| contiguous("ids"))?;
    let sample_starts = sample_starts.as_slice().map_err(|_| contiguous("sample_starts"))?;
    let frame_starts = frame_starts.as_slice().map_err(|_| contiguous("frame_starts"))?;
    let a_shape = numpy::PyUntypedArrayMethods::shape(&***audio_out).to_vec();
    let b_shape = numpy::PyUntypedArrayMethods::shape(&***blendshape_out).to_vec();
    if a_shape.first().copied() != Some(ids.len()) || b_shape.len() < 2 || b_shape[0] != ids.len() {
        return Err(PyValueError::new_err(format!(
            "audio_out {a_shape:?} and blendshape_out {b_shape:?} must have len(ids) = {} rows (blendshape_out at least 2-D)",
            ids.len()
        )));
    }
    if frame_starts.len() != ids.len() {
        return Err(PyValueError::new_err(format!("frame_starts has {} entries but ids has {}", frame_starts.len(), ids.len())));
    }
    let row: usize = b_shape[2..].iter().product();
    let bs_starts: Vec<i64> = frame_starts.iter().map(|&f| if f < 0 { -1 } else { f.saturating_mul(row as i64) }).collect();
    let a_len: usize = a_shape[1..].iter().product();
    let b_len: usize = b_shape[1..].iter().product();
    let a_out = audio_out.as_slice_mut().map_err(|_| PyValueError::new_err("audio_out must be a C-contiguous float32 array"))?;
    let b_out = blendshape_out.as_slice_mut().map_err(|_| PyValueError::new_err("blendshape_out must be a C-contiguous float32 array"))?;
    // Validate both requests before writing either.
    let a_lens: Vec<usize> = audio_parts.iter().map(|&(_, n)| n).collect();
    let b_lens: Vec<usize> = bs_parts.iter().map(|&(_, n)| n).collect();
    gather::validate(&a_lens, ids, sample_starts, a_len, a_out.len()).map_err(|e| PyValueError::new_err(e.to_string()))?;
    gather::validate(&b_lens, ids, &bs_starts, b_len, b_out.len()).map_err(|e| PyValueError::new_err(e.to_string()))?;
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
fn gather_batch<'py>(
    py: Python<'py>,
    audio_sources: Vec<numpy::PyReadonlyArrayDyn<'py, f32>>,
    blendshape_sources: Vec<numpy::PyReadonlyArrayDyn<'py, f32>>,
    ids: PyReadonlyArray1<'py, i64>,
    sample_starts: PyReadonlyArray1<'py, i64>,
    frame_starts: PyReadonlyArray1<'py, i64>,
    mut audio_out: numpy::PyReadwriteArrayDyn<'py, f32>,
    mut blendshape_out: numpy::PyReadwriteArrayDyn<'py, f32>,
    threads: usize,
) -> PyResult<()> {
    let job = batch_job(&audio_sources, &blendshape_sources, &ids, &sample_starts, &frame_starts, &mut audio_out,
                        &mut blendshape_out, threads)?;
    // SAFETY: the borrowed arrays outlive the call.
    let result = detached(py, "gathering a batch", move || unsafe { job.run() })?;
    result.map_err(|e| PyValueError::new_err(e.to_string()))
}

/// Completion state of a background gather.
struct Completion {
    state: Mutex<Option<Result<(), String>>>,
    cv: Condvar,
}

impl Completion {
    fn wait(&self) -> Result<(), String> {
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
struct GatherTicket {
    done: Arc<Completion>,
    _keep: Vec<Py<PyAny>>,
}

#[pymethods]
impl GatherTicket {
    /// Blocks (without the GIL) until the copy is done; raises ValueError if it failed.
    fn wait(&self, py: Python<'_>) -> PyResult<()> {
        let done = self.done.clone();
        py.detach(move || done.wait()).map_err(PyValueError::new_err)
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
fn gather_batch_async<'py>(
    audio_sources: Vec<numpy::PyReadonlyArrayDyn<'py, f32>>,
    blendshape_sources: Vec<numpy::PyReadonlyArrayDyn<'py, f32>>,
    ids: PyReadonlyArray1<'py, i64>,
    sample_starts: PyReadonlyArray1<'py, i64>,
    frame_starts: PyReadonlyArray1<'py, i64>,
    mut audio_out: numpy::PyReadwriteArrayDyn<'py, f32>,
    mut blendshape_out: numpy::PyReadwriteArrayDyn<'py, f32>,
    threads: usize,
) -> PyResult<GatherTicket> {
    let job = batch_job(&audio_sources, &blendshape_sources, &ids, &sample_starts, &frame_starts, &mut audio_out,
                        &mut blendshape_out, threads)?;
    let mut keep: Vec<Py<PyAny>> = Vec::with_capacity(audio_sources.len() * 2 + 2);
    for a in audio_sources.iter().chain(blendshape_sources.iter()) {
        keep.push((**a).clone().into_any().unbind());
    }
    keep.push((**audio_out).clone().into_any().unbind());
    keep.push((**blendshape_out).clone().into_any().unbind());
    let done = Arc::new(Completion { state: Mutex::new(None), cv: Condvar::new() });
    let signal = done.clone();
    crate::pool::pool().spawn(move || {
        // SAFETY: the ticket keeps every array alive until this job has signalled completion
        // (its Drop waits), and the caller does not touch the outputs before wait().
        let result = catch_unwind(AssertUnwindSafe(|| unsafe { job.run() }));
        let result = match result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("internal error in koemorph_data while gathering a batch".to_string()),
        };
        *signal.state.lock().unwrap_or_else(|e| e.into_inner()) = Some(result);
        signal.cv.notify_all();
    });
    Ok(GatherTicket { done, _keep: keep })
}

/// Deliberately panics inside the core (tests check that a panic reaches Python as an exception).
#[pyfunction]
fn _panic_for_test(py: Python<'_>) -> PyResult<()> {
    detached(py, "testing panic handling", || panic!("deliberate test panic"))
}

#[pymodule]
#[pyo3(name = "_core")]
fn core_module(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("ARKIT_BLENDSHAPES", PyTuple::new(m.py(), ARKIT_BLENDSHAPES)?)?;
    m.add("NUM_BLENDSHAPES", NUM_BLENDSHAPES)?;
    m.add_function(wrap_pyfunction!(read_blendshapes, m)?)?;
    m.add_function(wrap_pyfunction!(load_blendshapes, m)?)?;
    m.add_function(wrap_pyfunction!(parse_blendshapes_bytes, m)?)?;
    m.add_function(wrap_pyfunction!(frames_to_samples, m)?)?;
    m.add_function(wrap_pyfunction!(frames_covered, m)?)?;
    m.add_function(wrap_pyfunction!(resampled_length, m)?)?;
    m.add_function(wrap_pyfunction!(plan_epoch, m)?)?;
    m.add_function(wrap_pyfunction!(rank_share, m)?)?;
    m.add_function(wrap_pyfunction!(worker_block, m)?)?;
    m.add_function(wrap_pyfunction!(assign_files_to_ranks, m)?)?;
    m.add_function(wrap_pyfunction!(lane_plan, m)?)?;
    m.add_function(wrap_pyfunction!(gather_windows, m)?)?;
    m.add_function(wrap_pyfunction!(gather_batch, m)?)?;
    m.add_function(wrap_pyfunction!(gather_batch_async, m)?)?;
    m.add_class::<GatherTicket>()?;
    m.add_function(wrap_pyfunction!(_panic_for_test, m)?)?;
    Ok(())
}
