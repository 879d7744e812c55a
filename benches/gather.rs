//! Window gather throughput (windows/s). Run: `cargo bench --bench gather`.
//!
//! Dense stride-1 batches of 4 windows of 136,448 samples (256 frames at 16 kHz / 30 fps)
//! from a 5-minute take, copied into one batch buffer, on 1 and 2 threads; plus the
//! blendshape side ([256, 52] per window).

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use koemorph_data::gather::gather_windows;

const WINDOW_SAMPLES: usize = 256 * 533;
const TAKE_SAMPLES: usize = 300 * 16_000;

fn bench_gather(c: &mut Criterion) {
    let take: Vec<f32> = (0..TAKE_SAMPLES).map(|i| (i % 1000) as f32 * 1e-3).collect();
    let blendshapes: Vec<f32> = (0..9000 * 52).map(|i| (i % 97) as f32 * 1e-2).collect();
    let sources: Vec<&[f32]> = vec![&take];
    let bs_sources: Vec<&[f32]> = vec![&blendshapes];
    let batch = 4usize;
    let mut group = c.benchmark_group("gather_dense_stride1");
    group.sample_size(30);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(3));
    for (label, windows) in [("batch4", batch), ("chunk32", 32)] {
        group.throughput(Throughput::Elements(windows as u64));
        let ids = vec![0i64; windows];
        let mut out = vec![0f32; windows * WINDOW_SAMPLES];
        for threads in [1usize, 2] {
            let mut step = 0i64;
            group.bench_function(format!("audio_{label}_threads{threads}"), |b| {
                b.iter(|| {
                    // Consecutive stride-1 windows, walking through the take like an epoch does.
                    let first = step % 8000;
                    step += windows as i64;
                    let starts: Vec<i64> = (0..windows as i64).map(|k| (first + k) * 533).collect();
                    gather_windows(&sources, &ids, &starts, WINDOW_SAMPLES, black_box(&mut out), threads).unwrap();
                })
            });
        }
        let mut bs_out = vec![0f32; windows * 256 * 52];
        let mut step = 0i64;
        group.bench_function(format!("blendshapes_{label}"), |b| {
            b.iter(|| {
                let first = step % 8000;
                step += windows as i64;
                let starts: Vec<i64> = (0..windows as i64).map(|k| (first + k) * 52).collect();
                gather_windows(&bs_sources, &ids, &starts, 256 * 52, black_box(&mut bs_out), 1).unwrap();
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_gather);
criterion_main!(benches);
