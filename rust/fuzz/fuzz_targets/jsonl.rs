//! Fuzz target for the blendshape JSONL parser.
//!
//! Run (from the repository root; needs nightly + cargo-fuzz):
//!
//!     cargo +nightly fuzz run jsonl --fuzz-dir rust/fuzz
//!
//! Without nightly, a coverage-guided build (no ASan) also works on stable:
//!
//!     RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
//!       -Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
//!       -Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks" \
//!     cargo build --release --manifest-path rust/fuzz/Cargo.toml --target x86_64-unknown-linux-gnu
//!     rust/fuzz/target/x86_64-unknown-linux-gnu/release/jsonl -max_total_time=120
//!
//! Checks, for arbitrary bytes: no panic; on success the output is well formed (52 finite f32
//! per row, 9 finite pose values per row or no pose, finite non-decreasing timestamps) and
//! re-serialising it parses back to the same frames; on failure the error names a line inside the input (or is "no frames" without one);
//! the single-threaded and multi-threaded parsers agree exactly.
#![no_main]

use koemorph_data::arkit::{NUM_BLENDSHAPES, NUM_POSE};
use koemorph_data::jsonl::{parse_jsonl_with_threads, Blendshapes};
use libfuzzer_sys::fuzz_target;

fn render(bs: &Blendshapes) -> String {
    let mut s = String::new();
    for (r, t) in bs.timestamps.iter().enumerate() {
        let row = &bs.values[r * NUM_BLENDSHAPES..(r + 1) * NUM_BLENDSHAPES];
        let vals: Vec<String> = row.iter().map(|v| format!("{v}")).collect();
        let pose = match &bs.pose {
            Some(pose) => {
                let p: Vec<String> = pose[r * NUM_POSE..(r + 1) * NUM_POSE]
                    .iter()
                    .map(|v| format!("{v}"))
                    .collect();
                format!(",\"pose\":[{}]", p.join(","))
            }
            None => String::new(),
        };
        s.push_str(&format!(
            "{{\"timestamp\":{t:?},\"blendshapes\":[{}]{pose}}}\n",
            vals.join(",")
        ));
    }
    s
}

fuzz_target!(|data: &[u8]| {
    let single = parse_jsonl_with_threads(data, 1);
    // Inputs below the parallel threshold take the serial path either way; this still checks
    // that the entry points agree.
    let multi = parse_jsonl_with_threads(data, 2);
    assert_eq!(single, multi);
    match single {
        Ok(bs) => {
            assert!(bs.rows() > 0);
            assert_eq!(bs.values.len(), bs.rows() * NUM_BLENDSHAPES);
            assert!(bs.values.iter().all(|v| v.is_finite()));
            if let Some(pose) = &bs.pose {
                assert_eq!(pose.len(), bs.rows() * NUM_POSE);
                assert!(pose.iter().all(|v| v.is_finite()));
            }
            assert!(bs.timestamps.iter().all(|t| t.is_finite()));
            assert!(bs.timestamps.windows(2).all(|w| w[0] <= w[1]));
            let again = parse_jsonl_with_threads(render(&bs).as_bytes(), 1).expect("re-parse");
            assert_eq!(again.timestamps, bs.timestamps);
            assert_eq!(again.values, bs.values);
            assert_eq!(again.pose, bs.pose);
        }
        Err(e) => match e.line {
            Some(line) => {
                let lines = data.iter().filter(|&&b| b == b'\n').count() + 1;
                assert!(line >= 1 && line <= lines, "line {line} of {lines}");
            }
            None => assert_eq!(e.message, "no frames"),
        },
    }
});
