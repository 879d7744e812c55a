//! A take's blendshape track as training loads it: parsed, checked for capture mistakes (a
//! broken clock, timestamps in the wrong unit), and converted to the target frame rate.
//!
//! The checks come before the conversion allocates anything: the converted frame count is
//! floor(span * target_fps) + 1, and with no gap over `fps::MAX_GAP_S` the span is at most
//! (rows - 1) * MAX_GAP_S, so the output stays proportional to the rows. Millisecond timestamps
//! read as seconds pass the gap rule (33 "s" steps) and would make ~1000x the frames; the
//! capture rate check (`fps::CAPTURE_FPS_RANGE`) rejects them.

use crate::fps;
use crate::jsonl::{self, Blendshapes, DataFormatError, ParseOptions};

/// A track converted to the target frame rate.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadedTrack {
    /// Frames on the target grid (or the rows as they are when no conversion is needed).
    pub blendshapes: Blendshapes,
    /// The frame rate detected from the timestamps (None: fewer than 2 distinct timestamps).
    pub source_fps: Option<f64>,
    /// Rows in the file.
    pub rows: usize,
}

/// Load the JSONL file at `path` and convert it to `target_fps`; errors name the file.
pub fn load_file(path: &str, options: &ParseOptions, target_fps: f64) -> Result<LoadedTrack, DataFormatError> {
    // The file's bytes are dropped before the conversion allocates its output.
    let parsed = checked_parse(&jsonl::read_file_bytes(path)?, path, options)?;
    Ok(convert(parsed, target_fps))
}

/// Load an in-memory JSONL document called `name` (errors name it as the path).
pub fn load_bytes(
    bytes: &[u8],
    name: &str,
    options: &ParseOptions,
    target_fps: f64,
) -> Result<LoadedTrack, DataFormatError> {
    Ok(convert(checked_parse(bytes, name, options)?, target_fps))
}

/// Parse, then reject timestamp gaps over `fps::MAX_GAP_S` (naming the gap's line) and frame
/// rates no capture has (saying which unit the timestamps look like).
fn checked_parse(bytes: &[u8], name: &str, options: &ParseOptions) -> Result<Blendshapes, DataFormatError> {
    let bs = jsonl::parse_document(bytes, name, options, 0)?;
    if let Some((row, gap)) = fps::first_long_gap(&bs.timestamps) {
        return Err(DataFormatError {
            path: name.to_string(),
            // The parse keeps rows, not lines: find the row's line again (error path only).
            line: jsonl::line_of_row(bytes, row),
            reason: format!(
                "timestamp {} is {gap} s after the previous one; gaps over {} s are rejected",
                bs.timestamps[row],
                fps::MAX_GAP_S
            ),
        });
    }
    if let Some(fps) = fps::detect_fps(&bs.timestamps) {
        if let Some(problem) = fps::capture_rate_problem(fps, 1.0 / fps, options.timestamp_unit) {
            return Err(DataFormatError::whole_file(name, problem));
        }
    }
    Ok(bs)
}

fn convert(bs: Blendshapes, target_fps: f64) -> LoadedTrack {
    let rows = bs.rows();
    let source_fps = fps::detect_fps(&bs.timestamps);
    LoadedTrack {
        blendshapes: fps::conform_fps(bs, target_fps),
        source_fps,
        rows,
    }
}
