//! Unit and property tests of the parser: fast path, serde fallback, driver.

use super::chunks::split_chunks;
use super::*;
use crate::arkit::{self, NUM_POSE};
use proptest::prelude::*;

fn row(ts: f64, vals: &[f32]) -> String {
    let v: Vec<String> = vals.iter().map(|x| format!("{x}")).collect();
    format!("{{\"timestamp\": {ts}, \"blendshapes\": [{}]}}", v.join(", "))
}

fn vals(seed: usize) -> Vec<f32> {
    (0..N).map(|k| ((seed * 31 + k * 7) % 1000) as f32 / 1000.0).collect()
}

/// One line through the fast path alone: (row, 52 values, 9 pose values).
fn fast_line(line: &[u8], columns: Columns<'_>) -> Option<(LineRow, Vec<f32>, Vec<f32>)> {
    let (mut values, mut pose) = ([0f32; N], [0f32; NUM_POSE]);
    let mut slots = RowSlots {
        values: &mut values,
        pose: &mut pose,
    };
    let row = fast::parse_line(line, &mut slots, columns)?;
    Some((row, values.to_vec(), pose.to_vec()))
}

/// One line through the serde_json fallback alone.
fn slow_line(line: &[u8], columns: Columns<'_>) -> Result<(LineRow, Vec<f32>, Vec<f32>), String> {
    let (mut values, mut pose) = ([0f32; N], [0f32; NUM_POSE]);
    let mut slots = RowSlots {
        values: &mut values,
        pose: &mut pose,
    };
    let row = slow::parse_line(line, &mut slots, columns)?;
    Ok((row, values.to_vec(), pose.to_vec()))
}

fn parse(s: &str) -> Result<Blendshapes, ParseError> {
    parse_jsonl_with_threads(s.as_bytes(), 1)
}

fn err(s: &str) -> ParseError {
    parse(s).expect_err("expected an error")
}

fn numbers(n: usize) -> String {
    (0..n).map(|k| format!("0.{k}")).collect::<Vec<_>>().join(",")
}

#[test]
fn line_of_row_skips_blank_lines() {
    let doc = b"\n{\"a\":1}\r\n  \n{\"a\":2}\n{\"a\":3}";
    assert_eq!(line_of_row(doc, 0), Some(2));
    assert_eq!(line_of_row(doc, 1), Some(4));
    assert_eq!(line_of_row(doc, 2), Some(5));
    assert_eq!(line_of_row(doc, 3), None);
    assert_eq!(line_of_row(b"x\n", 0), Some(1));
    assert_eq!(line_of_row(b"x\n", 1), None);
    assert_eq!(line_of_row(b"", 0), None);
}

#[test]
fn basic_rows() {
    let text = format!("{}\n{}\n", row(0.0, &vals(0)), row(0.0333, &vals(1)));
    let bs = parse(&text).unwrap();
    assert_eq!(bs.rows(), 2);
    assert_eq!(bs.values.len(), 2 * N);
    assert_eq!(bs.timestamps, vec![0.0, 0.0333]);
    assert_eq!(&bs.values[..N], &vals(0)[..]);
    assert_eq!(&bs.values[N..], &vals(1)[..]);
}

#[test]
fn values_are_f64_then_f32() {
    let text = format!(
        "{{\"timestamp\":1,\"blendshapes\":[0.1,1e-3,-2.5E+2,123456789012345678901234,0.30000000000000004,{}]}}",
        numbers(47)
    );
    let bs = parse(&text).unwrap();
    assert_eq!(bs.timestamps, vec![1.0]);
    assert_eq!(bs.values[0], 0.1f64 as f32);
    assert_eq!(bs.values[1], 1e-3f64 as f32);
    assert_eq!(bs.values[2], -250.0);
    assert_eq!(bs.values[3], 123456789012345678901234f64 as f32);
    assert_eq!(bs.values[4], 0.30000000000000004f64 as f32);
}

#[test]
fn key_order_extra_keys_crlf_bom_blank_lines() {
    let v = numbers(N);
    let text = format!(
        "\u{FEFF}{{\"frame\": 1, \"blendshapes\": [{v}], \"head_rotation\": [0.1, -2, {{\"a\": null}}], \"timestamp\": 0.5, \"ok\": true, \"name\": \"x y\"}}\r\n\
         \r\n   \t\r\n\
         {{\"timestamp\":0.5,\"blendshapes\":[{v}],\"meta\":{{\"k\":\"caf\u{e9}\\n\"}}}}\r\n\
         \n"
    );
    let bs = parse(&text).unwrap();
    assert_eq!(bs.timestamps, vec![0.5, 0.5]);
    assert_eq!(bs.values[..N], bs.values[N..]);
    assert_eq!(bs.values[3], 0.3);
}

#[test]
fn escaped_keys_go_through_fallback() {
    let text = format!("{{\"time\\u0073tamp\": 2, \"blendshapes\": [{}]}}", numbers(N));
    let bs = parse(&text).unwrap();
    assert_eq!(bs.timestamps, vec![2.0]);
}

#[test]
fn object_form() {
    let text = "{\"timestamp\": 0, \"blendshapes\": {\"JawOpen\": 0.5, \"eyeblinkleft\": 1, \"tongueOut\": 0.25}}\n\
                {\"blendshapes\": {}, \"timestamp\": 1}\n";
    let bs = parse(text).unwrap();
    assert_eq!(bs.rows(), 2);
    let mut expect = vec![0f32; 2 * N];
    expect[17] = 0.5;
    expect[0] = 1.0;
    expect[51] = 0.25;
    assert_eq!(bs.values, expect);
}

