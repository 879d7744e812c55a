//! Frame-rate detection and conversion of blendshape sequences.

use crate::arkit::{NUM_BLENDSHAPES, NUM_POSE};
use crate::jsonl::{Blendshapes, TimestampUnit};

const N: usize = NUM_BLENDSHAPES;

/// Slack (seconds) for floating-point noise when placing target frames on the source time axis.
const EPS: f64 = 1e-9;

fn median_sorted(v: &[f64]) -> f64 {
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

/// Median of the steps between consecutive timestamps (repeats count as 0 steps; if the median
/// is 0, use the median of the positive steps); None when fewer than 2 distinct timestamps.
/// Returns the frame rate `1 / median_step`.
pub fn detect_fps(timestamps: &[f64]) -> Option<f64> {
    let mut steps: Vec<f64> = timestamps.windows(2).map(|w| w[1] - w[0]).collect();
    if !steps.iter().any(|&s| s > 0.0) {
        return None;
    }
    steps.sort_unstable_by(f64::total_cmp);
    let mut step = median_sorted(&steps);
    if step <= 0.0 {
        let first_pos = steps.partition_point(|&s| s <= 0.0);
        step = median_sorted(&steps[first_pos..]);
    }
    let fps = 1.0 / step;
    if fps.is_finite() && fps > 0.0 {
        Some(fps)
    } else {
        None
    }
}

/// True when detected fps is more than 1% away from target (|fps - target| > 0.01 * target).
/// An undetectable rate (None: fewer than 2 distinct timestamps) needs no conversion.
pub fn needs_conversion(source_fps: Option<f64>, target_fps: f64) -> bool {
    match source_fps {
        Some(fps) => (fps - target_fps).abs() > 0.01 * target_fps,
        None => false,
    }
}

/// A step between consecutive timestamps longer than this many target frame periods is a gap:
/// rows the capture dropped (the threshold `koemorph-data inspect` counts dropped frames with).
pub const GAP_PERIODS: f64 = 1.5;

/// True when some step between consecutive timestamps is longer than `GAP_PERIODS` target
/// periods.
pub fn has_gap(timestamps: &[f64], target_fps: f64) -> bool {
    let longest = GAP_PERIODS / target_fps;
    timestamps.windows(2).any(|w| w[1] - w[0] > longest)
}

/// True when the track is resampled onto the target grid: its rate needs conversion, or it is
/// at the target rate but has a gap (rows used as they are would put every frame after the gap
/// early against the audio by the rows dropped). Otherwise the rows are the frames.
pub fn needs_resampling(timestamps: &[f64], target_fps: f64) -> bool {
    TrackShape::of(timestamps).needs_resampling(target_fps)
}

/// What decides a track's frame count at any target rate, without its rows: a take's manifest
/// line records these so that a dataset counts frames without parsing the take.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrackShape {
    /// Rows in the file.
    pub rows: usize,
    /// The detected rate (`detect_fps`; None: fewer than 2 distinct timestamps).
    pub source_fps: Option<f64>,
    /// Last timestamp minus the first (seconds; 0 without rows).
    pub span: f64,
    /// The longest step between consecutive timestamps (seconds; 0 with fewer than 2 rows).
    pub longest_step: f64,
}

impl TrackShape {
    pub fn of(timestamps: &[f64]) -> TrackShape {
        let longest_step = timestamps
            .windows(2)
            .map(|w| w[1] - w[0])
            .fold(None, |longest: Option<f64>, step| {
                Some(longest.map_or(step, |l| l.max(step)))
            });
        TrackShape {
            rows: timestamps.len(),
            source_fps: detect_fps(timestamps),
            span: match timestamps {
                [first, .., last] => last - first,
                _ => 0.0,
            },
            longest_step: longest_step.unwrap_or(0.0),
        }
    }

