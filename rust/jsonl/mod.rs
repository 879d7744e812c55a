//! Blendshape JSONL parser.
//!
//! One JSON object per line:
//!
//! ```text
//! {"timestamp": 0.0333, "blendshapes": [0.0, 0.12, ... 52 numbers]}
//! {"timestamp": 0.0667, "blendshapes": {"jawOpen": 0.4, "EyeBlinkLeft": 1.0}}
//! ```
//!
//! * `"blendshapes"` is an array of exactly 52 numbers in the file's column order (Live Link
//!   Face's unless `ParseOptions::order` says otherwise; reordered into `ARKIT_BLENDSHAPES`
//!   order while parsing), or an object keyed by ARKit name (case-insensitive; missing names
//!   are 0.0; unknown names are an error; the column order does not apply).
//! * Head and eye pose: `"pose"` is an array of exactly 9 numbers in `POSE_NAMES` order, or the
//!   9 pose names appear (case-insensitively, e.g. Live Link's `HeadYaw`) as keys of a
//!   `"blendshapes"` object (missing ones are 0.0); not both ways in one row. Either every row
//!   has pose or none does.
//! * Timestamps are in `ParseOptions::timestamp_unit` and returned in seconds.
//! * Other keys are ignored; key order is free.
//! * Blank lines (space / tab / CR only) are skipped, CRLF works, a leading UTF-8 BOM is skipped.
//! * Timestamps are required, finite, and never decrease (repeats are fine).
//! * Every value must be a finite number that is also finite as `f32`.
//!
//! Design: a hand-written fast path parses the common line shape straight into the output
//! buffer (no allocation per line). Anything it does not recognise (escapes in keys, objects,
//! unusual values, any error at all) is re-parsed by `serde_json` for that one line, so
//! `serde_json` is the single source of truth for accepted syntax and for error messages.
//! Large inputs are split into a few chunks per thread at newline boundaries; a counting pass gives
//! each chunk a disjoint slice of one preallocated output, and chunks are parsed in parallel.

mod chunks;
mod errors;
mod fast;
mod slow;
#[cfg(test)]
mod tests;

use crate::arkit::{BlendshapeOrder, NUM_BLENDSHAPES, NUM_POSE};

pub use chunks::line_of_row;
use chunks::{parse_parallel, parse_serial};
pub use errors::{DataFormatError, ParseError};

const N: usize = NUM_BLENDSHAPES;

/// Inputs at least this large are parsed in parallel (when more than one thread is allowed).
const PARALLEL_THRESHOLD: usize = 1 << 20;

/// Parsed blendshape frames: `values` is row-major `[rows, 52]` float32 in `ARKIT_BLENDSHAPES`
/// order, `timestamps` is `[rows]` seconds, `pose` (when the rows have it) is `[rows, 9]` in
/// `POSE_NAMES` order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Blendshapes {
    pub values: Vec<f32>,
    pub timestamps: Vec<f64>,
    pub pose: Option<Vec<f32>>,
}

impl Blendshapes {
    /// Number of frames (rows).
    pub fn rows(&self) -> usize {
        self.timestamps.len()
    }
}

/// The unit of a file's timestamps; parsed timestamps are divided into seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TimestampUnit {
    #[default]
    Seconds,
    Milliseconds,
    Microseconds,
}

impl TimestampUnit {
    /// "s", "ms" or "us".
    pub fn parse(name: &str) -> Option<TimestampUnit> {
        match name {
            "s" => Some(TimestampUnit::Seconds),
            "ms" => Some(TimestampUnit::Milliseconds),
            "us" => Some(TimestampUnit::Microseconds),
            _ => None,
        }
    }

    /// The name `parse` accepts.
    pub fn name(self) -> &'static str {
        match self {
            TimestampUnit::Seconds => "s",
            TimestampUnit::Milliseconds => "ms",
            TimestampUnit::Microseconds => "us",
        }
    }

    /// How many of this unit make a second.
    pub fn per_second(self) -> f64 {
        match self {
            TimestampUnit::Seconds => 1.0,
            TimestampUnit::Milliseconds => 1e3,
            TimestampUnit::Microseconds => 1e6,
        }
    }
}