#[test]
fn object_form_unknown_and_duplicate_names() {
    let text = format!(
        "{}\n{{\"timestamp\": 1, \"blendshapes\": {{\"jawOpen\": 0.5, \"smile\": 1}}}}\n",
        row(0.0, &vals(0))
    );
    let e = err(&text);
    assert_eq!(e.line, Some(2));
    assert!(e.message.contains("unknown blendshape name \"smile\""), "{e}");
    let e = err("{\"timestamp\": 1, \"blendshapes\": {\"jawOpen\": 0.5, \"JAWOPEN\": 1}}");
    assert_eq!(e.line, Some(1));
    assert!(e.message.contains("duplicate"), "{e}");
    let e = err("{\"timestamp\": 1, \"blendshapes\": {\"jawOpen\": \"0.5\"}}");
    assert!(e.message.contains("invalid type: string"), "{e}");
}

#[test]
fn display_format() {
    let e = ParseError {
        line: Some(7),
        message: "expected 52 blendshape values, got 51".into(),
    };
    assert_eq!(e.to_string(), "line 7: expected 52 blendshape values, got 51");
    let e = ParseError {
        line: None,
        message: "no frames".into(),
    };
    assert_eq!(e.to_string(), "no frames");
}

#[test]
fn no_frames() {
    for text in ["", "\n\n", " \r\n\t\n", "\u{FEFF}", "\u{FEFF}\r\n"] {
        let e = err(text);
        assert_eq!(
            e,
            ParseError {
                line: None,
                message: "no frames".into()
            }
        );
    }
}

/// `bad` placed on line 3 (after two good lines and a blank line) must error on line 4.
fn bad_line(bad: &str) -> ParseError {
    let text = format!(
        "{}\n{}\n\n{}\n{}\n",
        row(0.0, &vals(0)),
        row(1.0, &vals(1)),
        bad,
        row(9.0, &vals(2))
    );
    let e = err(&text);
    assert_eq!(e.line, Some(4), "{e} for {bad}");
    e
}

#[test]
fn error_kinds_with_line_numbers() {
    let good = numbers(N);
    // Wrong count.
    let e = bad_line(&format!("{{\"timestamp\": 2, \"blendshapes\": [{}]}}", numbers(51)));
    assert_eq!(e.to_string(), "line 4: expected 52 blendshape values, got 51");
    let e = bad_line(&format!("{{\"timestamp\": 2, \"blendshapes\": [{}]}}", numbers(53)));
    assert_eq!(e.message, "expected 52 blendshape values, got 53");
    let e = bad_line("{\"timestamp\": 2, \"blendshapes\": []}");
    assert_eq!(e.message, "expected 52 blendshape values, got 0");
    // Malformed JSON.
    let e = bad_line(&format!("{{\"timestamp\": 2, \"blendshapes\": [{good}]"));
    assert!(e.message.contains("invalid JSON"), "{e}");
    bad_line(&format!("{{\"timestamp\": 2, \"blendshapes\": [{good}]}} x"));
    bad_line(&format!("{{\"timestamp\": 2, \"blendshapes\": [{good},]}}"));
    bad_line(&format!("{{\"timestamp\": 2 \"blendshapes\": [{good}]}}"));
    bad_line(&format!("{{'timestamp': 2, \"blendshapes\": [{good}]}}"));
    // Not an object.
    let e = bad_line(&format!("[{good}]"));
    assert!(e.message.contains("expected a JSON object"), "{e}");
    bad_line("42");
    bad_line("\"x\"");
    bad_line("null");
    // Missing keys.
    let e = bad_line(&format!("{{\"blendshapes\": [{good}]}}"));
    assert_eq!(e.message, "missing \"timestamp\"");
    let e = bad_line("{\"timestamp\": 2}");
    assert_eq!(e.message, "missing \"blendshapes\"");
    let e = bad_line(&format!("{{\"Timestamp\": 2, \"blendshapes\": [{good}]}}"));
    assert_eq!(e.message, "missing \"timestamp\"");
    // Duplicate keys.
    bad_line(&format!(
        "{{\"timestamp\": 2, \"timestamp\": 3, \"blendshapes\": [{good}]}}"
    ));
    bad_line(&format!(
        "{{\"timestamp\": 2, \"blendshapes\": [{good}], \"blendshapes\": [{good}]}}"
    ));
    // Non-number values.
    for bad_value in ["\"0.5\"", "null", "[0.5]", "{}", "true"] {
        let e = bad_line(&format!(
            "{{\"timestamp\": 2, \"blendshapes\": [{bad_value}, {}]}}",
            numbers(51)
        ));
        assert!(e.message.contains("invalid type"), "{e}");
    }
    for bad_value in ["\"2\"", "null", "[2]"] {
        let e = bad_line(&format!("{{\"timestamp\": {bad_value}, \"blendshapes\": [{good}]}}"));
        assert!(e.message.contains("invalid type"), "{e}");
    }
    bad_line("{\"timestamp\": 2, \"blendshapes\": null}");
    bad_line("{\"timestamp\": 2, \"blendshapes\": \"abc\"}");
    // Invalid numbers (serde_json grammar).
    for bad_num in ["01", "1.", ".5", "-", "+1", "1e", "1e+", "0x10", "1.5.2", "--1", "- 1"] {
        bad_line(&format!(
            "{{\"timestamp\": 2, \"blendshapes\": [{bad_num}, {}]}}",
            numbers(51)
        ));
        bad_line(&format!("{{\"timestamp\": {bad_num}, \"blendshapes\": [{good}]}}"));
    }
    // NaN / Infinity / overflow.
    for bad_num in ["NaN", "Infinity", "-Infinity", "nan", "inf"] {
        let e = bad_line(&format!(
            "{{\"timestamp\": 2, \"blendshapes\": [{}, {bad_num}]}}",
            numbers(51)
        ));
        assert!(e.message.contains("invalid JSON"), "{e}");
        bad_line(&format!("{{\"timestamp\": {bad_num}, \"blendshapes\": [{good}]}}"));
    }
    let e = bad_line(&format!(
        "{{\"timestamp\": 2, \"blendshapes\": [{}, NaN]}}",
        numbers(51)
    ));
    assert!(e.message.contains("NaN/Infinity"), "{e}");
    for bad_num in ["1e999", "-1e999", "1e39", "-3.5e38"] {
        let e = bad_line(&format!(
            "{{\"timestamp\": 2, \"blendshapes\": [{}, {bad_num}]}}",
            numbers(51)
        ));
        assert!(e.message.contains("finite"), "{e}");
    }
    let e = bad_line(&format!("{{\"timestamp\": 1e999, \"blendshapes\": [{good}]}}"));
    assert!(e.message.contains("finite"), "{e}");
    // A timestamp of 1e39 is a fine f64.
    let ok = format!("{{\"timestamp\": 1e39, \"blendshapes\": [{good}]}}");
    assert_eq!(parse(&ok).unwrap().timestamps, vec![1e39]);
    // Timestamps going backwards.
    let e = bad_line(&format!("{{\"timestamp\": 0.5, \"blendshapes\": [{good}]}}"));
    assert!(e.message.contains("must not decrease"), "{e}");
    // Invalid UTF-8 and control characters.
    bad_line("{\"timestamp\": 2, \"blendshapes\": [\u{1}]}");
    let mut raw = format!("{}\n{}\n\n", row(0.0, &vals(0)), row(1.0, &vals(1))).into_bytes();
    raw.extend_from_slice(b"{\"timestamp\": 2, \"bl\xffendshapes\": []}\n");
    assert_eq!(parse_jsonl_with_threads(&raw, 1).unwrap_err().line, Some(4));
}

