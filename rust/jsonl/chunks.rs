//! The driver: splits the input at newlines, counts rows, parses chunks (in parallel for
//! large inputs) into one preallocated output and picks the first error in line order.

use super::{parse_line, Blendshapes, ParseError, N};

#[inline]
fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

#[inline]
fn is_blank(line: &[u8]) -> bool {
    line.iter().all(|&b| is_ws(b))
}

/// Number of lines (newline-terminated or final unterminated) and of non-blank lines in `chunk`.
pub(super) fn count_lines(chunk: &[u8]) -> (usize, usize) {
    let mut lines = 0;
    let mut rows = 0;
    let mut start = 0;
    for nl in memchr::memchr_iter(b'\n', chunk) {
        lines += 1;
        if !is_blank(&chunk[start..nl]) {
            rows += 1;
        }
        start = nl + 1;
    }
    if start < chunk.len() {
        lines += 1;
        if !is_blank(&chunk[start..]) {
            rows += 1;
        }
    }
    (lines, rows)
}

/// 1-based line number of the 0-based `row`-th non-blank line (the row's line in errors found
/// after parsing, which keeps rows, not lines); None when there are not that many rows.
/// (The piece after a final newline is empty, hence blank: never a row.)
pub fn line_of_row(bytes: &[u8], row: usize) -> Option<usize> {
    bytes
        .split(|&b| b == b'\n')
        .enumerate()
        .filter(|(_, line)| !is_blank(line))
        .nth(row)
        .map(|(i, _)| i + 1)
}

struct ChunkOutcome {
    /// First error in the chunk (lowest line), if any.
    error: Option<ParseError>,
    /// Line number of the chunk's first non-blank line.
    first_row_line: Option<usize>,
}

/// Parse every line of `chunk` (whose first line is `first_line`) into `values` / `ts`, which
/// have exactly room for the chunk's non-blank lines. Checks monotonicity inside the chunk.
fn parse_chunk(chunk: &[u8], first_line: usize, values: &mut [f32], ts: &mut [f64]) -> ChunkOutcome {
    let mut line_no = first_line;
    let mut row = 0usize;
    let mut start = 0usize;
    let mut prev = f64::NEG_INFINITY;
    let mut first_row_line = None;
    while start < chunk.len() {
        let end = memchr::memchr(b'\n', &chunk[start..]).map_or(chunk.len(), |i| start + i);
        let line = &chunk[start..end];
        start = end + 1;
        if !is_blank(line) {
            if first_row_line.is_none() {
                first_row_line = Some(line_no);
            }
            let out = &mut values[row * N..(row + 1) * N];
            match parse_line(line, out) {
                Ok(t) => {
                    if t < prev {
                        return ChunkOutcome {
                            error: Some(ParseError::at(line_no, decrease_message(t, prev))),
                            first_row_line,
                        };
                    }
                    ts[row] = t;
                    prev = t;
                }
                Err(msg) => {
                    return ChunkOutcome {
                        error: Some(ParseError::at(line_no, msg)),
                        first_row_line,
                    }
                }
            }
            row += 1;
        }
        line_no += 1;
    }
    debug_assert_eq!(row, ts.len());
    ChunkOutcome {
        error: None,
        first_row_line,
    }
}

fn decrease_message(t: f64, prev: f64) -> String {
    format!("timestamp {t} is less than the previous timestamp {prev} (timestamps must not decrease)")
}

pub(super) fn parse_serial(bytes: &[u8]) -> Result<Blendshapes, ParseError> {
    let (_, rows) = count_lines(bytes);
    if rows == 0 {
        return Err(ParseError {
            line: None,
            message: "no frames".to_string(),
        });
    }
    let mut values = vec![0f32; rows * N];
    let mut timestamps = vec![0f64; rows];
    let outcome = parse_chunk(bytes, 1, &mut values, &mut timestamps);
    match outcome.error {
        Some(e) => Err(e),
        None => Ok(Blendshapes { values, timestamps }),
    }
}

/// Split `bytes` into about `parts` chunks, each ending just after a newline (or at EOF).
pub(super) fn split_chunks(bytes: &[u8], parts: usize) -> Vec<&[u8]> {
    let mut chunks = Vec::with_capacity(parts);
    let mut start = 0;
    for k in 1..parts {
        let target = bytes.len() * k / parts;
        if target < start {
            continue;
        }
        match memchr::memchr(b'\n', &bytes[target..]) {
            Some(i) => {
                let end = target + i + 1;
                chunks.push(&bytes[start..end]);
                start = end;
            }
            None => break,
        }
    }
    chunks.push(&bytes[start..]);
    chunks
}

/// On scoped threads (crate::pool::scoped_map), not a pool: validation parses in the training
/// process right before torch forks its workers, and this leaves no thread behind.
pub(super) fn parse_parallel(bytes: &[u8], threads: usize) -> Result<Blendshapes, ParseError> {
    use crate::pool::scoped_map;

    // A few chunks per thread, so a thread that got descheduled does not hold up the others.
    let parts = (threads * 4).min(bytes.len() / (256 << 10)).max(threads);
    let chunks = split_chunks(bytes, parts);
    let counts: Vec<(usize, usize)> = scoped_map(chunks.clone(), threads, count_lines);
    let total_rows: usize = counts.iter().map(|c| c.1).sum();
    if total_rows == 0 {
        return Err(ParseError {
            line: None,
            message: "no frames".to_string(),
        });
    }
    let mut values = vec![0f32; total_rows * N];
    let mut timestamps = vec![0f64; total_rows];

    // Hand each chunk its disjoint output slices and its first line number.
    let mut jobs = Vec::with_capacity(chunks.len());
    {
        let mut vrest: &mut [f32] = &mut values;
        let mut trest: &mut [f64] = &mut timestamps;
        let mut line = 1;
        for (chunk, &(lines, rows)) in chunks.iter().zip(&counts) {
            let (v, vr) = std::mem::take(&mut vrest).split_at_mut(rows * N);
            let (t, tr) = std::mem::take(&mut trest).split_at_mut(rows);
            vrest = vr;
            trest = tr;
            jobs.push((*chunk, line, v, t));
            line += lines;
        }
    }
    let outcomes: Vec<ChunkOutcome> = scoped_map(jobs, threads, |(chunk, line, v, t)| parse_chunk(chunk, line, v, t));

    // Pick the first error in line order, including timestamp decreases across chunk boundaries.
    let mut row0 = 0usize;
    let mut prev: Option<f64> = None;
    for (outcome, &(_, rows)) in outcomes.iter().zip(&counts) {
        if let Some(first_line) = outcome.first_row_line {
            let first_row_ok = outcome.error.as_ref().is_none_or(|e| e.line != Some(first_line));
            if first_row_ok {
                let t = timestamps[row0];
                if let Some(p) = prev {
                    if t < p {
                        return Err(ParseError::at(first_line, decrease_message(t, p)));
                    }
                }
            }
        }
        if let Some(e) = &outcome.error {
            return Err(e.clone());
        }
        if rows > 0 {
            prev = Some(timestamps[row0 + rows - 1]);
        }
        row0 += rows;
    }
    Ok(Blendshapes { values, timestamps })
}
