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
    /// Frames on the target grid (or the rows as they are when no resampling is needed: a rate
    /// within 1 % of the target and no gap, see `fps::needs_resampling`).
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

/// What a take's manifest line records about its track: its shape (which decides the frame
/// count at any target rate), its first and last timestamps and whether rows carry pose.
#[derive(Debug, Clone, PartialEq)]
pub struct TrackFacts {
    pub shape: fps::TrackShape,
    /// First and last timestamps in seconds (None without rows).
    pub first: Option<f64>,
    pub last: Option<f64>,
    pub pose: bool,
}

/// Parse an in-memory JSONL document with loading's checks and summarise it without converting
/// (errors are loading's, naming `name`).
pub fn facts_bytes(bytes: &[u8], name: &str, options: &ParseOptions) -> Result<TrackFacts, DataFormatError> {
    let bs = checked_parse(bytes, name, options)?;
    Ok(TrackFacts {
        shape: fps::TrackShape::of(&bs.timestamps),
        first: bs.timestamps.first().copied(),
        last: bs.timestamps.last().copied(),
        pose: bs.pose.is_some(),
    })
}

/// Parse, then reject timestamp gaps over `fps::MAX_GAP_S` (naming the gap's line) and frame
/// rates no capture has (saying which unit the timestamps look like).
fn checked_parse(bytes: &[u8], name: &str, options: &ParseOptions) -> Result<Blendshapes, DataFormatError> {
    let bs = jsonl::parse_document(bytes, name, options, 0)?;
    // The rate first: timestamps in the wrong unit also make long "gaps" (100 ms read as 100 s),
    // and the rate's message says what to do about them.
    if let Some(fps) = fps::detect_fps(&bs.timestamps) {
        if let Some(problem) = fps::capture_rate_problem(fps, 1.0 / fps, options.timestamp_unit) {
            return Err(DataFormatError::whole_file(name, problem));
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arkit::{BlendshapeOrder, NUM_BLENDSHAPES, NUM_POSE};
    use crate::jsonl::TimestampUnit;

    /// Rows with the given timestamps (as written), empty name-keyed blendshapes, and a pose
    /// whose headYaw is the row number when `pose` is set.
    fn document(timestamps: &[f64], pose: bool) -> Vec<u8> {
        timestamps
            .iter()
            .enumerate()
            .map(|(r, t)| {
                let pose = if pose {
                    format!(", \"pose\": [{r}, 0, 0, 0, 0, 0, 0, 0, 0]")
                } else {
                    String::new()
                };
                format!("{{\"timestamp\": {t}, \"blendshapes\": {{\"jawOpen\": {r}}}{pose}}}\n")
            })
            .collect::<String>()
            .into_bytes()
    }

    fn in_unit(unit: TimestampUnit) -> ParseOptions {
        ParseOptions {
            order: BlendshapeOrder::live_link(),
            timestamp_unit: unit,
        }
    }

    fn load_error(bytes: &[u8], unit: TimestampUnit) -> DataFormatError {
        load_bytes(bytes, "take.jsonl", &in_unit(unit), 30.0).unwrap_err()
    }

    #[test]
    fn facts_count_what_loading_delivers() {
        // 30 fps rows 0..=29 without rows 10..=13 (a 5-period gap), starting at 7 s, with pose.
        let ts: Vec<f64> = (0..30)
            .filter(|i| !(10..=13).contains(i))
            .map(|i| 7.0 + i as f64 / 30.0)
            .collect();
        let bytes = document(&ts, true);
        let facts = facts_bytes(&bytes, "take.jsonl", &in_unit(TimestampUnit::Seconds)).unwrap();
        assert_eq!(facts.shape.rows, 26);
        assert_eq!((facts.first, facts.last, facts.pose), (Some(7.0), Some(ts[25]), true));
        assert!((facts.shape.longest_step - 5.0 / 30.0).abs() < 1e-12);
        for target in [30.0, 60.0, 25.0] {
            let loaded = load_bytes(&bytes, "take.jsonl", &in_unit(TimestampUnit::Seconds), target).unwrap();
            assert_eq!(
                facts.shape.conformed_frames(target),
                loaded.blendshapes.rows(),
                "target={target}"
            );
        }
        // Loading's errors, unchanged.
        let ms: Vec<f64> = (0..100).map(|i| (i * 33) as f64).collect();
        let err = facts_bytes(&document(&ms, false), "take.jsonl", &in_unit(TimestampUnit::Seconds)).unwrap_err();
        assert_eq!(err, load_error(&document(&ms, false), TimestampUnit::Seconds));
    }

    #[test]
    fn milliseconds_read_as_seconds_error_before_allocating() {
        // 2000 rows at 30.3 fps in milliseconds. Read as seconds, every step (33 "s") passes the
        // 60 s gap rule, and the conversion would have made ~1000x the rows in frames.
        let ms: Vec<f64> = (0..2000).map(|i| (i * 33) as f64).collect();
        let bytes = document(&ms, false);
        let frames_before = fps::conformed_frame_count(&ms, 30.0);
        assert_eq!(frames_before, 1999 * 33 * 30 + 1);
        assert!(frames_before > 900 * ms.len());
        let e = load_error(&bytes, TimestampUnit::Seconds);
        assert_eq!(
            e,
            DataFormatError {
                path: "take.jsonl".into(),
                line: None,
                reason: "detected 0.0303 fps (median timestamp step 33 s): timestamps look like milliseconds; \
                         pass timestamp_unit=\"ms\""
                    .into(),
            }
        );
        // With the unit, 65.967 s of take: floor(65.967 * 30) + 1 frames.
        let loaded = load_bytes(&bytes, "take.jsonl", &in_unit(TimestampUnit::Milliseconds), 30.0).unwrap();
        assert_eq!(loaded.blendshapes.rows(), 1980);
        assert_eq!(loaded.rows, 2000);
        assert!((loaded.source_fps.unwrap() - 1000.0 / 33.0).abs() < 1e-9);
        assert_eq!(loaded.blendshapes.values.len(), 1980 * NUM_BLENDSHAPES);
        // 100 ms steps read as seconds are 100 s "gaps": the rate's message still comes first.
        let slow: Vec<f64> = (0..50).map(|i| (i * 100) as f64).collect();
        let e = load_error(&document(&slow, false), TimestampUnit::Seconds);
        assert_eq!(
            e.reason,
            "detected 0.01 fps (median timestamp step 100 s): timestamps look like milliseconds; \
             pass timestamp_unit=\"ms\""
        );
    }

    #[test]
    fn microseconds_are_recognised() {
        let us: Vec<f64> = (0..100).map(|i| (i * 33_333) as f64).collect();
        let bytes = document(&us, false);
        let e = load_error(&bytes, TimestampUnit::Seconds);
        assert_eq!(
            e.reason,
            "detected 0.00003 fps (median timestamp step 33333 s): timestamps look like microseconds; \
             pass timestamp_unit=\"us\""
        );
        // Microseconds declared as milliseconds: 33.333 s steps, one unit further down.
        let e = load_error(&bytes, TimestampUnit::Milliseconds);
        assert_eq!(
            e.reason,
            "detected 0.03 fps (median timestamp step 33.3 s): timestamps look like microseconds; \
             pass timestamp_unit=\"us\""
        );
        let loaded = load_bytes(&bytes, "take.jsonl", &in_unit(TimestampUnit::Microseconds), 30.0).unwrap();
        assert_eq!(loaded.blendshapes.timestamps[1], 33_333.0 / 1e6);
    }

    #[test]
    fn rates_no_capture_has_are_rejected() {
        let five: Vec<f64> = (0..20).map(|i| i as f64 * 0.2).collect();
        assert_eq!(
            load_error(&document(&five, false), TimestampUnit::Seconds).reason,
            "detected 5 fps (median timestamp step 0.2 s) with timestamp_unit=\"s\": outside the 10-240 fps a \
             capture can have"
        );
        let thousand: Vec<f64> = (0..20).map(|i| i as f64 / 1000.0).collect();
        assert_eq!(
            load_error(&document(&thousand, false), TimestampUnit::Seconds).reason,
            "detected 1000 fps (median timestamp step 0.001 s) with timestamp_unit=\"s\": outside the 10-240 fps a \
             capture can have"
        );
        // The raw read path does not judge the rate.
        let read = jsonl::parse_document(
            &document(&five, false),
            "take.jsonl",
            &in_unit(TimestampUnit::Seconds),
            1,
        );
        assert_eq!(read.unwrap().rows(), 20);
        // The edges are captures.
        for fps in [10.0, 240.0] {
            let ts: Vec<f64> = (0..20).map(|i| i as f64 / fps).collect();
            assert!(load_bytes(&document(&ts, false), "t", &in_unit(TimestampUnit::Seconds), 30.0).is_ok());
        }
    }

    #[test]
    fn the_gap_rule_applies_in_seconds_after_the_unit() {
        // 30 fps in milliseconds with one 61 s pause before the 6th row (line 6).
        let mut ms: Vec<f64> = (0..40).map(|i| i as f64 * 100.0 / 3.0).collect();
        for t in &mut ms[5..] {
            *t += 61_000.0;
        }
        let e = load_error(&document(&ms, false), TimestampUnit::Milliseconds);
        assert_eq!(e.line, Some(6));
        assert!(
            e.reason
                .contains("s after the previous one; gaps over 60 s are rejected"),
            "{e}"
        );
        // A 59 s pause is fine, and bounds the frames by the span.
        for t in &mut ms[5..] {
            *t -= 2_000.0;
        }
        let loaded = load_bytes(&document(&ms, false), "t", &in_unit(TimestampUnit::Milliseconds), 60.0).unwrap();
        let span = ms[39] / 1e3 - ms[0] / 1e3;
        assert_eq!(loaded.blendshapes.rows(), (span * 60.0 + 1e-9).floor() as usize + 1);
        assert_eq!(loaded.blendshapes.rows(), 3619); // 39 steps of 1/30 s + 59 s = 60.3 s at 60 fps
    }

    #[test]
    fn dropped_rows_are_filled_so_later_frames_stay_in_sync() {
        // 40 rows at 30 fps with rows 20, 21, 22 dropped: 37 rows written, jawOpen and headYaw
        // = the written row's number r (0..=36), so original row i >= 23 carries r = i - 3.
        let ts: Vec<f64> = (0..40)
            .filter(|i| !(20..=22).contains(i))
            .map(|i| i as f64 / 30.0)
            .collect();
        let loaded = load_bytes(&document(&ts, true), "t", &in_unit(TimestampUnit::Seconds), 30.0).unwrap();
        assert_eq!(loaded.rows, 37);
        assert!((loaded.source_fps.unwrap() - 30.0).abs() < 1e-6);
        // Span 39/30 s: floor(39) + 1 = 40 frames (the rows as they are would be 37).
        assert_eq!(loaded.blendshapes.rows(), 40);
        assert_eq!(fps::conformed_frame_count(&ts, 30.0), 40);
        // Frame k at k/30 s: r = k before the gap; 19 + (k - 19) / 4 inside it (between r = 19
        // at 19/30 s and r = 20 at 23/30 s); r = k - 3 after it.
        let expect = |k: usize| match k {
            0..=19 => k as f32,
            20 => 19.25,
            21 => 19.5,
            22 => 19.75,
            _ => (k - 3) as f32,
        };
        let pose = loaded.blendshapes.pose.as_ref().unwrap();
        for k in 0..40 {
            let jaw = loaded.blendshapes.values[k * NUM_BLENDSHAPES + 17];
            assert!((jaw - expect(k)).abs() < 1e-5, "frame {k}: {jaw}");
            assert_eq!(pose[k * NUM_POSE].to_bits(), jaw.to_bits(), "frame {k}");
            assert!((loaded.blendshapes.timestamps[k] - k as f64 / 30.0).abs() < 1e-12);
        }
        // Without the gap the rows come through as they are.
        let all: Vec<f64> = (0..40).map(|i| i as f64 / 30.0).collect();
        let bytes = document(&all, true);
        let loaded = load_bytes(&bytes, "t", &in_unit(TimestampUnit::Seconds), 30.0).unwrap();
        let parsed = jsonl::parse_document(&bytes, "t", &in_unit(TimestampUnit::Seconds), 0).unwrap();
        assert_eq!(loaded.blendshapes, parsed);
    }

    #[test]
    fn pose_is_loaded_and_converted() {
        // 60 fps -> 30 fps takes every other row: headYaw (the row number) of frame k is 2k.
        let ts: Vec<f64> = (0..21).map(|i| i as f64 / 60.0).collect();
        let loaded = load_bytes(&document(&ts, true), "t", &in_unit(TimestampUnit::Seconds), 30.0).unwrap();
        let pose = loaded.blendshapes.pose.unwrap();
        assert_eq!(pose.len(), 11 * NUM_POSE);
        for k in 0..11 {
            assert_eq!(pose[k * NUM_POSE], (2 * k) as f32, "frame {k}");
            assert_eq!(loaded.blendshapes.values[k * NUM_BLENDSHAPES + 17], (2 * k) as f32);
        }
        let without = load_bytes(&document(&ts, false), "t", &in_unit(TimestampUnit::Seconds), 30.0).unwrap();
        assert_eq!(without.blendshapes.pose, None);
    }
}