#[test]
fn truncated_last_line() {
    let text = format!("{}\n{}", row(0.0, &vals(0)), &row(1.0, &vals(1))[..100]);
    let e = err(&text);
    assert_eq!(e.line, Some(2));
    assert!(e.message.contains("truncated"), "{e}");
}

#[test]
fn last_line_without_newline_and_repeated_timestamps() {
    let text = format!("{}\n{}\n{}", row(0.5, &vals(0)), row(0.5, &vals(1)), row(0.5, &vals(2)));
    let bs = parse(&text).unwrap();
    assert_eq!(bs.timestamps, vec![0.5; 3]);
}

#[test]
fn first_error_wins() {
    let text = format!(
        "{}\n{{\"timestamp\": 2}}\n{{\"timestamp\": 1, \"blendshapes\": [1]}}\n",
        row(5.0, &vals(0))
    );
    let e = err(&text);
    assert_eq!(e.line, Some(2));
}

#[test]
fn fast_path_agrees_with_fallback() {
    let cases = [
        row(0.0333, &vals(3)),
        format!(
            "  {{ \"blendshapes\" :\t[ {} ] , \"timestamp\" : -0.0 , \"x\": [] , \"y\": {{}} }}  \r",
            numbers(N)
        ),
        format!(
            "{{\"timestamp\": 12345678901234567890123, \"blendshapes\": [{}]}}",
            (0..N).map(|k| format!("{k}.5e-{k}")).collect::<Vec<_>>().join(",")
        ),
        format!(
            "{{\"timestamp\": 1E22, \"blendshapes\": [{}]}}",
            (0..N)
                .map(|k| format!("-{k}e+{}", k % 30))
                .collect::<Vec<_>>()
                .join(",")
        ),
        format!(
            "{{\"timestamp\": 1e-400, \"blendshapes\": [{}]}}",
            (0..N)
                .map(|k| format!("0.000000000000000000000000000000000000000000001{k}"))
                .collect::<Vec<_>>()
                .join(",")
        ),
    ];
    for case in cases {
        let fast = fast_line(case.as_bytes(), None).expect(&case);
        assert_eq!(Ok(fast), slow_line(case.as_bytes(), None), "{case}");
    }
}

fn big_input(rows: usize) -> String {
    let mut s = String::with_capacity(rows * 480);
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for r in 0..rows {
        if r % 997 == 5 {
            s.push_str("\r\n");
        }
        s.push_str(&format!("{{\"timestamp\": {:.4}, \"blendshapes\": [", r as f64 / 60.0));
        for k in 0..N {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if k > 0 {
                s.push_str(", ");
            }
            s.push_str(&format!("{:.6}", (x % 1_000_000) as f64 / 1e6));
        }
        s.push_str("]}\n");
    }
    s
}

#[test]
fn parallel_equals_serial() {
    let text = big_input(12_000); // ~5.5 MB
    assert!(text.len() > 4 * PARALLEL_THRESHOLD);
    let one = parse_jsonl_with_threads(text.as_bytes(), 1).unwrap();
    assert_eq!(one.rows(), 12_000);
    for threads in [2, 3, 4, 7] {
        let many = parse_jsonl_with_threads(text.as_bytes(), threads).unwrap();
        assert_eq!(one, many, "threads={threads}");
    }
    assert_eq!(one, parse_jsonl(text.as_bytes()).unwrap());
}

