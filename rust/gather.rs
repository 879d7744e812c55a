//! Window gathering: copy fixed-length windows out of source buffers into one contiguous
//! output buffer (a batch), in parallel over windows.
//!
//! Pure Rust: the sources are plain `&[f32]` slices (decoded audio, memory-mapped cache
//! files, flattened `[frames, 52]` blendshapes), a window is `(source id, start offset)` in
//! elements, and window `k` lands in `out[k * len .. (k + 1) * len]`. Everything is
//! validated before any byte is written, so a bad request leaves `out` untouched.

use std::fmt;

use rayon::prelude::*;

/// Why a gather request was refused (nothing was written).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GatherError {
    /// `ids` and `starts` have different lengths.
    LengthMismatch { ids: usize, starts: usize },
    /// `out` does not hold exactly `windows * window_len` elements.
    OutputSize { expected: usize, actual: usize },
    /// A window names a source that does not exist.
    BadSource { window: usize, id: i64, sources: usize },
    /// A window starts before 0 or ends past the end of its source.
    OutOfBounds {
        window: usize,
        id: usize,
        start: i64,
        len: usize,
        source_len: usize,
    },
}

impl fmt::Display for GatherError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GatherError::LengthMismatch { ids, starts } => {
                write!(f, "ids has {ids} entries but starts has {starts}")
            }
            GatherError::OutputSize { expected, actual } => {
                write!(f, "output holds {actual} elements, expected {expected}")
            }
            GatherError::BadSource { window, id, sources } => {
                write!(f, "window {window}: source id {id} is not in 0..{sources}")
            }
            GatherError::OutOfBounds {
                window,
                id,
                start,
                len,
                source_len,
            } => write!(
                f,
                "window {window}: [{start}, {start} + {len}) is outside source {id} of length {source_len}"
            ),
        }
    }
}

impl std::error::Error for GatherError {}

/// Checks every window and returns `(source id, start)` as `usize`s.
pub fn validate(
    source_lens: &[usize],
    ids: &[i64],
    starts: &[i64],
    window_len: usize,
    out_len: usize,
) -> Result<Vec<(usize, usize)>, GatherError> {
    if ids.len() != starts.len() {
        return Err(GatherError::LengthMismatch {
            ids: ids.len(),
            starts: starts.len(),
        });
    }
    let expected = ids.len().saturating_mul(window_len);
    if expected != out_len {
        return Err(GatherError::OutputSize {
            expected,
            actual: out_len,
        });
    }
    let mut windows = Vec::with_capacity(ids.len());
    for (window, (&id, &start)) in ids.iter().zip(starts).enumerate() {
        if id < 0 || id as u64 >= source_lens.len() as u64 {
            return Err(GatherError::BadSource {
                window,
                id,
                sources: source_lens.len(),
            });
        }
        let id = id as usize;
        let source_len = source_lens[id];
        let fits = start >= 0
            && (start as u64)
                .checked_add(window_len as u64)
                .is_some_and(|end| end <= source_len as u64);
        if !fits {
            return Err(GatherError::OutOfBounds {
                window,
                id,
                start,
                len: window_len,
                source_len,
            });
        }
        windows.push((id, start as usize));
    }
    Ok(windows)
}

/// Copies window `k` = `sources[ids[k]][starts[k] .. starts[k] + window_len]` into
/// `out[k * window_len ..]`, using up to `threads` threads (1 = the calling thread only).
pub fn gather_windows(
    sources: &[&[f32]],
    ids: &[i64],
    starts: &[i64],
    window_len: usize,
    out: &mut [f32],
    threads: usize,
) -> Result<(), GatherError> {
    let lens: Vec<usize> = sources.iter().map(|s| s.len()).collect();
    let windows = validate(&lens, ids, starts, window_len, out.len())?;
    if window_len == 0 || windows.is_empty() {
        return Ok(());
    }
    let copy = |chunk: &mut [f32], ws: &[(usize, usize)]| {
        for (dst, &(id, start)) in chunk.chunks_exact_mut(window_len).zip(ws) {
            dst.copy_from_slice(&sources[id][start..start + window_len]);
        }
    };
    // Below ~1 MiB per thread, waking another thread costs more than the copy it saves.
    let by_size = std::mem::size_of_val(out).div_ceil(MIN_BYTES_PER_THREAD);
    let threads = threads.max(1).min(windows.len()).min(by_size.max(1));
    if threads == 1 {
        copy(out, &windows);
        return Ok(());
    }
    // Contiguous blocks of windows per task, each writing one disjoint part of `out`, run on
    // the core's persistent, fork-safe pool (spawning OS threads per call costs far more than a
    // batch copy; rayon's global pool hangs in forked DataLoader workers).
    let per = windows.len().div_ceil(threads);
    crate::pool::pool().install(|| {
        out.par_chunks_mut(per * window_len)
            .zip(windows.par_chunks(per))
            .for_each(|(mine, ws)| copy(mine, ws))
    });
    Ok(())
}