/// How to read a file's columns and timestamps (the defaults: Live Link Face's order, seconds).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ParseOptions {
    pub order: BlendshapeOrder,
    pub timestamp_unit: TimestampUnit,
}

/// Parse a blendshape JSONL file (default options), on one thread per CPU for large inputs.
pub fn parse_jsonl(bytes: &[u8]) -> Result<Blendshapes, ParseError> {
    parse_jsonl_with(bytes, &ParseOptions::default(), crate::pool::threads())
}

/// Parse a blendshape JSONL file (default options) with at most `threads` threads.
pub fn parse_jsonl_with_threads(bytes: &[u8], threads: usize) -> Result<Blendshapes, ParseError> {
    parse_jsonl_with(bytes, &ParseOptions::default(), threads)
}

/// Parse a blendshape JSONL file with at most `threads` threads (`1` = single-threaded on the
/// calling thread, `0` = one per CPU). Results and errors do not depend on `threads`.
pub fn parse_jsonl_with(bytes: &[u8], options: &ParseOptions, threads: usize) -> Result<Blendshapes, ParseError> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let threads = if threads == 0 { crate::pool::threads() } else { threads };
    // No point in chunks smaller than ~256 KiB (and no thread per byte for silly thread counts).
    let threads = threads.min(bytes.len() / (256 << 10)).max(1);
    // The identity order takes the fast path's straight copy.
    let columns = (!options.order.is_identity()).then(|| options.order.permutation());
    let mut bs = if threads <= 1 || bytes.len() < PARALLEL_THRESHOLD {
        parse_serial(bytes, columns)?
    } else {
        parse_parallel(bytes, columns, threads)?
    };
    // Checked as written (errors quote timestamps so), then divided into seconds.
    let per_second = options.timestamp_unit.per_second();
    if per_second != 1.0 {
        bs.timestamps.iter_mut().for_each(|t| *t /= per_second);
    }
    Ok(bs)
}

/// The bytes of the file at `path`; an unreadable file is a DataFormatError of the whole file.
pub fn read_file_bytes(path: &str) -> Result<Vec<u8>, DataFormatError> {
    std::fs::read(path).map_err(|io| DataFormatError::whole_file(path, format!("cannot read file: {io}")))
}

/// Read and parse the blendshape JSONL file at `path`; errors name the file.
pub fn read_file(path: &str, options: &ParseOptions) -> Result<Blendshapes, DataFormatError> {
    parse_document(&read_file_bytes(path)?, path, options, 0)
}

/// Parse an in-memory document called `name` (errors name it as the path) with at most
/// `threads` threads (0 = one per CPU).
pub fn parse_document(
    bytes: &[u8],
    name: &str,
    options: &ParseOptions,
    threads: usize,
) -> Result<Blendshapes, DataFormatError> {
    parse_jsonl_with(bytes, options, threads).map_err(|e| e.in_file(name))
}

/// File column `j` of positional blendshapes goes to output index `perm[j]`; None: identity.
type Columns<'a> = Option<&'a [usize; N]>;

/// One row's output: 52 blendshape values and 9 pose values (left 0 when the row has none).
/// Fixed-size, so the fast path's number loops have constant bounds.
struct RowSlots<'a> {
    values: &'a mut [f32; N],
    pose: &'a mut [f32; NUM_POSE],
}

/// What a line gave besides its values: its timestamp (in the file's unit) and whether it has pose.
#[derive(Debug, Clone, Copy, PartialEq)]
struct LineRow {
    timestamp: f64,
    has_pose: bool,
}

/// Parse one non-blank line into `slots`.
#[inline]
fn parse_line(line: &[u8], slots: &mut RowSlots<'_>, columns: Columns<'_>) -> Result<LineRow, String> {
    if let Some(row) = fast::parse_line(line, slots, columns) {
        return Ok(row);
    }
    slow::parse_line(line, slots, columns)
}
