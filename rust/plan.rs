//! Epoch window plans: which windows an epoch contains, in which order, and how they are
//! split across ranks, DataLoader workers and temporal-state lanes.
//!
//! A plan is a pure function of (usable frames per file, window, stride, seed, epoch), held
//! as one run per take (take, window count) in epoch order: memory grows with takes, not
//! windows. A window is computed when it is needed, from its plan index: the run holding it
//! (binary search on the cumulative counts) and its position in the run (arithmetic, or the
//! take's mixed-mode draws, regenerated from (seed, epoch, file)). Every process that builds
//! a plan gets the same windows, so sharding, determinism and exact resume are index
//! arithmetic.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fmt;

use crate::rng::{mix, SplitMix64};

// Independent random streams, so that changing one use never shifts another.
const STREAM_FILE_ORDER: u64 = 1;
const STREAM_DENSE_DRAW: u64 = 2;
const STREAM_WINDOW_ORDER: u64 = 3;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Stride {
    /// Start frames 0, s, 2s, ... (dense is `Fixed(1)`).
    Fixed(u64),
    /// Every `sparse_stride`-th window plus `floor(dense_ratio * positions)` stride-1 windows
    /// drawn without replacement per file and epoch.
    Mixed { sparse_stride: u64, dense_ratio: f64 },
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PlanConfig {
    pub window_frames: u64,
    pub stride: Stride,
    pub seed: u64,
    pub epoch: u64,
    pub shuffle_files: bool,
}

/// A plan lookup that cannot be answered (inconsistent runs or an index outside the plan).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanError(pub String);

impl fmt::Display for PlanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PlanError {}

/// The epoch's file order: a seeded shuffle of `0..n_files`, or the identity.
pub fn file_order(n_files: usize, seed: u64, epoch: u64, shuffle: bool) -> Vec<u32> {
    let mut order: Vec<u32> = (0..n_files as u32).collect();
    if shuffle {
        SplitMix64::keyed(STREAM_FILE_ORDER, &[seed, epoch]).shuffle(&mut order);
    }
    order
}

/// Stride-1 window positions of a file with `frames` usable frames (the last full window included).
pub fn positions(frames: u64, window_frames: u64) -> u64 {
    if window_frames == 0 || frames < window_frames {
        0
    } else {
        frames - window_frames + 1
    }
}

/// One take's windows in mixed mode: the stride grid 0, s, 2s, ... (below `positions`) united
/// with the take's dense draws, in temporal order. Held as the sorted draws only (a tenth of
/// the windows at the default ratio); window k is found by binary search.
#[derive(Debug, Clone, PartialEq)]
pub struct MixedTake {
    positions: u64,
    stride: u64,
    /// Draws that are not grid positions (windows of their own), ascending.
    off_grid: Vec<u64>,
    /// Draws that are grid positions (they make that grid window a dense one), ascending.
    on_grid: Vec<u64>,
}

impl MixedTake {
    /// Draws `floor(dense_ratio * positions)` distinct positions with Floyd's algorithm, keyed
    /// by (seed, epoch, file). `seen` is scratch space (all false on entry and on return).
    pub fn draw(
        positions: u64,
        stride: u64,
        dense_ratio: f64,
        seed: u64,
        epoch: u64,
        file: u32,
        seen: &mut Vec<bool>,
    ) -> MixedTake {
        assert!(stride > 0, "stride must be positive");
        let draws = ((dense_ratio * positions as f64).floor() as u64).min(positions);
        let mut rng = SplitMix64::keyed(STREAM_DENSE_DRAW, &[seed, epoch, file as u64]);
        if (seen.len() as u64) < positions {
            seen.resize(positions as usize, false);
        }
        let mut picks = Vec::with_capacity(draws as usize);
        for j in (positions - draws)..positions {
            let t = rng.below(j + 1);
            let pick = if seen[t as usize] { j } else { t };
            seen[pick as usize] = true;
            picks.push(pick);
        }
        for &p in &picks {
            seen[p as usize] = false;
        }
        picks.sort_unstable();
        let (on_grid, off_grid) = picks.into_iter().partition(|p| p % stride == 0);
        MixedTake {
            positions,
            stride,
            off_grid,
            on_grid,
        }
    }

    pub fn len(&self) -> u64 {
        self.positions.div_ceil(self.stride) + self.off_grid.len() as u64
    }

    pub fn is_empty(&self) -> bool {
        self.positions == 0
    }

    /// (start frame, dense) of the take's window `k` (k < len).
    pub fn window(&self, k: u64) -> (u64, bool) {
        // Off-grid draw j is window j + (grid positions at or before it) = j + d / s + 1.
        // It grows with j, so the off-grid draws before window k are found by bisection.
        let rank = |j: usize| j as u64 + self.off_grid[j] / self.stride + 1;
        let (mut before, mut above) = (0usize, self.off_grid.len());
        while before < above {
            let mid = before + (above - before) / 2;
            if rank(mid) < k {
                before = mid + 1;
            } else {
                above = mid;
            }
        }
        if before < self.off_grid.len() && rank(before) == k {
            return (self.off_grid[before], true);
        }
        let start = (k - before as u64) * self.stride;
        (start, self.on_grid.binary_search(&start).is_ok())
    }
}

/// Window count of a file in an epoch (`seen`: scratch for mixed-mode draws).
pub fn window_count(frames: u64, file: u32, cfg: &PlanConfig, seen: &mut Vec<bool>) -> u64 {
    let n = positions(frames, cfg.window_frames);
    match cfg.stride {
        Stride::Fixed(stride) => {
            assert!(stride > 0, "stride must be positive");
            n.div_ceil(stride)
        }
        Stride::Mixed {
            sparse_stride,
            dense_ratio,
        } => MixedTake::draw(n, sparse_stride, dense_ratio, cfg.seed, cfg.epoch, file, seen).len(),
    }
}

/// The epoch as runs: the files that have windows, in epoch order, and their window counts.
/// Each file's windows are contiguous in the epoch and in temporal order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EpochRuns {
    pub file: Vec<u32>,
    pub count: Vec<u64>,
}