/// Smallest copy worth another thread.
pub const MIN_BYTES_PER_THREAD: usize = 1 << 20;

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(n: usize, base: f32) -> Vec<f32> {
        (0..n).map(|i| base + i as f32).collect()
    }

    #[test]
    fn copies_windows_in_order() {
        let a = ramp(10, 0.0);
        let b = ramp(8, 100.0);
        let sources: Vec<&[f32]> = vec![&a, &b];
        let mut out = vec![-1.0f32; 3 * 4];
        gather_windows(&sources, &[1, 0, 1], &[4, 0, 0], 4, &mut out, 1).unwrap();
        assert_eq!(
            out,
            vec![104.0, 105.0, 106.0, 107.0, 0.0, 1.0, 2.0, 3.0, 100.0, 101.0, 102.0, 103.0]
        );
    }

    #[test]
    fn threads_give_the_same_bytes() {
        // Windows of 64 Ki floats (256 KiB): 37 of them are enough work for several threads.
        const LEN: usize = 1 << 16;
        let a = ramp(LEN + 1000, 0.0);
        let b = ramp(LEN + 700, 1.0e6);
        let sources: Vec<&[f32]> = vec![&a, &b];
        let ids: Vec<i64> = (0..37).map(|k| (k % 2) as i64).collect();
        let starts: Vec<i64> = (0..37).map(|k| (k * 13 % 600) as i64).collect();
        let mut one = vec![0.0f32; 37 * LEN];
        gather_windows(&sources, &ids, &starts, LEN, &mut one, 1).unwrap();
        for threads in [2, 3, 8, 37, 100] {
            let mut many = vec![0.0f32; 37 * LEN];
            gather_windows(&sources, &ids, &starts, LEN, &mut many, threads).unwrap();
            assert!(one == many, "threads={threads}");
        }
        // Hand-checked window 5: source 1, start 65.
        assert_eq!(one[5 * LEN], 1.0e6 + 65.0);
        assert_eq!(one[5 * LEN + 63], 1.0e6 + 128.0);
    }

    #[test]
    fn last_full_window_fits() {
        let a = ramp(10, 0.0);
        let mut out = vec![0.0f32; 4];
        gather_windows(&[&a], &[0], &[6], 4, &mut out, 2).unwrap();
        assert_eq!(out, vec![6.0, 7.0, 8.0, 9.0]);
    }

    #[test]
    fn refuses_bad_requests_without_writing() {
        let a = ramp(10, 0.0);
        let sources: Vec<&[f32]> = vec![&a];
        let mut out = vec![-1.0f32; 8];
        let cases: Vec<(Vec<i64>, Vec<i64>, usize, GatherError)> = vec![
            (
                vec![0, 0],
                vec![0],
                4,
                GatherError::LengthMismatch { ids: 2, starts: 1 },
            ),
            (vec![0], vec![0], 4, GatherError::OutputSize { expected: 4, actual: 8 }),
            (
                vec![0, 1],
                vec![0, 0],
                4,
                GatherError::BadSource {
                    window: 1,
                    id: 1,
                    sources: 1,
                },
            ),
            (
                vec![0, -1],
                vec![0, 0],
                4,
                GatherError::BadSource {
                    window: 1,
                    id: -1,
                    sources: 1,
                },
            ),
            (
                vec![0, 0],
                vec![7, 0],
                4,
                GatherError::OutOfBounds {
                    window: 0,
                    id: 0,
                    start: 7,
                    len: 4,
                    source_len: 10,
                },
            ),
            (
                vec![0, 0],
                vec![0, -1],
                4,
                GatherError::OutOfBounds {
                    window: 1,
                    id: 0,
                    start: -1,
                    len: 4,
                    source_len: 10,
                },
            ),
            (
                vec![0, 0],
                vec![0, i64::MAX],
                4,
                GatherError::OutOfBounds {
                    window: 1,
                    id: 0,
                    start: i64::MAX,
                    len: 4,
                    source_len: 10,
                },
            ),
        ];
        for (ids, starts, len, want) in cases {
            let err = gather_windows(&sources, &ids, &starts, len, &mut out, 2).unwrap_err();
            assert_eq!(err, want);
            assert!(!err.to_string().is_empty());
            assert!(out.iter().all(|&v| v == -1.0), "nothing written for {want:?}");
        }
    }

    #[test]
    fn empty_requests_are_fine() {
        let a = ramp(10, 0.0);
        let mut out: Vec<f32> = vec![];
        gather_windows(&[&a], &[], &[], 4, &mut out, 4).unwrap();
        gather_windows(&[], &[], &[], 0, &mut out, 1).unwrap();
    }
}