    /// `needs_resampling` of the track: its rate needs conversion or a step is a gap (some step
    /// longer than `GAP_PERIODS` target periods is the same as the longest one being longer).
    pub fn needs_resampling(&self, target_fps: f64) -> bool {
        needs_conversion(self.source_fps, target_fps) || self.longest_step > GAP_PERIODS / target_fps
    }

    /// `conformed_frame_count` of the track.
    pub fn conformed_frames(&self, target_fps: f64) -> usize {
        if self.rows == 0 || !self.needs_resampling(target_fps) {
            return self.rows;
        }
        last_frame_index(self.span, target_fps) + 1
    }
}

/// Last target frame index: floor(span * target_fps + 1e-9).
fn last_frame_index(span: f64, target_fps: f64) -> usize {
    let k = (span * target_fps + EPS).floor();
    if k.is_finite() && k > 0.0 {
        k as usize
    } else {
        0
    }
}

/// Number of target frames after conversion: floor(span * target_fps + 1e-9) + 1 where
/// span = last - first timestamp (rows count if no resampling is needed, see `needs_resampling`;
/// 0 for no rows).
pub fn conformed_frame_count(timestamps: &[f64], target_fps: f64) -> usize {
    TrackShape::of(timestamps).conformed_frames(target_fps)
}

/// Longest step (seconds) between consecutive timestamps that loading accepts. A longer gap is
/// a data error (a broken clock, mixed-up units), and conversion would allocate frames for the
/// whole span (span * target_fps), which no row count bounds: one bogus timestamp of 1e9 s
/// would abort the process on allocation.
pub const MAX_GAP_S: f64 = 60.0;

/// The first row (0-based) whose step from the previous timestamp exceeds MAX_GAP_S (or is not
/// finite), with that step. With no such gap, a conversion yields at most
/// rows * MAX_GAP_S * target_fps + 1 frames.
pub fn first_long_gap(timestamps: &[f64]) -> Option<(usize, f64)> {
    timestamps
        .windows(2)
        .position(|w| {
            let step = w[1] - w[0];
            step.is_nan() || step > MAX_GAP_S
        })
        .map(|i| (i + 1, timestamps[i + 1] - timestamps[i]))
}

/// Where target frame k falls among the rows: row `i` and the weight `alpha` of row `i + 1`
/// (0: row `i` as is).
type GridPoint = (usize, f64);

/// Time is measured from the first timestamp; target frame k sits at t = k / target_fps for
/// k = 0 ..= floor(span * target_fps + 1e-9). For t, i is the last row with
/// ts[i] - ts[0] <= t (+1e-9 s of slack, so a target time that coincides with a source frame up
/// to rounding noise takes that frame's values exactly); the last row is used as is, otherwise
/// rows i and i+1 are interpolated with alpha = (t - ts[i]) / (ts[i+1] - ts[i]) (ts[i+1] > t, so
/// no division by zero even with repeated timestamps).
fn resampling_grid(ts: &[f64], target_fps: f64) -> Vec<GridPoint> {
    let rows = ts.len();
    let t0 = ts[0];
    // The span bounds the frame count: with the load path's gap and capture-rate checks, at most
    // rows * MAX_GAP_S * target_fps + 1 frames.
    let frames = last_frame_index(ts[rows - 1] - t0, target_fps) + 1;
    let mut grid = Vec::with_capacity(frames);
    let mut i = 0usize;
    for k in 0..frames {
        let t = k as f64 / target_fps;
        while i + 1 < rows && ts[i + 1] - t0 <= t + EPS {
            i += 1;
        }
        let alpha = if i + 1 == rows {
            0.0
        } else {
            let ta = ts[i] - t0;
            let tb = ts[i + 1] - t0;
            ((t - ta) / (tb - ta)).clamp(0.0, 1.0)
        };
        grid.push((i, alpha));
    }
    grid
}