fn line_starts(text: &str) -> Vec<usize> {
    let mut v = vec![0];
    v.extend(text.match_indices('\n').map(|(i, _)| i + 1));
    v
}

#[test]
fn parallel_errors_report_first_line() {
    let text = big_input(12_000);
    let starts = line_starts(&text);
    let nlines = starts.len() - 1;
    // Break a line about 80% into the file (inside the last chunk for 2 and 4 threads),
    // and another one even later: the earlier one must win.
    for (frac, later) in [(0.8, 0.9), (0.3, 0.95), (0.55, 0.56)] {
        // Skip the occasional blank line so the corrupted line is a real row.
        let real = |t: usize| {
            if text[starts[t]..].starts_with('\r') {
                t + 1
            } else {
                t
            }
        };
        let target = real((nlines as f64 * frac) as usize);
        let later_target = real((nlines as f64 * later) as usize);
        let mut bytes = text.clone().into_bytes();
        for t in [later_target, target] {
            let at = starts[t];
            let comma = at + bytes[at..].iter().position(|&b| b == b',').unwrap();
            bytes[comma] = b';';
        }
        for threads in [1, 2, 4] {
            let e = parse_jsonl_with_threads(&bytes, threads).unwrap_err();
            assert_eq!(e.line, Some(target + 1), "threads={threads}: {e}");
        }
    }
}

#[test]
fn parallel_decrease_across_chunk_boundary() {
    let text = big_input(12_000);
    let starts = line_starts(&text);
    // For every line around the 2- and 4-way split points, make its timestamp go backwards.
    for threads in [2usize, 4] {
        for chunk in 1..threads {
            let split = text.len() * chunk / threads;
            let first_line_of_chunk = starts.iter().position(|&s| s > split).unwrap();
            for target in first_line_of_chunk.saturating_sub(2)..first_line_of_chunk + 2 {
                let mut lines: Vec<String> = text.lines().map(String::from).collect();
                if lines[target].trim().is_empty() {
                    continue;
                }
                let old = lines[target].clone();
                let rest = &old[old.find(',').unwrap()..];
                lines[target] = format!("{{\"timestamp\": 0.001{rest}");
                let joined = lines.join("\n");
                for t in [1, threads] {
                    let e = parse_jsonl_with_threads(joined.as_bytes(), t).unwrap_err();
                    assert_eq!(e.line, Some(target + 1), "threads={t}: {e}");
                    assert!(e.message.contains("must not decrease"));
                }
            }
        }
    }
}

#[test]
fn chunks_cover_input() {
    let text = big_input(3000);
    for parts in 1..9 {
        let chunks = split_chunks(text.as_bytes(), parts);
        assert_eq!(chunks.iter().map(|c| c.len()).sum::<usize>(), text.len());
        for c in &chunks[..chunks.len() - 1] {
            assert_eq!(c.last(), Some(&b'\n'));
        }
    }
    assert_eq!(split_chunks(b"abc", 4), vec![&b"abc"[..]]);
}

#[test]
fn sample_data_files_parse() {
    // The synthetic sample takes shipped with the Python package (if present).
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("python/koemorph_data/sample_data");
    let mut stack = vec![dir];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|e| e == "jsonl") {
                let bytes = std::fs::read(&p).unwrap();
                let bs = parse_jsonl(&bytes).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
                assert!(bs.rows() > 0);
                assert_eq!(bs.values.len(), bs.rows() * N);
            }
        }
    }
}

// ---- property tests ----

fn ws_strategy() -> impl Strategy<Value = String> {
    proptest::collection::vec(prop_oneof![Just(' '), Just('\t'), Just('\r')], 0..3)
        .prop_map(|v| v.into_iter().collect())
}

#[derive(Debug, Clone)]
struct Frame {
    ts: f64,
    vals: Vec<f32>,
    ts_first: bool,
    object_form: bool,
    extra: bool,
    ws: Vec<String>,
    blank_after: bool,
    crlf: bool,
    /// Written only in files with pose: as "pose" or, in object form when set, as names.
    pose: Vec<f32>,
    pose_as_names: bool,
}

fn frame_strategy() -> impl Strategy<Value = (f64, Frame)> {
    (
        0.0f64..1.0,
        proptest::collection::vec(
            prop_oneof![
                -1e6f32..1e6f32,
                0f32..1f32,
                proptest::num::f32::NORMAL | proptest::num::f32::SUBNORMAL | proptest::num::f32::ZERO,
            ],
            N,
        ),
        any::<(bool, bool, bool, bool, bool)>(),
        proptest::collection::vec(ws_strategy(), 8),
        prop_oneof![Just(0.0f64), 0.0f64..0.1],
        proptest::collection::vec(prop_oneof![-3.2f32..3.2f32, proptest::num::f32::NORMAL], NUM_POSE),
        any::<bool>(),
    )
        .prop_map(
            |(_, vals, (ts_first, object_form, extra, blank_after, crlf), ws, step, pose, pose_as_names)| {
                (
                    step,
                    Frame {
                        ts: 0.0,
                        vals,
                        ts_first,
                        object_form,
                        extra,
                        ws,
                        blank_after,
                        crlf,
                        pose,
                        pose_as_names,
                    },
                )
            },
        )
}

/// A rendered valid file: positional rows in `order`, every row with pose or none.
#[derive(Debug, Clone)]
struct Rendered {
    frames: Vec<Frame>,
    text: String,
    order: BlendshapeOrder,
    with_pose: bool,
}

