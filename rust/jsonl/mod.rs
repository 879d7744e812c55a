//! Blendshape JSONL parser.
//!
//! One JSON object per line:
//!
//! ```text
//! {"timestamp": 0.0333, "blendshapes": [0.0, 0.12, ... 52 numbers]}
//! {"timestamp": 0.0667, "blendshapes": {"jawOpen": 0.4, "EyeBlinkLeft": 1.0}}
//! ```
//!
//! * `"blendshapes"` is an array of exactly 52 numbers in ARKit order, or an object keyed by
//!   ARKit name (case-insensitive; missing names are 0.0; unknown names are an error).
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

use crate::arkit::NUM_BLENDSHAPES;

pub use chunks::line_of_row;
use chunks::{parse_parallel, parse_serial};
pub use errors::{DataFormatError, ParseError};

const N: usize = NUM_BLENDSHAPES;

/// Inputs at least this large are parsed in parallel (when more than one thread is allowed).
const PARALLEL_THRESHOLD: usize = 1 << 20;

/// Parsed blendshape frames: `values` is row-major `[rows, 52]` float32, `timestamps` is `[rows]`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Blendshapes {
    pub values: Vec<f32>,
    pub timestamps: Vec<f64>,
}

impl Blendshapes {
    /// Number of frames (rows).
    pub fn rows(&self) -> usize {
        self.timestamps.len()
    }
}

/// Parse a blendshape JSONL file, on one thread per CPU for large inputs.
pub fn parse_jsonl(bytes: &[u8]) -> Result<Blendshapes, ParseError> {
    parse_jsonl_with_threads(bytes, crate::pool::threads())
}

/// Parse a blendshape JSONL file with at most `threads` threads (`1` = single-threaded on the
/// calling thread, `0` = one per CPU). Results and errors do not depend on `threads`.
pub fn parse_jsonl_with_threads(bytes: &[u8], threads: usize) -> Result<Blendshapes, ParseError> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let threads = if threads == 0 { crate::pool::threads() } else { threads };
    // No point in chunks smaller than ~256 KiB (and no thread per byte for silly thread counts).
    let threads = threads.min(bytes.len() / (256 << 10)).max(1);
    if threads <= 1 || bytes.len() < PARALLEL_THRESHOLD {
        return parse_serial(bytes);
    }
    parse_parallel(bytes, threads)
}

/// The bytes of the file at `path`; an unreadable file is a DataFormatError of the whole file.
pub fn read_file_bytes(path: &str) -> Result<Vec<u8>, DataFormatError> {
    std::fs::read(path).map_err(|io| DataFormatError::whole_file(path, format!("cannot read file: {io}")))
}

/// Read and parse the blendshape JSONL file at `path`; errors name the file.
pub fn read_file(path: &str) -> Result<Blendshapes, DataFormatError> {
    parse_jsonl(&read_file_bytes(path)?).map_err(|e| e.in_file(path))
}

/// Parse an in-memory document called `name` (errors name it as the path) with at most
/// `threads` threads (0 = one per CPU).
pub fn parse_document(bytes: &[u8], name: &str, threads: usize) -> Result<Blendshapes, DataFormatError> {
    parse_jsonl_with_threads(bytes, threads).map_err(|e| e.in_file(name))
}

/// Parse one non-blank line into `out` (52 values); returns the timestamp.
#[inline]
fn parse_line(line: &[u8], out: &mut [f32]) -> Result<f64, String> {
    if let Some(t) = fast::parse_line(line, out) {
        return Ok(t);
    }
    slow::parse_line(line, out)
}