/// The epoch's runs. `frames[i]` is file i's usable frame count (0 for skipped files).
pub fn plan_runs(frames: &[u64], cfg: &PlanConfig) -> EpochRuns {
    let mut runs = EpochRuns::default();
    let mut seen = Vec::new();
    for file in file_order(frames.len(), cfg.seed, cfg.epoch, cfg.shuffle_files) {
        let count = window_count(frames[file as usize], file, cfg, &mut seen);
        if count > 0 {
            runs.file.push(file);
            runs.count.push(count);
        }
    }
    runs
}

/// Windows of a plan looked up by index: file, start frame and dense flag of each.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Windows {
    pub file: Vec<u32>,
    pub start_frame: Vec<u64>,
    pub dense: Vec<bool>,
}

/// The windows at plan indices `indices` of the epoch whose runs are `run_file` with
/// cumulative window counts `run_end` (as numpy holds them). A mixed-mode take's draws are
/// regenerated once per stretch of indices in the same run.
pub fn windows_at(
    frames: &[u64],
    run_file: &[i64],
    run_end: &[i64],
    indices: &[i64],
    cfg: &PlanConfig,
) -> Result<Windows, PlanError> {
    if run_file.len() != run_end.len() {
        return Err(PlanError(format!(
            "{} run files but {} run ends",
            run_file.len(),
            run_end.len()
        )));
    }
    let total = run_end.last().copied().unwrap_or(0);
    let mut out = Windows {
        file: Vec::with_capacity(indices.len()),
        start_frame: Vec::with_capacity(indices.len()),
        dense: Vec::with_capacity(indices.len()),
    };
    let mut seen = Vec::new();
    let mut mixed: Option<(usize, MixedTake)> = None;
    let mut run = 0usize;
    for &index in indices {
        if index < 0 || index >= total {
            return Err(PlanError(format!("plan index {index} is not in 0..{total}")));
        }
        if !(run < run_end.len() && index < run_end[run] && (run == 0 || index >= run_end[run - 1])) {
            run = run_end.partition_point(|&end| end <= index);
        }
        let begin = if run == 0 { 0 } else { run_end[run - 1] };
        let k = (index - begin) as u64;
        let file = run_file[run];
        if file < 0 || file as usize >= frames.len() {
            return Err(PlanError(format!(
                "run {run}: file {file} is not in 0..{}",
                frames.len()
            )));
        }
        let n = positions(frames[file as usize], cfg.window_frames);
        let (start, dense) = match cfg.stride {
            Stride::Fixed(stride) => (k * stride, stride == 1),
            Stride::Mixed {
                sparse_stride,
                dense_ratio,
            } => {
                if mixed.as_ref().is_none_or(|(r, _)| *r != run) {
                    let take = MixedTake::draw(
                        n,
                        sparse_stride,
                        dense_ratio,
                        cfg.seed,
                        cfg.epoch,
                        file as u32,
                        &mut seen,
                    );
                    mixed = Some((run, take));
                }
                let take = &mixed.as_ref().expect("set above").1;
                if k >= take.len() {
                    return Err(PlanError(format!(
                        "run {run} (file {file}) has {} windows, not {}",
                        take.len(),
                        k + 1
                    )));
                }
                take.window(k)
            }
        };
        if start >= n {
            return Err(PlanError(format!("run {run} (file {file}) has no window {k}")));
        }
        out.file.push(file as u32);
        out.start_frame.push(start);
        out.dense.push(dense);
    }
    Ok(out)
}

