//! A take's blendshape track as training loads it: parsed, checked for capture mistakes (a
//! broken clock), and converted to the target frame rate.

use crate::fps;
use crate::jsonl::{self, Blendshapes, DataFormatError};

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
pub fn load_file(path: &str, target_fps: f64) -> Result<LoadedTrack, DataFormatError> {
    // The file's bytes are dropped before the conversion allocates its output.
    let parsed = checked_parse(&jsonl::read_file_bytes(path)?, path)?;
    Ok(convert(parsed, target_fps))
}

/// Load an in-memory JSONL document called `name` (errors name it as the path).
pub fn load_bytes(bytes: &[u8], name: &str, target_fps: f64) -> Result<LoadedTrack, DataFormatError> {
    Ok(convert(checked_parse(bytes, name)?, target_fps))
}

/// Parse, then reject timestamp gaps over `fps::MAX_GAP_S` (naming the gap's line).
fn checked_parse(bytes: &[u8], name: &str) -> Result<Blendshapes, DataFormatError> {
    let bs = jsonl::parse_jsonl(bytes).map_err(|e| e.in_file(name))?;
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