fn render(frames: &[Frame], bom: bool, final_newline: bool, order: &BlendshapeOrder, with_pose: bool) -> String {
    let mut s = String::new();
    if bom {
        s.push('\u{FEFF}');
    }
    for (i, f) in frames.iter().enumerate() {
        let w = &f.ws;
        let pose_in_names = with_pose && f.object_form && f.pose_as_names;
        let body = if f.object_form {
            let mut items: Vec<String> = f
                .vals
                .iter()
                .enumerate()
                .filter(|(_, v)| **v != 0.0 || v.is_sign_negative())
                .map(|(k, v)| {
                    let name = arkit::ARKIT_BLENDSHAPES[k];
                    let name = if k % 2 == 0 {
                        name.to_ascii_uppercase()
                    } else {
                        name.to_string()
                    };
                    format!("\"{name}\"{}:{}{v}", w[6], w[7])
                })
                .collect();
            if pose_in_names {
                for (k, v) in f.pose.iter().enumerate() {
                    let name = arkit::POSE_NAMES[k];
                    let name = if k % 2 == 0 {
                        name.to_ascii_uppercase()
                    } else {
                        name.to_string()
                    };
                    items.push(format!("\"{name}\"{}:{}{v}", w[6], w[7]));
                }
            }
            format!("{{{}{}}}", w[5], items.join(","))
        } else {
            // File column j holds blendshape perm[j].
            let items: Vec<String> = order
                .permutation()
                .iter()
                .map(|&i| format!("{}{}{}", w[6], f.vals[i], w[7]))
                .collect();
            format!("[{}{}]", w[5], items.join(","))
        };
        let ts = format!("\"timestamp\"{}:{}{:?}", w[1], w[2], f.ts);
        let bs = format!("\"blendshapes\"{}:{}{body}", w[3], w[4]);
        let mut parts = if f.ts_first { vec![ts, bs] } else { vec![bs, ts] };
        if f.extra {
            parts.insert(1, "\"frame\": 12".to_string());
        }
        if with_pose && !pose_in_names {
            let p: Vec<String> = f.pose.iter().map(|v| format!("{}{v}{}", w[6], w[7])).collect();
            parts.insert(
                if f.ts_first { 0 } else { parts.len() },
                format!("\"pose\"{}:[{}]", w[3], p.join(",")),
            );
        }
        s.push_str(&format!("{}{{{}}}{}", w[0], parts.join(","), w[0]));
        let last = i + 1 == frames.len();
        if !last || final_newline {
            s.push_str(if f.crlf { "\r\n" } else { "\n" });
        }
        if f.blank_after && !last {
            s.push_str(" \t\n");
        }
    }
    s
}

fn valid_file() -> impl Strategy<Value = Rendered> {
    (
        proptest::collection::vec(frame_strategy(), 1..8),
        0f64..100.0,
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        0..3u8,
    )
        .prop_map(|(steps, t0, bom, final_newline, with_pose, order_kind)| {
            let order = match order_kind {
                0 => BlendshapeOrder::live_link(),
                1 => BlendshapeOrder::koemorph(),
                _ => {
                    let reversed: Vec<&str> = arkit::ARKIT_BLENDSHAPES.iter().rev().copied().collect();
                    BlendshapeOrder::from_names(&reversed).unwrap()
                }
            };
            let mut t = t0;
            let frames: Vec<Frame> = steps
                .into_iter()
                .map(|(step, mut f)| {
                    t += step;
                    f.ts = t;
                    f
                })
                .collect();
            let text = render(&frames, bom, final_newline, &order, with_pose);
            Rendered {
                frames,
                text,
                order,
                with_pose,
            }
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let a = parse_jsonl_with_threads(&bytes, 1);
        if let Err(e) = &a {
            if let Some(line) = e.line {
                prop_assert!(line >= 1 && line <= bytes.iter().filter(|&&b| b == b'\n').count() + 1);
            }
        }
    }

    #[test]
    fn arbitrary_jsonish_lines_never_panic(
        lines in proptest::collection::vec("[\\[\\]{}\",:0-9eE.+\\- \\ttimestapblndshNI\r]{0,80}", 0..6)
    ) {
        let text = lines.join("\n");
        let _ = parse_jsonl_with_threads(text.as_bytes(), 1);
    }

    #[test]
    fn valid_files_round_trip(file in valid_file()) {
        let Rendered { frames, text, order, with_pose } = file;
        let opts = ParseOptions { order: order.clone(), timestamp_unit: TimestampUnit::Seconds };
        let bs = parse_jsonl_with(text.as_bytes(), &opts, 1)
            .map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
        prop_assert_eq!(bs.rows(), frames.len());
        prop_assert_eq!(bs.pose.is_some(), with_pose);
        for (r, f) in frames.iter().enumerate() {
            prop_assert_eq!(bs.timestamps[r], f.ts);
            for k in 0..N {
                let got = bs.values[r * N + k];
                prop_assert!(got == f.vals[k], "row {} col {}: {} vs {}", r, k, got, f.vals[k]);
            }
            if let Some(pose) = &bs.pose {
                prop_assert_eq!(&pose[r * NUM_POSE..(r + 1) * NUM_POSE], &f.pose[..]);
            }
        }
        // Every non-blank line through the serde_json fallback gives the same result.
        let columns = (!order.is_identity()).then(|| order.permutation());
        let body = text.strip_prefix('\u{FEFF}').unwrap_or(&text);
        for (r, line) in body.split('\n').filter(|l| !l.trim().is_empty()).enumerate() {
            let (row, values, pose) = slow_line(line.as_bytes(), columns).unwrap();
            prop_assert_eq!(row.timestamp, bs.timestamps[r]);
            prop_assert_eq!(&values[..], &bs.values[r * N..(r + 1) * N]);
            prop_assert_eq!(row.has_pose, with_pose);
            let expected_pose = bs.pose.as_ref().map_or(vec![0f32; NUM_POSE], |p| p[r * NUM_POSE..(r + 1) * NUM_POSE].to_vec());
            prop_assert_eq!(pose, expected_pose);
            // And the fast path, where it takes the line, agrees.
            if let Some(fast) = fast_line(line.as_bytes(), columns) {
                prop_assert_eq!(Ok(fast), slow_line(line.as_bytes(), columns));
            }
        }
    }

    #[test]
    fn corrupted_files_never_panic(
        file in valid_file(),
        pos in any::<proptest::sample::Index>(),
        byte in prop_oneof![any::<u8>(), proptest::sample::select(b"{}[]\",:.-+eE0 \n\r\tNx".to_vec())],
    ) {
        let columns = (!file.order.is_identity()).then(|| file.order.permutation());
        let mut bytes = file.text.clone().into_bytes();
        let at = pos.index(bytes.len());
        bytes[at] = byte;
        let nlines = bytes.iter().filter(|&&b| b == b'\n').count() + 1;
        let opts = ParseOptions { order: file.order.clone(), timestamp_unit: TimestampUnit::Seconds };
        match parse_jsonl_with(&bytes, &opts, 1) {
            Ok(bs) => prop_assert_eq!(bs.values.len(), bs.rows() * N),
            Err(e) => match e.line {
                Some(line) => prop_assert!(line >= 1 && line <= nlines, "{} of {}", line, nlines),
                None => prop_assert_eq!(e.message, "no frames"),
            },
        }
        // Per line, the fast path never accepts what serde_json rejects, and agrees when both accept.
        let body = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&bytes);
        for line in body.split(|&b| b == b'\n') {
            if let Some(fast) = fast_line(line, columns) {
                prop_assert_eq!(Ok(fast), slow_line(line, columns));
            }
        }
    }
}

