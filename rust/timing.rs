//! Frame <-> sample alignment.
//!
//! `Exact` places frame `f` at sample `floor(f * sample_rate / fps)` computed in integers, so
//! long takes never drift; `Hop` reproduces the design document's `f * (sample_rate / fps)`,
//! which drifts by `f * (sample_rate % fps) / fps` samples (0.375 s after 10 minutes at
//! 16 kHz / 30 fps).

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alignment {
    Exact,
    Hop,
}

impl Alignment {
    pub fn parse(name: &str) -> Option<Alignment> {
        match name {
            "exact" => Some(Alignment::Exact),
            "hop" => Some(Alignment::Hop),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    pub sample_rate: u64,
    pub fps: u64,
    pub alignment: Alignment,
}

impl Timing {
    pub fn new(sample_rate: u64, fps: u64, alignment: Alignment) -> Timing {
        assert!(sample_rate > 0 && fps > 0, "sample_rate and fps must be positive");
        Timing {
            sample_rate,
            fps,
            alignment,
        }
    }

    /// Samples per frame as the design document defines it (`sample_rate // fps`, 533).
    pub fn hop_length(&self) -> u64 {
        self.sample_rate / self.fps
    }

    /// Audio samples in one window of `window_frames` frames (fixed for every window).
    pub fn window_samples(&self, window_frames: u64) -> u64 {
        window_frames * self.hop_length()
    }

    /// First sample of frame `frame`.
    pub fn frame_to_sample(&self, frame: u64) -> u64 {
        match self.alignment {
            Alignment::Exact => ((frame as u128 * self.sample_rate as u128) / self.fps as u128) as u64,
            Alignment::Hop => frame * self.hop_length(),
        }
    }

    /// Whole frames covered by `samples` audio samples.
    pub fn frames_covered(&self, samples: u64) -> u64 {
        match self.alignment {
            Alignment::Exact => ((samples as u128 * self.fps as u128) / self.sample_rate as u128) as u64,
            Alignment::Hop => samples / self.hop_length(),
        }
    }
}

/// Length soxr gives when resampling `samples` samples from `from_rate` to `to_rate`:
/// `round(samples * to / from)` with halves rounded up (checked against soxr's output).
pub fn resampled_length(samples: u64, from_rate: u64, to_rate: u64) -> u64 {
    if from_rate == to_rate {
        return samples;
    }
    ((2 * samples as u128 * to_rate as u128 + from_rate as u128) / (2 * from_rate as u128)) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_alignment_does_not_drift() {
        let t = Timing::new(16000, 30, Alignment::Exact);
        assert_eq!(t.hop_length(), 533);
        assert_eq!(t.window_samples(256), 136448);
        assert_eq!(t.frame_to_sample(0), 0);
        assert_eq!(t.frame_to_sample(1), 533);
        assert_eq!(t.frame_to_sample(2), 1066);
        assert_eq!(t.frame_to_sample(3), 1600);
        // 10 minutes = 18000 frames = exactly 9_600_000 samples.
        assert_eq!(t.frame_to_sample(18000), 9_600_000);
        assert_eq!(t.frames_covered(9_600_000), 18000);
        assert_eq!(t.frames_covered(9_599_999), 17999);
    }

    #[test]
    fn hop_alignment_reproduces_the_document() {
        let t = Timing::new(16000, 30, Alignment::Hop);
        assert_eq!(t.frame_to_sample(18000), 18000 * 533);
        // The document's drift after 10 minutes: 6000 samples = 0.375 s.
        assert_eq!(9_600_000 - t.frame_to_sample(18000), 6000);
        assert_eq!(t.frames_covered(533 * 10 + 532), 10);
    }

    #[test]
    fn resampled_length_rounds_half_up() {
        assert_eq!(resampled_length(1, 32000, 16000), 1); // 0.5 -> 1
        assert_eq!(resampled_length(3, 32000, 16000), 2); // 1.5 -> 2
        assert_eq!(resampled_length(1, 64000, 16000), 0); // 0.25 -> 0
        assert_eq!(resampled_length(7, 64000, 16000), 2); // 1.75 -> 2
        assert_eq!(resampled_length(44100, 44100, 16000), 16000);
        assert_eq!(resampled_length(123, 16000, 16000), 123);
    }
}
