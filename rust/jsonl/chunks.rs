//! The driver: splits the input at newlines, counts rows, parses chunks (in parallel for
//! large inputs) into one preallocated output and picks the first error in line order.

use super::{parse_line, Blendshapes, Columns, ParseError, RowSlots, N};
use crate::arkit::NUM_POSE;

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

/// The first row of a chunk, once it parsed: where later chunks must continue from.
#[derive(Clone, Copy)]
struct FirstRow {
    line: usize,
    /// Its timestamp as written (in the file's unit).
    timestamp: f64,
    has_pose: bool,
}

struct ChunkOutcome {
    /// First error in the chunk (lowest line), if any.
    error: Option<ParseError>,
    /// The chunk's first non-blank line, if it parsed.
    first: Option<FirstRow>,
    /// The timestamp (as written) of the last row that parsed.
    last_timestamp: Option<f64>,
}

/// A chunk's share of the output: room for exactly its non-blank lines.
struct ChunkOutput<'a> {
    values: &'a mut [f32],
    pose: &'a mut [f32],
    timestamps: &'a mut [f64],
}

/// Parse every line of `chunk` (whose first line is `first_line`) into `out`. Checks inside
/// the chunk that timestamps do not decrease and that every row has pose or none does.
fn parse_chunk(chunk: &[u8], first_line: usize, columns: Columns<'_>, out: ChunkOutput<'_>) -> ChunkOutcome {
    let mut line_no = first_line;
    let mut row = 0usize;
    let mut start = 0usize;
    let mut prev = f64::NEG_INFINITY;
    let mut first: Option<FirstRow> = None;
    let fail = |error: ParseError, first: Option<FirstRow>, prev: f64| ChunkOutcome {
        error: Some(error),
        first,
        last_timestamp: first.map(|_| prev),
    };
    while start < chunk.len() {
        let end = memchr::memchr(b'\n', &chunk[start..]).map_or(chunk.len(), |i| start + i);
        let line = &chunk[start..end];
        start = end + 1;
        if !is_blank(line) {
            // The slices have the arrays' lengths by construction.
            let mut slots = RowSlots {
                values: (&mut out.values[row * N..(row + 1) * N]).try_into().expect("52 values"),
                pose: (&mut out.pose[row * NUM_POSE..(row + 1) * NUM_POSE])
                    .try_into()
                    .expect("9 pose values"),
            };
            let parsed = match parse_line(line, &mut slots, columns) {
                Ok(parsed) => parsed,
                Err(msg) => return fail(ParseError::at(line_no, msg), first, prev),
            };
            let t = parsed.timestamp;
            if t < prev {
                return fail(ParseError::at(line_no, decrease_message(t, prev)), first, prev);
            }
            match first {
                None => {
                    first = Some(FirstRow {
                        line: line_no,
                        timestamp: t,
                        has_pose: parsed.has_pose,
                    })
                }
                Some(f) if f.has_pose != parsed.has_pose => {
                    return fail(
                        ParseError::at(line_no, pose_mismatch_message(parsed.has_pose)),
                        first,
                        prev,
                    )
                }
                Some(_) => {}
            }
            out.timestamps[row] = t;
            prev = t;
            row += 1;
        }
        line_no += 1;
    }
    debug_assert_eq!(row, out.timestamps.len());
    ChunkOutcome {
        error: None,
        first,
        last_timestamp: first.map(|_| prev),
    }
}

fn decrease_message(t: f64, prev: f64) -> String {
    format!("timestamp {t} is less than the previous timestamp {prev} (timestamps must not decrease)")
}

fn pose_mismatch_message(has_pose: bool) -> String {
    if has_pose {
        "this row has pose but earlier rows do not (either every row has pose or none)".to_string()
    } else {
        "this row has no pose but earlier rows do (either every row has pose or none)".to_string()
    }
}

fn no_frames() -> ParseError {
    ParseError {
        line: None,
        message: "no frames".to_string(),
    }
}

