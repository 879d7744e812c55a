//! Epoch window plans: which windows an epoch contains, in which order, and how they are
//! split across ranks, DataLoader workers and temporal-state lanes.
//!
//! A plan is a pure function of (usable frames per file, window, stride, seed, epoch): every
//! process that builds it gets the same arrays, so sharding, determinism and exact resume
//! are index arithmetic on the plan.

use crate::rng::SplitMix64;

// Independent random streams, so that changing one use never shifts another.
const STREAM_FILE_ORDER: u64 = 1;
const STREAM_DENSE_DRAW: u64 = 2;

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

/// The windows of one epoch in delivery order: files in (shuffled) epoch order, each file's
/// windows contiguous and in temporal order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EpochPlan {
    pub file: Vec<u32>,
    pub start_frame: Vec<u64>,
    pub dense: Vec<bool>,
}

impl EpochPlan {
    pub fn len(&self) -> usize {
        self.file.len()
    }

    pub fn is_empty(&self) -> bool {
        self.file.is_empty()
    }

    /// (first plan index, window count) of each file's run, in plan order.
    pub fn file_segments(&self) -> Vec<(usize, usize)> {
        let mut segments = Vec::new();
        let mut begin = 0;
        for i in 1..=self.file.len() {
            if i == self.file.len() || self.file[i] != self.file[begin] {
                segments.push((begin, i - begin));
                begin = i;
            }
        }
        segments
    }
}

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