// ---- column orders, pose, timestamp units ----

/// Distinct value for blendshape `name` in row `r` (the same in every test below).
fn value_of(name: &str, r: usize) -> f32 {
    let i = arkit::ARKIT_BLENDSHAPES.iter().position(|n| *n == name).unwrap();
    (r * 100 + i + 1) as f32 / 1000.0
}

/// A positional row whose column j holds the value of blendshape `columns[j]`.
fn positional_row(ts: f64, r: usize, columns: &[&str], extra: &str) -> String {
    let v: Vec<String> = columns.iter().map(|n| format!("{}", value_of(n, r))).collect();
    format!("{{\"timestamp\": {ts}, \"blendshapes\": [{}]{extra}}}", v.join(", "))
}

/// Rows 0..rows as parsed output must be, in ARKIT_BLENDSHAPES order (looked up by name).
fn expected_values(rows: usize) -> Vec<f32> {
    (0..rows)
        .flat_map(|r| arkit::ARKIT_BLENDSHAPES.iter().map(move |n| value_of(n, r)))
        .collect()
}

fn options(order: BlendshapeOrder, timestamp_unit: TimestampUnit) -> ParseOptions {
    ParseOptions { order, timestamp_unit }
}

#[test]
fn koemorph_order_is_read_back_by_name() {
    let text: String = (0..3)
        .map(|r| positional_row(r as f64, r, &arkit::KOEMORPH_BLENDSHAPES, "") + "\n")
        .collect();
    let opts = options(BlendshapeOrder::koemorph(), TimestampUnit::Seconds);
    let bs = parse_jsonl_with(text.as_bytes(), &opts, 1).unwrap();
    assert_eq!(bs.values, expected_values(3));
    // Spot checks by index: mouthRight is 21 and mouthLeft 22 in the output.
    assert_eq!(bs.values[21], value_of("mouthRight", 0));
    assert_eq!(bs.values[N + 15], value_of("jawRight", 1));
    // Read as Live Link order, the swapped pairs land swapped.
    let wrong = parse_jsonl_with_threads(text.as_bytes(), 1).unwrap();
    assert_eq!(wrong.values[21], value_of("mouthLeft", 0));
    assert_eq!(wrong.values[16], value_of("jawRight", 0));
}

#[test]
fn a_custom_order_is_a_permutation_of_columns() {
    // Reversed, with Live Link's capitalisation.
    let columns: Vec<String> = arkit::ARKIT_BLENDSHAPES.iter().rev().map(|n| n.to_string()).collect();
    let refs: Vec<&str> = columns.iter().map(String::as_str).collect();
    let capitalised: Vec<String> = columns
        .iter()
        .map(|n| {
            let mut c = n.clone();
            c[..1].make_ascii_uppercase();
            c
        })
        .collect();
    let order = BlendshapeOrder::from_names(&capitalised).unwrap();
    let text = format!(
        "{}\n{}\n",
        positional_row(0.0, 0, &refs, ""),
        positional_row(0.1, 1, &refs, "")
    );
    let bs = parse_jsonl_with(text.as_bytes(), &options(order, TimestampUnit::Seconds), 1).unwrap();
    assert_eq!(bs.values, expected_values(2));
}