/// A row-major track of `width` values per row, sampled at `grid` (computed in f64, stored as f32).
fn resample(track: &[f32], width: usize, grid: &[GridPoint]) -> Vec<f32> {
    let mut out = Vec::with_capacity(grid.len() * width);
    for &(i, alpha) in grid {
        let a = &track[i * width..(i + 1) * width];
        if alpha == 0.0 {
            out.extend_from_slice(a);
        } else {
            let b = &track[(i + 1) * width..(i + 2) * width];
            out.extend(
                a.iter()
                    .zip(b)
                    .map(|(&x, &y)| (x as f64 + (y as f64 - x as f64) * alpha) as f32),
            );
        }
    }
    out
}

/// Resample onto the target grid by linear interpolation in time when `needs_resampling` (a
/// rate more than 1% off the target, or a gap: dropped rows are filled so that frame k stays at
/// first + k / target_fps), else return the input unchanged (moved, no copy). Pose (if any) is
/// resampled with exactly the blendshapes' weights (see `resampling_grid`). Output timestamps
/// are first + k / target_fps. O(rows + frames).
pub fn conform_fps(bs: Blendshapes, target_fps: f64) -> Blendshapes {
    let ts = &bs.timestamps;
    let rows = ts.len();
    if rows == 0 || !needs_resampling(ts, target_fps) {
        return bs;
    }
    debug_assert_eq!(bs.values.len(), rows * N);
    let grid = resampling_grid(ts, target_fps);
    let t0 = ts[0];
    Blendshapes {
        values: resample(&bs.values, N, &grid),
        timestamps: (0..grid.len()).map(|k| t0 + k as f64 / target_fps).collect(),
        pose: bs.pose.as_deref().map(|pose| resample(pose, NUM_POSE, &grid)),
    }
}

/// Frame rates a capture can have. A detected rate outside is a capture mistake (most often
/// timestamps in milliseconds or microseconds read as seconds), not a rate to convert from.
pub const CAPTURE_FPS_RANGE: std::ops::RangeInclusive<f64> = 10.0..=240.0;

/// Why a detected frame rate is not a capture's, with a hint at the timestamp unit when the
/// median step says what it probably is (`step` in seconds, after dividing by `unit`).
pub fn capture_rate_problem(fps: f64, step: f64, unit: TimestampUnit) -> Option<String> {
    // Rounding slack: a 240 fps capture's median step may read as 240.00000001 fps.
    let slack = 1e-6;
    if fps >= CAPTURE_FPS_RANGE.start() * (1.0 - slack) && fps <= CAPTURE_FPS_RANGE.end() * (1.0 + slack) {
        return None;
    }
    let detected = format!("detected {} fps (median timestamp step {} s)", short(fps), short(step));
    // The unit whose seconds are a thousand / a million times smaller than the given one's.
    let thousandth = match unit {
        TimestampUnit::Seconds => Some(TimestampUnit::Milliseconds),
        TimestampUnit::Milliseconds => Some(TimestampUnit::Microseconds),
        TimestampUnit::Microseconds => None,
    };
    let millionth = (unit == TimestampUnit::Seconds).then_some(TimestampUnit::Microseconds);
    let likely = if (10.0..=100.0).contains(&step) {
        thousandth
    } else if step >= 1e4 {
        millionth
    } else {
        None
    };
    Some(match likely {
        Some(u) => {
            let word = match u {
                TimestampUnit::Milliseconds => "milliseconds",
                _ => "microseconds",
            };
            format!(
                "{detected}: timestamps look like {word}; pass timestamp_unit=\"{}\"",
                u.name()
            )
        }
        None => format!(
            "{detected} with timestamp_unit=\"{}\": outside the {}-{} fps a capture can have",
            unit.name(),
            CAPTURE_FPS_RANGE.start(),
            CAPTURE_FPS_RANGE.end()
        ),
    })
}

