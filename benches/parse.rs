//! Blendshape JSONL parse throughput (MB/s). Run: `cargo bench --bench parse`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use koemorph_data::jsonl::{parse_jsonl, parse_jsonl_with_threads};

/// ~5 MB of realistic lines: `{"timestamp": 12.3456, "blendshapes": [0.123456, ... 52]}`.
fn make_input(target_bytes: usize) -> Vec<u8> {
    let mut out = String::with_capacity(target_bytes + 1024);
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    let mut row = 0usize;
    while out.len() < target_bytes {
        out.push_str(&format!(
            "{{\"timestamp\": {:.4}, \"blendshapes\": [",
            row as f64 / 60.0
        ));
        for k in 0..52 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if k > 0 {
                out.push_str(", ");
            }
            out.push_str(&format!("{:.6}", (x % 1_000_000) as f64 / 1e6));
        }
        out.push_str("]}\n");
        row += 1;
    }
    out.into_bytes()
}

fn bench_parse(c: &mut Criterion) {
    let input = make_input(5 << 20);
    let rows = parse_jsonl(&input).expect("valid input").rows();
    let threads = koemorph_data::pool::threads(); // what parse_jsonl uses
    let mut group = c.benchmark_group(format!("parse_jsonl_{}MB_{rows}rows", input.len() >> 20));
    group.throughput(Throughput::Bytes(input.len() as u64));
    group.sample_size(20);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(4));
    group.bench_function(format!("all_threads_{threads}"), |b| {
        b.iter(|| parse_jsonl(black_box(&input)).unwrap())
    });
    group.bench_function("single_thread", |b| {
        b.iter(|| parse_jsonl_with_threads(black_box(&input), 1).unwrap())
    });
    group.finish();
}

criterion_group!(benches, bench_parse);
criterion_main!(benches);