#[test]
fn name_keyed_rows_ignore_the_order() {
    let text = "{\"timestamp\": 0, \"blendshapes\": {\"MouthLeft\": 0.25, \"jawRight\": 0.5}}\n";
    for order in [BlendshapeOrder::live_link(), BlendshapeOrder::koemorph()] {
        let bs = parse_jsonl_with(text.as_bytes(), &options(order, TimestampUnit::Seconds), 1).unwrap();
        let mut expected = vec![0f32; N];
        expected[22] = 0.25; // mouthLeft
        expected[15] = 0.5; // jawRight
        assert_eq!(bs.values, expected);
    }
}

#[test]
fn order_errors_in_values_name_the_blendshape_of_the_column() {
    // 1e39 in file column 15, which is jawLeft in KoeMorph's order.
    let mut v: Vec<String> = (0..N).map(|_| "0".to_string()).collect();
    v[15] = "1e39".into();
    let text = format!("{{\"timestamp\": 0, \"blendshapes\": [{}]}}", v.join(","));
    let opts = options(BlendshapeOrder::koemorph(), TimestampUnit::Seconds);
    let e = parse_jsonl_with(text.as_bytes(), &opts, 1).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "line 1: non-finite blendshape value {} (jawLeft, index 15): not representable as float32",
            1e39
        )
    );
}

const POSE: [f32; NUM_POSE] = [0.1, -0.2, 0.3, 0.4, -0.5, 0.6, 0.7, 0.8, -0.9];

fn pose_array() -> String {
    let p: Vec<String> = POSE.iter().map(|v| format!("{v}")).collect();
    format!(", \"pose\": [{}]", p.join(", "))
}

#[test]
fn pose_as_an_array_and_as_names_agree() {
    let by_array: String = (0..2)
        .map(|r| positional_row(r as f64, r, &arkit::ARKIT_BLENDSHAPES, &pose_array()) + "\n")
        .collect();
    // Live Link's capitalised names inside the blendshapes object, with every blendshape too.
    let by_names: String = (0..2)
        .map(|r| {
            let mut items: Vec<String> = arkit::ARKIT_BLENDSHAPES
                .iter()
                .map(|n| format!("\"{n}\": {}", value_of(n, r)))
                .collect();
            for (k, name) in arkit::POSE_NAMES.iter().enumerate() {
                let mut cap = name.to_string();
                cap[..1].make_ascii_uppercase();
                items.push(format!("\"{cap}\": {}", POSE[k]));
            }
            format!("{{\"timestamp\": {r}, \"blendshapes\": {{{}}}}}\n", items.join(", "))
        })
        .collect();
    let expected_pose: Vec<f32> = POSE.iter().chain(POSE.iter()).copied().collect();
    for text in [&by_array, &by_names] {
        let bs = parse(text).unwrap();
        assert_eq!(bs.values, expected_values(2));
        assert_eq!(bs.pose.as_deref(), Some(&expected_pose[..]), "{text}");
    }
    // Fast path and fallback agree on the array form.
    let line = by_array.lines().next().unwrap().as_bytes();
    let fast = fast_line(line, None).unwrap();
    assert!(fast.0.has_pose);
    assert_eq!(fast.2, POSE.to_vec());
    assert_eq!(Ok(fast), slow_line(line, None));
    // No pose anywhere: None.
    assert_eq!(parse(&row(0.0, &vals(0))).unwrap().pose, None);
}

#[test]
fn missing_pose_names_are_zero() {
    let text = "{\"timestamp\": 0, \"blendshapes\": {\"HeadPitch\": 0.5, \"jawOpen\": 0.25}}\n\
                {\"timestamp\": 1, \"blendshapes\": {\"rightEyeRoll\": -1}}\n";
    let bs = parse(text).unwrap();
    let mut pose = vec![0f32; 2 * NUM_POSE];
    pose[1] = 0.5;
    pose[NUM_POSE + 8] = -1.0;
    assert_eq!(bs.pose, Some(pose));
    assert_eq!(bs.values[17], 0.25);
}

#[test]
fn pose_errors_name_the_line() {
    let good = numbers(N);
    let non_finite = format!(
        "non-finite pose value {} (rightEyeRoll, index 8): not representable as float32",
        1e39
    );
    let cases: [(&str, &str); 7] = [
        (
            "{\"timestamp\": 2, \"blendshapes\": {\"headYaw\": 1}, \"pose\": [0,0,0,0,0,0,0,0,0]}",
            "pose given twice: as \"pose\" and as head/eye names in \"blendshapes\"",
        ),
        (
            "{\"timestamp\": 2, \"blendshapes\": [GOOD], \"pose\": [0,0,0,0,0,0,0,0]}",
            "expected 9 pose values, got 8",
        ),
        (
            "{\"timestamp\": 2, \"blendshapes\": [GOOD], \"pose\": [0,0,0,0,0,0,0,0,0,0]}",
            "expected 9 pose values, got 10",
        ),
        (
            "{\"timestamp\": 2, \"blendshapes\": [GOOD], \"pose\": [0,0,0,0,0,0,0,0,1e39]}",
            &non_finite,
        ),
        (
            "{\"timestamp\": 2, \"blendshapes\": [GOOD], \"pose\": [0,0,0,0,0,0,0,0,0], \"pose\": [0,0,0,0,0,0,0,0,0]}",
            "duplicate key \"pose\"",
        ),
        (
            "{\"timestamp\": 2, \"blendshapes\": {\"HEADYAW\": 1, \"headYaw\": 2}}",
            "duplicate pose name \"headYaw\"",
        ),
        (
            "{\"timestamp\": 2, \"blendshapes\": [GOOD], \"pose\": {\"headYaw\": 1}}",
            "invalid type: map, expected \"pose\" as an array of 9 numbers",
        ),
    ];
    for (bad, message) in cases {
        let bad = bad.replace("GOOD", &good);
        // Two rows with pose before it, so the pose rule itself is not what fails.
        let text = format!(
            "{}\n{}\n\n{bad}\n",
            row(0.0, &vals(0)).replace("]}", &format!("]{}}}", pose_array())),
            row(1.0, &vals(1)).replace("]}", &format!("]{}}}", pose_array())),
        );
        let e = err(&text);
        assert_eq!(e.line, Some(4), "{e} for {bad}");
        assert_eq!(e.message, message, "for {bad}");
    }
}