/// `shuffle="windows"`: a seeded bijection of `0..total`, computed per index (no table). A
/// keyed Feistel network on the smallest power of two >= total, walked until it lands inside
/// (cycle walking: each step stays on the input's cycle, so the walk ends and stays bijective;
/// fewer than two steps on average).
#[derive(Debug, Clone, PartialEq)]
pub struct WindowOrder {
    total: u64,
    bits: u32,
    keys: [u64; WindowOrder::ROUNDS],
}

impl WindowOrder {
    const ROUNDS: usize = 8;

    pub fn new(total: u64, seed: u64, epoch: u64) -> WindowOrder {
        let bits = if total <= 1 {
            0
        } else {
            64 - (total - 1).leading_zeros()
        };
        let mut rng = SplitMix64::keyed(STREAM_WINDOW_ORDER, &[seed, epoch]);
        let mut keys = [0u64; WindowOrder::ROUNDS];
        for key in keys.iter_mut() {
            *key = rng.next_u64();
        }
        WindowOrder { total, bits, keys }
    }

    /// One pass of the network over `0..2^bits`: each round splits x into a high part of `a`
    /// bits and a low part of `b` bits and outputs (low, high ^ F(low)), so the halves may
    /// differ by a bit (any power of two works) and swap roles every round.
    fn encrypt(&self, mut x: u64) -> u64 {
        let mask = |bits: u32| (1u64 << bits) - 1;
        let (mut a, mut b) = (self.bits / 2, self.bits - self.bits / 2);
        for key in self.keys {
            let (high, low) = (x >> b, x & mask(b));
            x = (low << a) | ((high ^ mix(low ^ key)) & mask(a));
            std::mem::swap(&mut a, &mut b);
        }
        x
    }

    /// The base index that epoch position `index` (< total) delivers.
    pub fn get(&self, index: u64) -> u64 {
        assert!(index < self.total, "index {index} is not in 0..{}", self.total);
        let mut x = self.encrypt(index);
        while x >= self.total {
            x = self.encrypt(x);
        }
        x
    }
}

/// Rank `rank`'s share of an epoch of `total` windows as (start, len) in the padded index
/// space, where index i stands for window `i % total`. Shares are contiguous runs of the
/// epoch order; all ranks get the same length. Without `drop_uneven` the short ranks are
/// padded with windows from the start of the epoch (as DistributedSampler does); with it
/// the remainder is dropped.
pub fn rank_share(total: u64, rank: u64, world: u64, drop_uneven: bool) -> (u64, u64) {
    assert!(world > 0 && rank < world, "rank must be in 0..world_size");
    if total == 0 {
        return (0, 0);
    }
    let per = if drop_uneven {
        total / world
    } else {
        total.div_ceil(world)
    };
    (rank * per, per)
}

/// Worker `worker`'s contiguous block of a run of `len` windows: (offset, len). Sizes differ
/// by at most one, the first workers taking the extra windows.
pub fn worker_block(len: u64, worker: u64, workers: u64) -> (u64, u64) {
    assert!(workers > 0 && worker < workers, "worker must be in 0..num_workers");
    let base = len / workers;
    let extra = len % workers;
    let offset = worker * base + worker.min(extra);
    (offset, base + u64::from(worker < extra))
}