/// Start frames and dense flags of one file's windows, in temporal order.
pub fn file_windows(frames: u64, file_index: u32, cfg: &PlanConfig) -> (Vec<u64>, Vec<bool>) {
    let n = positions(frames, cfg.window_frames);
    match cfg.stride {
        Stride::Fixed(stride) => {
            assert!(stride > 0, "stride must be positive");
            let starts: Vec<u64> = (0..n).step_by(stride as usize).collect();
            let dense = vec![stride == 1; starts.len()];
            (starts, dense)
        }
        Stride::Mixed {
            sparse_stride,
            dense_ratio,
        } => {
            assert!(sparse_stride > 0, "stride must be positive");
            let draws = ((dense_ratio * n as f64).floor() as u64).min(n);
            let mut rng = SplitMix64::keyed(STREAM_DENSE_DRAW, &[cfg.seed, cfg.epoch, file_index as u64]);
            // 0 = not chosen, 1 = sparse grid, 2 = dense draw (a draw on the grid stays 2).
            let mut mark = vec![0u8; n as usize];
            for p in (0..n).step_by(sparse_stride as usize) {
                mark[p as usize] = 1;
            }
            // Floyd's algorithm: `draws` distinct positions, O(draws) random numbers.
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

/// The whole epoch's plan. `frames[i]` is file i's usable frame count (0 for skipped files).
pub fn plan_epoch(frames: &[u64], cfg: &PlanConfig) -> EpochPlan {
    let mut plan = EpochPlan::default();
    for file in file_order(frames.len(), cfg.seed, cfg.epoch, cfg.shuffle_files) {
        let (starts, dense) = file_windows(frames[file as usize], file, cfg);
        plan.file.extend(std::iter::repeat_n(file, starts.len()));
        plan.start_frame.extend(starts);
        plan.dense.extend(dense);
    }
    plan
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
/// the next file from the queue when its file is exhausted.
#[derive(Debug, Clone, PartialEq)]
pub struct LanePlan {
    pub steps: usize,
    pub lanes: usize,
    /// Row-major [steps, lanes]: plan index of the window in that slot, or -1 (invalid slot).
    pub index: Vec<i64>,
    /// Row-major [steps, lanes]: the slot starts a new file (reset its temporal state).
    pub reset: Vec<bool>,
}

/// Builds lanes over file segments `(first plan index, window count)` taken in order.
pub fn lane_plan(segments: &[(usize, usize)], lanes: usize) -> LanePlan {
    assert!(lanes > 0, "lanes must be positive");
    let mut queue = segments.iter().filter(|s| s.1 > 0);
    // Per slot: (next plan index, windows left).
    let mut slots = vec![(0usize, 0usize); lanes];
    let mut index = Vec::new();
    let mut reset = Vec::new();
    let mut steps = 0;
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
    LanePlan {
        steps,
        lanes,
        index,
        reset,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(stride: Stride) -> PlanConfig {
        PlanConfig {
            window_frames: 10,
            stride,
            seed: 3,
            epoch: 0,
            shuffle_files: false,
        }
    }

    #[test]
    fn fixed_stride_includes_the_last_full_window() {
        let (starts, dense) = file_windows(20, 0, &cfg(Stride::Fixed(1)));
        assert_eq!(starts, (0..=10).collect::<Vec<u64>>());
        assert!(dense.iter().all(|&d| d));
        let (starts, dense) = file_windows(20, 0, &cfg(Stride::Fixed(5)));
        assert_eq!(starts, vec![0, 5, 10]);
        assert!(dense.iter().all(|&d| !d));
        let (starts, _) = file_windows(22, 0, &cfg(Stride::Fixed(4)));
        assert_eq!(starts, vec![0, 4, 8, 12]);
        assert_eq!(file_windows(10, 0, &cfg(Stride::Fixed(3))).0, vec![0]);
        assert!(file_windows(9, 0, &cfg(Stride::Fixed(1))).0.is_empty());
    }

    #[test]
    fn mixed_draws_a_share_without_duplicates() {
        let c = cfg(Stride::Mixed {
            sparse_stride: 8,
            dense_ratio: 0.1,
        });
        // 1009 frames -> 1000 positions -> 100 draws + 125 grid windows.
        let (starts, dense) = file_windows(1009, 4, &c);
        assert!(starts.windows(2).all(|w| w[0] < w[1]), "sorted, unique");
        assert_eq!(dense.iter().filter(|&&d| d).count(), 100);
        let grid: Vec<u64> = (0..1000).step_by(8).collect();
        for g in &grid {
            assert!(starts.contains(g));
        }
        for (s, d) in starts.iter().zip(&dense) {
            if !d {
                assert_eq!(s % 8, 0);
            }
        }
        let on_grid_draws = starts.iter().zip(&dense).filter(|(s, d)| **d && *s % 8 == 0).count();
        assert_eq!(starts.len(), 125 + 100 - on_grid_draws);
        // Reproducible per (seed, epoch, file); different across epochs and files.
        assert_eq!(file_windows(1009, 4, &c), (starts.clone(), dense.clone()));
        assert_ne!(file_windows(1009, 5, &c).0, starts);
        assert_ne!(file_windows(1009, 4, &PlanConfig { epoch: 1, ..c }).0, starts);
    }

    #[test]
    fn mixed_full_ratio_takes_every_position() {
        let c = cfg(Stride::Mixed {
            sparse_stride: 4,
            dense_ratio: 1.0,
        });
        let (starts, dense) = file_windows(30, 0, &c);
        assert_eq!(starts, (0..21).collect::<Vec<u64>>());
        assert!(dense.iter().all(|&d| d));
    }

    #[test]
    fn epoch_plan_groups_files_in_shuffled_order() {
        let frames = [12u64, 0, 15, 10, 11];
        let c = PlanConfig {
            shuffle_files: true,
            ..cfg(Stride::Fixed(1))
        };
        let plan = plan_epoch(&frames, &c);
        assert_eq!(plan.len(), 3 + 6 + 1 + 2);
        let order = file_order(5, 3, 0, true);
        let files_in_plan: Vec<u32> = plan.file_segments().iter().map(|&(b, _)| plan.file[b]).collect();
        let expected: Vec<u32> = order.iter().copied().filter(|&f| f != 1).collect();
        assert_eq!(files_in_plan, expected);
        assert_ne!(file_order(50, 3, 0, true), file_order(50, 3, 1, true));
        assert_eq!(file_order(4, 3, 0, false), vec![0, 1, 2, 3]);
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

    #[test]
    fn lanes_follow_files_and_cover_everything_once() {
        // Files of 3, 1, 2 windows starting at plan indices 0, 3, 4; two lanes.
        let lp = lane_plan(&[(0, 3), (3, 1), (4, 2)], 2);
        assert_eq!(lp.steps, 3);
        assert_eq!(lp.index, vec![0, 3, 1, 4, 2, 5]);
        assert_eq!(lp.reset, vec![true, true, false, true, false, false]);
        let lp = lane_plan(&[(0, 1)], 3);
        assert_eq!(lp.index, vec![0, -1, -1]);
        assert_eq!(lane_plan(&[], 2).steps, 0);
    }
}