#[test]
fn pose_on_some_rows_only_is_an_error_at_the_first_odd_row() {
    let with = |t: f64, r: usize| row(t, &vals(r)).replace("]}", &format!("]{}}}", pose_array()));
    let text = format!("{}\n\n{}\n{}\n", with(0.0, 0), row(1.0, &vals(1)), with(2.0, 2));
    let e = err(&text);
    assert_eq!(
        e.to_string(),
        "line 3: this row has no pose but earlier rows do (either every row has pose or none)"
    );
    let text = format!("{}\n{}\n", row(0.0, &vals(0)), with(1.0, 1));
    let e = err(&text);
    assert_eq!(
        e.to_string(),
        "line 2: this row has pose but earlier rows do not (either every row has pose or none)"
    );
}

#[test]
fn timestamp_units_are_divided_into_seconds() {
    let text = format!("{}\n{}\n", row(1500.0, &vals(0)), row(1533.0, &vals(1)));
    let ms = parse_jsonl_with(
        text.as_bytes(),
        &options(BlendshapeOrder::live_link(), TimestampUnit::Milliseconds),
        1,
    );
    assert_eq!(ms.unwrap().timestamps, vec![1500.0 / 1e3, 1533.0 / 1e3]);
    let us = parse_jsonl_with(
        text.as_bytes(),
        &options(BlendshapeOrder::live_link(), TimestampUnit::Microseconds),
        1,
    );
    assert_eq!(us.unwrap().timestamps, vec![1500.0 / 1e6, 1533.0 / 1e6]);
    // Errors quote the timestamps as written.
    let text = format!("{}\n{}\n", row(1500.0, &vals(0)), row(1499.0, &vals(1)));
    let e = parse_jsonl_with(
        text.as_bytes(),
        &options(BlendshapeOrder::live_link(), TimestampUnit::Milliseconds),
        1,
    )
    .unwrap_err();
    assert_eq!(e.line, Some(2));
    assert!(
        e.message
            .starts_with("timestamp 1499 is less than the previous timestamp 1500"),
        "{e}"
    );
    assert_eq!(TimestampUnit::parse("ms"), Some(TimestampUnit::Milliseconds));
    assert_eq!(TimestampUnit::parse("ns"), None);
}

/// `big_input` with a pose on every row, its blendshapes in KoeMorph's order.
fn big_input_with_pose(rows: usize) -> String {
    big_input(rows)
        .lines()
        .map(|l| {
            if l.trim().is_empty() {
                l.to_string()
            } else {
                l.replace("]}", &format!("]{}}}", pose_array()))
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn parallel_equals_serial_with_pose_and_an_order() {
    let text = big_input_with_pose(12_000);
    assert!(text.len() > 4 * PARALLEL_THRESHOLD);
    let opts = options(BlendshapeOrder::koemorph(), TimestampUnit::Milliseconds);
    let one = parse_jsonl_with(text.as_bytes(), &opts, 1).unwrap();
    assert_eq!(one.rows(), 12_000);
    assert_eq!(one.pose.as_ref().map(Vec::len), Some(12_000 * NUM_POSE));
    assert_eq!(&one.pose.as_ref().unwrap()[NUM_POSE..2 * NUM_POSE], &POSE[..]);
    // The order only swaps the two pairs.
    let plain = parse_jsonl_with_threads(text.as_bytes(), 1).unwrap();
    for r in [0, 5_999, 11_999] {
        let (a, b) = (&one.values[r * N..(r + 1) * N], &plain.values[r * N..(r + 1) * N]);
        assert_eq!((a[15], a[16], a[21], a[22]), (b[16], b[15], b[22], b[21]));
        assert_eq!(a[..15], b[..15]);
        assert_eq!(a[23..], b[23..]);
        assert_eq!(one.timestamps[r], plain.timestamps[r] / 1e3);
    }
    for threads in [2, 3, 4] {
        assert_eq!(
            one,
            parse_jsonl_with(text.as_bytes(), &opts, threads).unwrap(),
            "threads={threads}"
        );
    }
}

#[test]
fn parallel_pose_mismatch_reports_the_serial_line() {
    let text = big_input_with_pose(12_000);
    let starts = line_starts(&text);
    for threads in [2usize, 4] {
        for chunk in 1..threads {
            let split = text.len() * chunk / threads;
            let first_line_of_chunk = starts.iter().position(|&s| s > split).unwrap();
            for target in first_line_of_chunk.saturating_sub(2)..first_line_of_chunk + 2 {
                let mut lines: Vec<String> = text.lines().map(String::from).collect();
                if lines[target].trim().is_empty() {
                    continue;
                }
                lines[target] = lines[target].replace(&pose_array(), "");
                let joined = lines.join("\n");
                for t in [1, threads] {
                    let e = parse_jsonl_with_threads(joined.as_bytes(), t).unwrap_err();
                    assert_eq!(e.line, Some(target + 1), "threads={t}: {e}");
                    assert!(e.message.contains("has no pose"), "{e}");
                }
            }
        }
    }
}