/// Splits files (given by their window counts, in epoch order) across ranks so that window
/// counts are as even as possible: each file goes to the rank with the fewest windows so far
/// (lowest rank on ties). Returns each rank's files in epoch order.
pub fn assign_files_to_ranks(window_counts: &[u64], world: usize) -> Vec<Vec<usize>> {
    assert!(world > 0);
    let mut load = vec![0u64; world];
    let mut ranks = vec![Vec::new(); world];
    for (i, &count) in window_counts.iter().enumerate() {
        let target = (0..world).min_by_key(|&r| (load[r], r)).unwrap();
        load[target] += count;
        ranks[target].push(i);
    }
    ranks
}

/// Temporal-state lanes: slot b of every batch follows one file window after window and takes
/// the next file from the queue at the step its file is exhausted (lower slots first at the
/// same step). Returns, per segment (window counts in queue order), the lane and the step
/// at which it starts (None for a segment without windows); steps = max(start + count).
pub fn lane_schedule(counts: &[u64], lanes: usize) -> Vec<Option<(usize, u64)>> {
    assert!(lanes > 0, "lanes must be positive");
    let mut free: BinaryHeap<Reverse<(u64, usize)>> = (0..lanes).map(|lane| Reverse((0, lane))).collect();
    counts
        .iter()
        .map(|&count| {
            if count == 0 {
                return None;
            }
            let Reverse((step, lane)) = free.pop().expect("one entry per lane");
            free.push(Reverse((step + count, lane)));
            Some((lane, step))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The former full plan (25 bytes per window), kept as the reference the runs must match.
    #[derive(Debug, Default, PartialEq)]
    struct FullPlan {
        file: Vec<u32>,
        start_frame: Vec<u64>,
        dense: Vec<bool>,
    }

    fn reference_file_windows(frames: u64, file_index: u32, cfg: &PlanConfig) -> (Vec<u64>, Vec<bool>) {
        let n = positions(frames, cfg.window_frames);
        match cfg.stride {
            Stride::Fixed(stride) => {
                let starts: Vec<u64> = (0..n).step_by(stride as usize).collect();
                let dense = vec![stride == 1; starts.len()];
                (starts, dense)
            }
            Stride::Mixed {
                sparse_stride,
                dense_ratio,
            } => {
                let draws = ((dense_ratio * n as f64).floor() as u64).min(n);
                let mut rng = SplitMix64::keyed(STREAM_DENSE_DRAW, &[cfg.seed, cfg.epoch, file_index as u64]);
                let mut mark = vec![0u8; n as usize];
                for p in (0..n).step_by(sparse_stride as usize) {
                    mark[p as usize] = 1;
                }
                let mut drawn = vec![false; n as usize];
                for j in (n - draws)..n {
                    let t = rng.below(j + 1);
                    let pick = if drawn[t as usize] { j } else { t };
                    drawn[pick as usize] = true;
                    mark[pick as usize] = 2;
                }
                let mut starts = Vec::new();
                let mut dense = Vec::new();
                for (p, &m) in mark.iter().enumerate() {
                    if m != 0 {
                        starts.push(p as u64);
                        dense.push(m == 2);
                    }
                }
                (starts, dense)
            }
        }
    }

    fn reference_plan(frames: &[u64], cfg: &PlanConfig) -> FullPlan {
        let mut plan = FullPlan::default();
        for file in file_order(frames.len(), cfg.seed, cfg.epoch, cfg.shuffle_files) {
            let (starts, dense) = reference_file_windows(frames[file as usize], file, cfg);
            plan.file.extend(std::iter::repeat_n(file, starts.len()));
            plan.start_frame.extend(starts);
            plan.dense.extend(dense);
        }
        plan
    }

    /// The former lane table: row-major [steps, lanes] plan indices (-1: invalid) and resets.
    fn reference_lanes(segments: &[(usize, usize)], lanes: usize) -> (usize, Vec<i64>, Vec<bool>) {
        let mut queue = segments.iter().filter(|s| s.1 > 0);
        let mut slots = vec![(0usize, 0usize); lanes];
        let (mut index, mut reset, mut steps) = (Vec::new(), Vec::new(), 0);
        loop {
            let mut any_valid = false;
            let row = index.len();
            for slot in slots.iter_mut() {
                let mut starts_file = false;
                if slot.1 == 0 {
                    if let Some(&(first, count)) = queue.next() {
                        *slot = (first, count);
                        starts_file = true;
                    }
                }
                if slot.1 > 0 {
                    index.push(slot.0 as i64);
                    reset.push(starts_file);
                    slot.0 += 1;
                    slot.1 -= 1;
                    any_valid = true;
                } else {
                    index.push(-1);
                    reset.push(false);
                }
            }
            if !any_valid {
                index.truncate(row);
                reset.truncate(row);
                break;
            }
            steps += 1;
        }
        (steps, index, reset)
    }

    /// Every window of the runs, looked up by index.
    fn lazy_plan(frames: &[u64], cfg: &PlanConfig) -> FullPlan {
        let runs = plan_runs(frames, cfg);
        let files: Vec<i64> = runs.file.iter().map(|&f| f as i64).collect();
        let ends: Vec<i64> = runs
            .count
            .iter()
            .scan(0i64, |sum, &c| {
                *sum += c as i64;
                Some(*sum)
            })
            .collect();
        let total = ends.last().copied().unwrap_or(0);
        let indices: Vec<i64> = (0..total).collect();
        let w = windows_at(frames, &files, &ends, &indices, cfg).unwrap();
        FullPlan {
            file: w.file,
            start_frame: w.start_frame,
            dense: w.dense,
        }
    }

    fn cfg(stride: Stride) -> PlanConfig {
        PlanConfig {
            window_frames: 10,
            stride,
            seed: 3,
            epoch: 0,
            shuffle_files: false,
        }
    }

    fn mixed(sparse_stride: u64, dense_ratio: f64) -> Stride {
        Stride::Mixed {
            sparse_stride,
            dense_ratio,
        }
    }

    #[test]
    fn fixed_stride_includes_the_last_full_window() {
        let starts = |frames: u64, stride: u64| lazy_plan(&[frames], &cfg(Stride::Fixed(stride))).start_frame;
        assert_eq!(starts(20, 1), (0..=10).collect::<Vec<u64>>());
        assert_eq!(starts(20, 5), vec![0, 5, 10]);
        assert_eq!(starts(22, 4), vec![0, 4, 8, 12]);
        assert_eq!(starts(10, 3), vec![0]);
        assert!(starts(9, 1).is_empty());
        assert!(lazy_plan(&[20], &cfg(Stride::Fixed(1))).dense.iter().all(|&d| d));
        assert!(lazy_plan(&[20], &cfg(Stride::Fixed(5))).dense.iter().all(|&d| !d));
    }

    #[test]
    fn mixed_draws_a_share_without_duplicates() {
        let c = cfg(mixed(8, 0.1));
        // 1009 frames -> 1000 positions -> 100 draws + 125 grid windows.
        let plan = lazy_plan(&[1009], &c);
        let (starts, dense) = (plan.start_frame, plan.dense);
        assert!(starts.windows(2).all(|w| w[0] < w[1]), "sorted, unique");
        assert_eq!(dense.iter().filter(|&&d| d).count(), 100);
        for g in (0..1000).step_by(8) {
            assert!(starts.contains(&g));
        }
        for (s, d) in starts.iter().zip(&dense) {
            if !d {
                assert_eq!(s % 8, 0);
            }
        }
        let on_grid_draws = starts.iter().zip(&dense).filter(|(s, d)| **d && *s % 8 == 0).count();
        assert_eq!(starts.len(), 125 + 100 - on_grid_draws);
        // Reproducible per (seed, epoch, file); different across epochs and files.
        let mut seen = Vec::new();
        let take = |file: u32, epoch: u64, seen: &mut Vec<bool>| MixedTake::draw(1000, 8, 0.1, 3, epoch, file, seen);
        assert_eq!(take(4, 0, &mut seen), take(4, 0, &mut seen));
        assert_ne!(take(4, 0, &mut seen), take(5, 0, &mut seen));
        assert_ne!(take(4, 0, &mut seen), take(4, 1, &mut seen));
        assert!(seen.iter().all(|&s| !s), "scratch left clean");
    }

    #[test]
    fn mixed_full_ratio_takes_every_position() {
        let plan = lazy_plan(&[30], &cfg(mixed(4, 1.0)));
        assert_eq!(plan.start_frame, (0..21).collect::<Vec<u64>>());
        assert!(plan.dense.iter().all(|&d| d));
    }

    #[test]
    fn runs_follow_the_shuffled_file_order() {
        let frames = [12u64, 0, 15, 10, 11];
        let c = PlanConfig {
            shuffle_files: true,
            ..cfg(Stride::Fixed(1))
        };
        let runs = plan_runs(&frames, &c);
        let order = file_order(5, 3, 0, true);
        let expected: Vec<u32> = order.iter().copied().filter(|&f| f != 1).collect();
        assert_eq!(runs.file, expected);
        let counts: Vec<u64> = runs.file.iter().map(|&f| [3, 0, 6, 1, 2][f as usize]).collect();
        assert_eq!(runs.count, counts);
        assert_ne!(file_order(50, 3, 0, true), file_order(50, 3, 1, true));
        assert_eq!(file_order(4, 3, 0, false), vec![0, 1, 2, 3]);
    }

    #[test]
    fn lookups_outside_the_plan_are_errors() {
        let c = cfg(Stride::Fixed(2));
        assert!(windows_at(&[20], &[0], &[6], &[6], &c).is_err());
        assert!(windows_at(&[20], &[0], &[6], &[-1], &c).is_err());
        assert!(windows_at(&[20], &[3], &[6], &[0], &c).is_err(), "file out of range");
        assert!(
            windows_at(&[20], &[0], &[7], &[6], &c).is_err(),
            "more windows than the take has"
        );
        assert!(windows_at(&[20], &[0, 0], &[6], &[0], &c).is_err(), "lengths differ");
        let m = cfg(mixed(4, 0.5));
        assert!(windows_at(&[30], &[0], &[100], &[99], &m).is_err());
        assert_eq!(
            windows_at(&[20], &[0], &[6], &[5, 0], &c).unwrap().start_frame,
            vec![10, 0]
        );
    }

    fn check_order(total: u64, seed: u64, epoch: u64) {
        let order = WindowOrder::new(total, seed, epoch);
        let mut seen = vec![false; total as usize];
        for i in 0..total {
            let j = order.get(i);
            assert!(
                j < total && !seen[j as usize],
                "total {total}: {i} -> {j} twice or outside"
            );
            seen[j as usize] = true;
        }
    }

    #[test]
    fn window_order_is_a_bijection() {
        for total in [
            0u64, 1, 2, 3, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33, 100, 255, 256, 257, 1000, 1023, 1025, 100_000,
        ] {
            for seed in 0..3 {
                check_order(total, seed, seed + 1);
            }
        }
        let a: Vec<u64> = (0..1000).map(|i| WindowOrder::new(1000, 1, 2).get(i)).collect();
        let b: Vec<u64> = (0..1000).map(|i| WindowOrder::new(1000, 1, 3).get(i)).collect();
        assert_ne!(a, b);
        assert_ne!(a, (0..1000).collect::<Vec<u64>>());
        // Large totals: no table, any index.
        let big = WindowOrder::new(1 << 40, 5, 0);
        assert!(big.get((1 << 40) - 1) < 1 << 40);
    }

    #[test]
    fn lanes_follow_files_and_cover_everything_once() {
        // Files of 3, 1, 2 windows; two lanes: lane 0 plays the first, lane 1 the second then
        // (from step 1) the third.
        assert_eq!(
            lane_schedule(&[3, 1, 2], 2),
            vec![Some((0, 0)), Some((1, 0)), Some((1, 1))]
        );
        assert_eq!(lane_schedule(&[1], 3), vec![Some((0, 0))]);
        assert_eq!(lane_schedule(&[0, 2], 1), vec![None, Some((0, 0))]);
        assert!(lane_schedule(&[], 2).is_empty());
    }

    #[test]
    fn rank_shares_pad_or_drop() {
        // 10 windows, 4 ranks: 3 each, padded with windows 0 and 1.
        let shares: Vec<_> = (0..4).map(|r| rank_share(10, r, 4, false)).collect();
        assert_eq!(shares, vec![(0, 3), (3, 3), (6, 3), (9, 3)]);
        let shares: Vec<_> = (0..4).map(|r| rank_share(10, r, 4, true)).collect();
        assert_eq!(shares, vec![(0, 2), (2, 2), (4, 2), (6, 2)]);
        assert_eq!(rank_share(0, 1, 2, false), (0, 0));
    }

    #[test]
    fn worker_blocks_tile_the_share() {
        for len in 0..20 {
            for workers in 1..5 {
                let mut next = 0;
                for w in 0..workers {
                    let (off, n) = worker_block(len, w, workers);
                    assert_eq!(off, next);
                    next += n;
                }
                assert_eq!(next, len);
            }
        }
    }

    #[test]
    fn files_balance_across_ranks() {
        let ranks = assign_files_to_ranks(&[10, 3, 3, 3, 3, 1], 2);
        assert_eq!(ranks, vec![vec![0, 5], vec![1, 2, 3, 4]]);
    }

    fn stride_strategy() -> impl Strategy<Value = Stride> {
        prop_oneof![
            (1u64..12).prop_map(Stride::Fixed),
            (1u64..12, 0.0f64..=1.0).prop_map(|(s, r)| mixed(s, r)),
            (1u64..12).prop_map(|s| mixed(s, 1.0)),
            (1u64..12).prop_map(|s| mixed(s, 0.0)),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        #[test]
        fn runs_and_lookups_equal_the_full_plan(
            frames in prop::collection::vec(0u64..120, 0..12),
            window in 1u64..40,
            stride in stride_strategy(),
            seed in 0u64..1000,
            epoch in 0u64..50,
            shuffle_files: bool,
        ) {
            let c = PlanConfig { window_frames: window, stride, seed, epoch, shuffle_files };
            let expected = reference_plan(&frames, &c);
            prop_assert_eq!(lazy_plan(&frames, &c), expected);
            // Any order of indices (as a window shuffle asks): the same windows.
            let runs = plan_runs(&frames, &c);
            let files: Vec<i64> = runs.file.iter().map(|&f| f as i64).collect();
            let ends: Vec<i64> = runs.count.iter().scan(0i64, |sum, &n| { *sum += n as i64; Some(*sum) }).collect();
            let total = ends.last().copied().unwrap_or(0) as u64;
            let order = WindowOrder::new(total, seed, epoch);
            let indices: Vec<i64> = (0..total).map(|i| order.get(i) as i64).collect();
            let got = windows_at(&frames, &files, &ends, &indices, &c).unwrap();
            let expected = reference_plan(&frames, &c);
            for (k, &i) in indices.iter().enumerate() {
                let i = i as usize;
                prop_assert_eq!(
                    (got.file[k], got.start_frame[k], got.dense[k]),
                    (expected.file[i], expected.start_frame[i], expected.dense[i])
                );
            }
        }

        #[test]
        fn lane_schedule_equals_the_lane_table(
            counts in prop::collection::vec(0usize..9, 0..14),
            lanes in 1usize..6,
        ) {
            let mut segments = Vec::new();
            let mut first = 0;
            for &c in &counts {
                segments.push((first, c));
                first += c;
            }
            let (steps, index, reset) = reference_lanes(&segments, lanes);
            let counts64: Vec<u64> = counts.iter().map(|&c| c as u64).collect();
            let schedule = lane_schedule(&counts64, lanes);
            let mut got_index = vec![-1i64; steps * lanes];
            let mut got_reset = vec![false; steps * lanes];
            let mut got_steps = 0;
            for (&(first, count), slot) in segments.iter().zip(&schedule) {
                let Some((lane, start)) = *slot else { prop_assert_eq!(count, 0); continue };
                got_steps = got_steps.max(start as usize + count);
                for k in 0..count {
                    let cell = (start as usize + k) * lanes + lane;
                    prop_assert!(cell < got_index.len());
                    prop_assert_eq!(got_index[cell], -1, "slot used twice");
                    got_index[cell] = (first + k) as i64;
                    got_reset[cell] = k == 0;
                }
            }
            prop_assert_eq!(got_steps, steps);
            prop_assert_eq!(got_index, index);
            prop_assert_eq!(got_reset, reset);
        }
    }
}