/// `x` to 3 significant digits, without trailing zeros (33.333 -> "33.3", 0.030003 -> "0.03").
fn short(x: f64) -> String {
    if x == 0.0 || !x.is_finite() {
        return format!("{x}");
    }
    let decimals = (2 - x.abs().log10().floor() as i32).clamp(0, 20) as usize;
    let text = format!("{x:.decimals$}");
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn make(ts: Vec<f64>) -> Blendshapes {
        let values = (0..ts.len() * N)
            .map(|j| ((j / N) * 10 + j % N) as f32 * 0.01)
            .collect();
        Blendshapes {
            values,
            timestamps: ts,
            pose: None,
        }
    }

    fn row(bs: &Blendshapes, r: usize) -> &[f32] {
        &bs.values[r * N..(r + 1) * N]
    }

    #[test]
    fn detect() {
        let ts: Vec<f64> = (0..100).map(|i| i as f64 / 60.0).collect();
        assert!((detect_fps(&ts).unwrap() - 60.0).abs() < 1e-9);
        assert_eq!(detect_fps(&[]), None);
        assert_eq!(detect_fps(&[1.0]), None);
        assert_eq!(detect_fps(&[1.0, 1.0, 1.0]), None);
        // Mostly repeats: median step is 0, so the median of positive steps is used.
        let ts = [0.0, 0.0, 0.0, 0.0, 0.1, 0.1, 0.1, 0.3];
        assert!((detect_fps(&ts).unwrap() - 1.0 / 0.15).abs() < 1e-9);
        // Jitter and a dropped frame do not move the median.
        let ts = [0.0, 1.0 / 30.0, 2.0 / 30.0, 4.0 / 30.0, 5.0 / 30.0, 6.0 / 30.0];
        assert!((detect_fps(&ts).unwrap() - 30.0).abs() < 1e-9);
    }

    #[test]
    fn needs() {
        assert!(!needs_conversion(None, 30.0));
        assert!(!needs_conversion(Some(30.2), 30.0));
        assert!(!needs_conversion(Some(29.8), 30.0));
        assert!(needs_conversion(Some(30.4), 30.0));
        assert!(needs_conversion(Some(60.0), 30.0));
        assert!(needs_conversion(Some(24.0), 30.0));
    }

    #[test]
    fn sixty_to_thirty_takes_every_other_row() {
        for t0 in [0.0, 12.3456] {
            let ts: Vec<f64> = (0..61).map(|i| t0 + i as f64 / 60.0).collect();
            let span = ts[60] - ts[0];
            let expect_count = (span * 30.0 + 1e-9).floor() as usize + 1;
            assert_eq!(expect_count, 31);
            assert_eq!(conformed_frame_count(&ts, 30.0), expect_count);
            let src = make(ts);
            let out = conform_fps(src.clone(), 30.0);
            assert_eq!(out.rows(), expect_count);
            assert_eq!(out.values.len(), expect_count * N);
            for k in 0..expect_count {
                assert_eq!(row(&out, k), row(&src, 2 * k), "t0={t0} k={k}");
                assert!((out.timestamps[k] - (t0 + k as f64 / 30.0)).abs() < 1e-12);
            }
        }
        // An odd number of rows: the last target frame is before the last row.
        let ts: Vec<f64> = (0..60).map(|i| i as f64 / 60.0).collect();
        assert_eq!(conformed_frame_count(&ts, 30.0), 30);
    }

    #[test]
    fn twenty_four_to_thirty_interpolates() {
        // 5 rows at 24 fps: t = 0, 1/24, 2/24, 3/24, 4/24 (span 1/6 s) -> floor(5) + 1 = 6 frames.
        let ts: Vec<f64> = (0..5).map(|i| i as f64 / 24.0).collect();
        let mut values = vec![0f32; 5 * N];
        let src_col0 = [0.0f32, 1.0, 0.5, 0.25, 1.0];
        for r in 0..5 {
            values[r * N] = src_col0[r];
            values[r * N + 17] = r as f32; // linear ramp
        }
        let src = Blendshapes {
            values,
            timestamps: ts.clone(),
            pose: None,
        };
        assert_eq!(conformed_frame_count(&ts, 30.0), 6);
        let out = conform_fps(src, 30.0);
        assert_eq!(out.rows(), 6);
        // Target k at k/30 s = source position k*24/30 = 0, 0.8, 1.6, 2.4, 3.2, 4.0 rows.
        let expect_col0 = [
            0.0,                       // row 0
            0.0 + (1.0 - 0.0) * 0.8,   // rows 0..1 at 0.8
            1.0 + (0.5 - 1.0) * 0.6,   // rows 1..2 at 0.6
            0.5 + (0.25 - 0.5) * 0.4,  // rows 2..3 at 0.4
            0.25 + (1.0 - 0.25) * 0.2, // rows 3..4 at 0.2
            1.0,                       // last row
        ];
        let expect_ramp = [0.0, 0.8, 1.6, 2.4, 3.2, 4.0];
        for k in 0..6 {
            assert!(
                (out.values[k * N] - expect_col0[k] as f32).abs() < 1e-6,
                "k={k}: {}",
                out.values[k * N]
            );
            assert!((out.values[k * N + 17] - expect_ramp[k] as f32).abs() < 1e-6, "k={k}");
            assert!((out.timestamps[k] - k as f64 / 30.0).abs() < 1e-12);
        }
    }

    #[test]
    fn within_one_percent_is_unchanged_and_not_copied() {
        let ts: Vec<f64> = (0..50).map(|i| i as f64 / 30.2).collect();
        assert_eq!(conformed_frame_count(&ts, 30.0), 50);
        let src = make(ts);
        let ptr = src.values.as_ptr();
        let expect = src.clone();
        let out = conform_fps(src, 30.0);
        assert_eq!(out, expect);
        assert_eq!(out.values.as_ptr(), ptr, "moved, not copied");
    }

    #[test]
    fn gaps_are_steps_over_one_and_a_half_target_periods() {
        let p = 1.0 / 30.0;
        assert!(!has_gap(&[], 30.0));
        assert!(!has_gap(&[1.0], 30.0));
        assert!(!has_gap(&[0.0, p, 2.0 * p, 3.4 * p], 30.0)); // 1.4 periods: jitter
        assert!(has_gap(&[0.0, p, 2.0 * p, 3.6 * p], 30.0)); // 1.6 periods: a row dropped
        assert!(!has_gap(&[0.0, 0.0, 0.0], 30.0));
        // The same step is a gap at 60 fps (3.2 of its periods) but not at 24 fps (1.28).
        assert!(has_gap(&[0.0, 1.6 * p], 60.0));
        assert!(!has_gap(&[0.0, 1.6 * p], 24.0));
        assert!(!needs_resampling(&[0.0, p, 2.0 * p, 3.4 * p], 30.0));
        assert!(needs_resampling(&[0.0, p, 2.0 * p, 3.6 * p], 30.0));
    }

    #[test]
    fn a_track_shape_decides_counts_without_the_rows() {
        let p = 1.0 / 30.0;
        // 30 fps, rows 0..=19 with rows 8, 9, 10 dropped: a 4-period step, span 19 periods.
        let ts: Vec<f64> = (0..20)
            .filter(|i| !(8..=10).contains(i))
            .map(|i| 2.0 + i as f64 * p)
            .collect();
        let shape = TrackShape::of(&ts);
        assert_eq!(shape.rows, 17);
        assert!((shape.span - 19.0 * p).abs() < 1e-12);
        assert!((shape.longest_step - 4.0 * p).abs() < 1e-12);
        // The gap (4 periods at 30 fps, 8 at 60, 3.2 at 24) resamples at every one of these
        // rates: floor(span * fps + 1e-9) + 1 = 20, 39, 16 frames.
        for (fps, frames) in [(30.0, 20), (60.0, 39), (24.0, 16)] {
            assert!(shape.needs_resampling(fps));
            assert_eq!(shape.conformed_frames(fps), frames, "fps={fps}");
            assert_eq!(conformed_frame_count(&ts, fps), frames, "fps={fps}");
        }
        // Gapless 30 fps rows stay rows at 30 fps (within 1 %), not at 60.
        let gapless: Vec<f64> = (0..17).map(|i| i as f64 * p).collect();
        let shape = TrackShape::of(&gapless);
        assert_eq!((shape.conformed_frames(30.0), shape.conformed_frames(60.0)), (17, 33));
        let empty = TrackShape::of(&[]);
        assert_eq!(
            (empty.rows, empty.span, empty.longest_step, empty.source_fps),
            (0, 0.0, 0.0, None)
        );
        assert_eq!(empty.conformed_frames(30.0), 0);
        let one = TrackShape::of(&[4.0]);
        assert_eq!((one.rows, one.span, one.longest_step), (1, 0.0, 0.0));
        assert_eq!(one.conformed_frames(60.0), 1);
    }

    #[test]
    fn dropped_rows_at_the_target_rate_are_filled_in_time() {
        // A 30 fps capture of 20 rows (0..=19) that dropped rows 8, 9 and 10. Taken as they are,
        // the 17 rows would put the original row 11 at frame 8: 100 ms early.
        #[rustfmt::skip]
        let col0 = [
            0.5f32, 0.0, 1.0, 0.125, 0.75, 0.25, 0.625, 0.25, 0.9, 0.1,
            0.3, 0.75, 0.5, 0.0, 1.0, 0.125, 0.375, 0.875, 0.25, 0.5,
        ];
        // Frames 8, 9, 10 (at 8/30, 9/30, 10/30 s) lie a quarter, half and three quarters of the
        // way from row 7 (7/30 s, 0.25) to row 11 (11/30 s, 0.75); the dropped rows' own values
        // (0.9, 0.1, 0.3) are gone. Every other frame k is row k.
        let mut expect_col0 = col0;
        expect_col0[8] = 0.375;
        expect_col0[9] = 0.5;
        expect_col0[10] = 0.625;
        for t0 in [0.0, 12.3456] {
            let kept: Vec<usize> = (0..20).filter(|i| !(8..=10).contains(i)).collect();
            let ts: Vec<f64> = kept.iter().map(|&i| t0 + i as f64 / 30.0).collect();
            assert!((detect_fps(&ts).unwrap() - 30.0).abs() < 1e-6);
            assert!(!needs_conversion(detect_fps(&ts), 30.0), "the rate alone needs nothing");
            // Column 0 as above, column 17 the original row number (so frame k reads k); the
            // pose copies both.
            let mut values = vec![0f32; kept.len() * N];
            let mut pose = vec![0f32; kept.len() * NUM_POSE];
            for (r, &i) in kept.iter().enumerate() {
                values[r * N] = col0[i];
                values[r * N + 17] = i as f32;
                pose[r * NUM_POSE] = col0[i];
                pose[r * NUM_POSE + 8] = i as f32;
            }
            let src = Blendshapes {
                values,
                timestamps: ts.clone(),
                pose: Some(pose),
            };
            // Span 19/30 s: floor(19) + 1 = 20 frames, as many as the capture had rows.
            assert_eq!(conformed_frame_count(&ts, 30.0), 20);
            let out = conform_fps(src, 30.0);
            assert_eq!(out.rows(), 20);
            assert_eq!(out.values.len(), 20 * N);
            let pose = out.pose.as_ref().unwrap();
            assert_eq!(pose.len(), 20 * NUM_POSE);
            for k in 0..20 {
                let got = out.values[k * N];
                assert!((got - expect_col0[k]).abs() < 1e-6, "t0={t0} k={k}: {got}");
                assert!((out.values[k * N + 17] - k as f32).abs() < 1e-5, "t0={t0} k={k}");
                assert_eq!(pose[k * NUM_POSE].to_bits(), out.values[k * N].to_bits());
                assert_eq!(pose[k * NUM_POSE + 8].to_bits(), out.values[k * N + 17].to_bits());
                assert!((out.timestamps[k] - (t0 + k as f64 / 30.0)).abs() < 1e-12);
            }
        }
    }

    #[test]
    fn gapless_captures_near_the_target_keep_their_rows() {
        // Jitter of up to 0.3 periods either way at 30 and 29.9 fps (within 1 %): steps of 1.3,
        // 1, 0.7, 0.7, 1, 1.3 periods (median 1), none reaching 1.5 target periods, so the rows
        // are the frames, moved and bit-identical.
        for fps in [30.0, 29.9] {
            let jitter = [0.0, 0.3, 0.3, 0.0, -0.3, -0.3];
            let ts: Vec<f64> = (0..60).map(|i| (i as f64 + jitter[i % jitter.len()]) / fps).collect();
            assert!(!needs_conversion(detect_fps(&ts), 30.0), "fps={fps}");
            assert!(!has_gap(&ts, 30.0), "fps={fps}");
            assert_eq!(conformed_frame_count(&ts, 30.0), 60);
            let mut src = make(ts);
            src.pose = Some((0..60 * NUM_POSE).map(|j| j as f32 * 0.5).collect());
            let ptr = src.values.as_ptr();
            let expect = src.clone();
            let out = conform_fps(src, 30.0);
            assert_eq!(out, expect, "fps={fps}");
            assert_eq!(out.values.as_ptr(), ptr, "moved, not copied");
        }
    }

    #[test]
    fn repeated_timestamps() {
        // 60 fps with every timestamp duplicated once: median step is 0 -> positive median 1/60.
        let ts: Vec<f64> = (0..40).map(|i| (i / 2) as f64 / 60.0).collect();
        assert!((detect_fps(&ts).unwrap() - 60.0).abs() < 1e-9);
        let src = make(ts);
        let out = conform_fps(src.clone(), 30.0);
        // span = 19/60 -> floor(9.5) + 1 = 10 frames; frame k is at source time 2k/60, i.e. the
        // LAST row carrying that timestamp (row 4k + 1).
        assert_eq!(out.rows(), 10);
        for k in 0..10 {
            assert_eq!(row(&out, k), row(&src, 4 * k + 1), "k={k}");
        }
        for w in out.values.iter() {
            assert!(w.is_finite());
        }
    }

    #[test]
    fn single_row_and_empty() {
        let src = make(vec![3.0]);
        assert_eq!(conformed_frame_count(&src.timestamps, 30.0), 1);
        assert_eq!(conform_fps(src.clone(), 30.0), src);
        let empty = Blendshapes::default();
        assert_eq!(conformed_frame_count(&[], 30.0), 0);
        assert_eq!(conform_fps(empty.clone(), 30.0), empty);
    }

    #[test]
    fn long_gaps_are_found() {
        assert_eq!(first_long_gap(&[]), None);
        assert_eq!(first_long_gap(&[5.0]), None);
        assert_eq!(first_long_gap(&[0.0, 60.0, 120.0, 120.0]), None);
        assert_eq!(first_long_gap(&[0.0, 1.0, 61.5, 1e9]), Some((2, 60.5)));
        assert_eq!(first_long_gap(&[0.0, 1e9]), Some((1, 1e9)));
        let (row, gap) = first_long_gap(&[-1e308, 1e308]).unwrap();
        assert_eq!(row, 1);
        assert!(gap.is_infinite());
    }

    #[test]
    fn upsampling_counts_match() {
        let ts: Vec<f64> = (0..=24).map(|i| 1.5 + i as f64 / 24.0).collect(); // exactly 1 s
        assert_eq!(conformed_frame_count(&ts, 60.0), 61);
        let out = conform_fps(make(ts), 60.0);
        assert_eq!(out.rows(), 61);
        assert_eq!(out.values.len(), 61 * N);
        assert!((out.timestamps[60] - 2.5).abs() < 1e-12);
    }

    #[test]
    fn pose_uses_exactly_the_blendshapes_weights() {
        // 24 -> 30 fps (alphas 0.8, 0.6, 0.4, 0.2): pose column k copies blendshape column
        // 5k + 3, so its converted values must be bit-identical to that column's.
        let ts: Vec<f64> = (0..9).map(|i| 0.5 + i as f64 / 24.0).collect();
        let mut src = make(ts);
        for (r, v) in src.values.iter_mut().enumerate() {
            *v = ((r * 7919) % 1000) as f32 / 997.0;
        }
        let pose: Vec<f32> = (0..9 * NUM_POSE)
            .map(|j| src.values[(j / NUM_POSE) * N + 5 * (j % NUM_POSE) + 3])
            .collect();
        src.pose = Some(pose);
        let out = conform_fps(src, 30.0);
        assert_eq!(out.rows(), 11); // floor(8/24 * 30) + 1
        let pose = out.pose.as_ref().unwrap();
        assert_eq!(pose.len(), 11 * NUM_POSE);
        for k in 0..11 {
            for p in 0..NUM_POSE {
                assert_eq!(
                    pose[k * NUM_POSE + p].to_bits(),
                    out.values[k * N + 5 * p + 3].to_bits()
                );
            }
        }
    }

    #[test]
    fn pose_interpolates_to_exact_values() {
        // 32 -> 64 fps: every other target frame is a midpoint (dyadic times and values: exact).
        let ts: Vec<f64> = (0..4).map(|i| 2.0 + i as f64 / 32.0).collect();
        let mut src = make(ts);
        let head_yaw = [0.5f32, -0.25, 1.0, 0.75];
        let mut pose = vec![0f32; 4 * NUM_POSE];
        for (r, v) in head_yaw.iter().enumerate() {
            pose[r * NUM_POSE] = *v;
            pose[r * NUM_POSE + 8] = r as f32;
        }
        src.pose = Some(pose);
        let out = conform_fps(src, 64.0);
        assert_eq!(out.rows(), 7);
        let got: Vec<f32> = (0..7).map(|k| out.pose.as_ref().unwrap()[k * NUM_POSE]).collect();
        assert_eq!(got, vec![0.5, 0.125, -0.25, 0.375, 1.0, 0.875, 0.75]);
        let got: Vec<f32> = (0..7).map(|k| out.pose.as_ref().unwrap()[k * NUM_POSE + 8]).collect();
        assert_eq!(got, vec![0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0]);
        assert_eq!(out.timestamps[3], 2.0 + 3.0 / 64.0);
    }

    #[test]
    fn capture_rate_messages() {
        assert_eq!(capture_rate_problem(30.0, 1.0 / 30.0, TimestampUnit::Seconds), None);
        assert_eq!(
            capture_rate_problem(1.0 / 33.3, 33.3, TimestampUnit::Seconds).unwrap(),
            "detected 0.03 fps (median timestamp step 33.3 s): timestamps look like milliseconds; \
             pass timestamp_unit=\"ms\""
        );
        // Already microseconds: no smaller unit to suggest.
        assert_eq!(
            capture_rate_problem(1.0 / 33.3, 33.3, TimestampUnit::Microseconds).unwrap(),
            "detected 0.03 fps (median timestamp step 33.3 s) with timestamp_unit=\"us\": outside the 10-240 fps \
             a capture can have"
        );
        assert_eq!(short(33.333333), "33.3");
        assert_eq!(short(0.0300003), "0.03");
        assert_eq!(short(16666.67), "16667");
        assert_eq!(short(2.5), "2.5");
    }
}