/// The parsed output, with the pose buffer kept only when the rows have pose.
fn finish(values: Vec<f32>, timestamps: Vec<f64>, pose: Vec<f32>, has_pose: bool) -> Blendshapes {
    Blendshapes {
        values,
        timestamps,
        pose: has_pose.then_some(pose),
    }
}

pub(super) fn parse_serial(bytes: &[u8], columns: Columns<'_>) -> Result<Blendshapes, ParseError> {
    let (_, rows) = count_lines(bytes);
    if rows == 0 {
        return Err(no_frames());
    }
    // Zeroed allocations are lazily mapped: the pose buffer of a file without pose costs nothing.
    let mut values = vec![0f32; rows * N];
    let mut pose = vec![0f32; rows * NUM_POSE];
    let mut timestamps = vec![0f64; rows];
    let out = ChunkOutput {
        values: &mut values,
        pose: &mut pose,
        timestamps: &mut timestamps,
    };
    let outcome = parse_chunk(bytes, 1, columns, out);
    match outcome.error {
        Some(e) => Err(e),
        None => Ok(finish(
            values,
            timestamps,
            pose,
            outcome.first.is_some_and(|f| f.has_pose),
        )),
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
pub(super) fn parse_parallel(bytes: &[u8], columns: Columns<'_>, threads: usize) -> Result<Blendshapes, ParseError> {
    use crate::pool::scoped_map;

    // A few chunks per thread, so a thread that got descheduled does not hold up the others.
    let parts = (threads * 4).min(bytes.len() / (256 << 10)).max(threads);
    let chunks = split_chunks(bytes, parts);
    let counts: Vec<(usize, usize)> = scoped_map(chunks.clone(), threads, count_lines);
    let total_rows: usize = counts.iter().map(|c| c.1).sum();
    if total_rows == 0 {
        return Err(no_frames());
    }
    let mut values = vec![0f32; total_rows * N];
    let mut pose = vec![0f32; total_rows * NUM_POSE];
    let mut timestamps = vec![0f64; total_rows];

    // Hand each chunk its disjoint output slices and its first line number.
    let mut jobs = Vec::with_capacity(chunks.len());
    {
        let mut vrest: &mut [f32] = &mut values;
        let mut prest: &mut [f32] = &mut pose;
        let mut trest: &mut [f64] = &mut timestamps;
        let mut line = 1;
        for (chunk, &(lines, rows)) in chunks.iter().zip(&counts) {
            let (v, vr) = std::mem::take(&mut vrest).split_at_mut(rows * N);
            let (p, pr) = std::mem::take(&mut prest).split_at_mut(rows * NUM_POSE);
            let (t, tr) = std::mem::take(&mut trest).split_at_mut(rows);
            vrest = vr;
            prest = pr;
            trest = tr;
            let out = ChunkOutput {
                values: v,
                pose: p,
                timestamps: t,
            };
            jobs.push((*chunk, line, out));
            line += lines;
        }
    }
    let outcomes: Vec<ChunkOutcome> = scoped_map(jobs, threads, |(chunk, line, out)| {
        parse_chunk(chunk, line, columns, out)
    });

    // Pick the first error in line order, including the checks that span chunk boundaries
    // (timestamps going backwards, pose on some rows only), in the order a serial parse makes them.
    let mut prev: Option<f64> = None;
    let mut file_has_pose: Option<bool> = None;
    for outcome in &outcomes {
        if let Some(first) = outcome.first {
            if let Some(p) = prev.filter(|&p| first.timestamp < p) {
                return Err(ParseError::at(first.line, decrease_message(first.timestamp, p)));
            }
            match file_has_pose {
                Some(has) if has != first.has_pose => {
                    return Err(ParseError::at(first.line, pose_mismatch_message(first.has_pose)))
                }
                _ => file_has_pose = Some(first.has_pose),
            }
        }
        if let Some(e) = &outcome.error {
            return Err(e.clone());
        }
        if outcome.last_timestamp.is_some() {
            prev = outcome.last_timestamp;
        }
    }
    Ok(finish(values, timestamps, pose, file_has_pose == Some(true)))
}
