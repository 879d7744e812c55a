//! Blendshape JSONL parser.
//!
//! One JSON object per line:
//!
//! ```text
//! {"timestamp": 0.0333, "blendshapes": [0.0, 0.12, ... 52 numbers]}
//! {"timestamp": 0.0667, "blendshapes": {"jawOpen": 0.4, "EyeBlinkLeft": 1.0}}
//! ```
//!
//! * `"blendshapes"` is an array of exactly 52 numbers in ARKit order, or an object keyed by
//!   ARKit name (case-insensitive; missing names are 0.0; unknown names are an error).
//! * Other keys are ignored; key order is free.
//! * Blank lines (space / tab / CR only) are skipped, CRLF works, a leading UTF-8 BOM is skipped.
//! * Timestamps are required, finite, and never decrease (repeats are fine).
//! * Every value must be a finite number that is also finite as `f32`.
//!
//! Design: a hand-written fast path parses the common line shape straight into the output
//! buffer (no allocation per line). Anything it does not recognise (escapes in keys, objects,
//! unusual values, any error at all) is re-parsed by `serde_json` for that one line, so
//! `serde_json` is the single source of truth for accepted syntax and for error messages.
//! Large inputs are split into a few chunks per thread at newline boundaries; a counting pass gives
//! each chunk a disjoint slice of one preallocated output, and chunks are parsed in parallel.

use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::arkit::{self, NUM_BLENDSHAPES};

const N: usize = NUM_BLENDSHAPES;

/// Inputs at least this large are parsed in parallel (when more than one thread is allowed).
const PARALLEL_THRESHOLD: usize = 1 << 20;

/// Parsed blendshape frames: `values` is row-major `[rows, 52]` float32, `timestamps` is `[rows]`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Blendshapes {
    pub values: Vec<f32>,
    pub timestamps: Vec<f64>,
}

impl Blendshapes {
    /// Number of frames (rows).
    pub fn rows(&self) -> usize {
        self.timestamps.len()
    }
}

/// A parse error; `line` is the 1-based line number of the offending line (None for "no frames").
#[derive(Debug, Clone, PartialEq)]
pub struct ParseError {
    pub line: Option<usize>,
    pub message: String,
}

impl ParseError {
    fn at(line: usize, message: impl Into<String>) -> Self {
        ParseError {
            line: Some(line),
            message: message.into(),
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "line {}: {}", line, self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for ParseError {}

/// Parse a blendshape JSONL file, on one thread per CPU for large inputs.
pub fn parse_jsonl(bytes: &[u8]) -> Result<Blendshapes, ParseError> {
    parse_jsonl_with_threads(bytes, crate::pool::threads())
}

/// Parse a blendshape JSONL file with at most `threads` threads (`1` = single-threaded on the
/// calling thread, `0` = one per CPU). Results and errors do not depend on `threads`.
pub fn parse_jsonl_with_threads(bytes: &[u8], threads: usize) -> Result<Blendshapes, ParseError> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let threads = if threads == 0 { crate::pool::threads() } else { threads };
    // No point in chunks smaller than ~256 KiB (and no thread per byte for silly thread counts).
    let threads = threads.min(bytes.len() / (256 << 10)).max(1);
    if threads <= 1 || bytes.len() < PARALLEL_THRESHOLD {
        return parse_serial(bytes);
    }
    parse_parallel(bytes, threads)
}

// ---------------------------------------------------------------------------------------------
// Driver: chunks, counting pass, parallel parse.
// ---------------------------------------------------------------------------------------------

#[inline]
fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

#[inline]
fn is_blank(line: &[u8]) -> bool {
    line.iter().all(|&b| is_ws(b))
}

/// Number of lines (newline-terminated or final unterminated) and of non-blank lines in `chunk`.
fn count_lines(chunk: &[u8]) -> (usize, usize) {
    let mut lines = 0;
    let mut rows = 0;
    let mut start = 0;
    for nl in memchr::memchr_iter(b'\n', chunk) {
        lines += 1;
        if !is_blank(&chunk[start..nl]) {
            rows += 1;
        }
        start = nl + 1;
    }
    if start < chunk.len() {
        lines += 1;
        if !is_blank(&chunk[start..]) {
            rows += 1;
        }
    }
    (lines, rows)
}

/// 1-based line number of the 0-based `row`-th non-blank line (the row's line in errors found
/// after parsing, which keeps rows, not lines); None when there are not that many rows.
/// (The piece after a final newline is empty, hence blank: never a row.)
pub fn line_of_row(bytes: &[u8], row: usize) -> Option<usize> {
    bytes.split(|&b| b == b'\n').enumerate().filter(|(_, line)| !is_blank(line)).nth(row).map(|(i, _)| i + 1)
}

struct ChunkOutcome {
    /// First error in the chunk (lowest line), if any.
    error: Option<ParseError>,
    /// Line number of the chunk's first non-blank line.
    first_row_line: Option<usize>,
}

/// Parse every line of `chunk` (whose first line is `first_line`) into `values` / `ts`, which
/// have exactly room for the chunk's non-blank lines. Checks monotonicity inside the chunk.
fn parse_chunk(chunk: &[u8], first_line: usize, values: &mut [f32], ts: &mut [f64]) -> ChunkOutcome {
    let mut line_no = first_line;
    let mut row = 0usize;
    let mut start = 0usize;
    let mut prev = f64::NEG_INFINITY;
    let mut first_row_line = None;
    while start < chunk.len() {
        let end = memchr::memchr(b'\n', &chunk[start..]).map_or(chunk.len(), |i| start + i);
        let line = &chunk[start..end];
        start = end + 1;
        if !is_blank(line) {
            if first_row_line.is_none() {
                first_row_line = Some(line_no);
            }
            let out = &mut values[row * N..(row + 1) * N];
            match parse_line(line, out) {
                Ok(t) => {
                    if t < prev {
                        return ChunkOutcome {
                            error: Some(ParseError::at(line_no, decrease_message(t, prev))),
                            first_row_line,
                        };
                    }
                    ts[row] = t;
                    prev = t;
                }
                Err(msg) => {
                    return ChunkOutcome {
                        error: Some(ParseError::at(line_no, msg)),
                        first_row_line,
                    }
                }
            }
            row += 1;
        }
        line_no += 1;
    }
    debug_assert_eq!(row, ts.len());
    ChunkOutcome {
        error: None,
        first_row_line,
    }
}

fn decrease_message(t: f64, prev: f64) -> String {
    format!("timestamp {t} is less than the previous timestamp {prev} (timestamps must not decrease)")
}

fn parse_serial(bytes: &[u8]) -> Result<Blendshapes, ParseError> {
    let (_, rows) = count_lines(bytes);
    if rows == 0 {
        return Err(ParseError {
            line: None,
            message: "no frames".to_string(),
        });
    }
    let mut values = vec![0f32; rows * N];
    let mut timestamps = vec![0f64; rows];
    let outcome = parse_chunk(bytes, 1, &mut values, &mut timestamps);
    match outcome.error {
        Some(e) => Err(e),
        None => Ok(Blendshapes { values, timestamps }),
    }
}

/// Split `bytes` into about `parts` chunks, each ending just after a newline (or at EOF).
fn split_chunks(bytes: &[u8], parts: usize) -> Vec<&[u8]> {
    let mut chunks = Vec::with_capacity(parts);
    let mut start = 0;
    for k in 1..parts {
        let target = bytes.len() * k / parts;
        if target < start {
            continue;
        }
        match memchr::memchr(b'\n', &bytes[target..]) {
            Some(i) => {
                let end = target + i + 1;
                chunks.push(&bytes[start..end]);
                start = end;
            }
            None => break,
        }
    }
    chunks.push(&bytes[start..]);
    chunks
}

/// On scoped threads (crate::pool::scoped_map), not a pool: validation parses in the training
/// process right before torch forks its workers, and this leaves no thread behind.
fn parse_parallel(bytes: &[u8], threads: usize) -> Result<Blendshapes, ParseError> {
    use crate::pool::scoped_map;

    // A few chunks per thread, so a thread that got descheduled does not hold up the others.
    let parts = (threads * 4).min(bytes.len() / (256 << 10)).max(threads);
    let chunks = split_chunks(bytes, parts);
    let counts: Vec<(usize, usize)> = scoped_map(chunks.clone(), threads, count_lines);
    let total_rows: usize = counts.iter().map(|c| c.1).sum();
    if total_rows == 0 {
        return Err(ParseError {
            line: None,
            message: "no frames".to_string(),
        });
    }
    let mut values = vec![0f32; total_rows * N];
    let mut timestamps = vec![0f64; total_rows];

    // Hand each chunk its disjoint output slices and its first line number.
    let mut jobs = Vec::with_capacity(chunks.len());
    {
        let mut vrest: &mut [f32] = &mut values;
        let mut trest: &mut [f64] = &mut timestamps;
        let mut line = 1;
        for (chunk, &(lines, rows)) in chunks.iter().zip(&counts) {
            let (v, vr) = std::mem::take(&mut vrest).split_at_mut(rows * N);
            let (t, tr) = std::mem::take(&mut trest).split_at_mut(rows);
            vrest = vr;
            trest = tr;
            jobs.push((*chunk, line, v, t));
            line += lines;
        }
    }
    let outcomes: Vec<ChunkOutcome> =
        scoped_map(jobs, threads, |(chunk, line, v, t)| parse_chunk(chunk, line, v, t));

    // Pick the first error in line order, including timestamp decreases across chunk boundaries.
    let mut row0 = 0usize;
    let mut prev: Option<f64> = None;
    for (outcome, &(_, rows)) in outcomes.iter().zip(&counts) {
        if let Some(first_line) = outcome.first_row_line {
            let first_row_ok = outcome.error.as_ref().is_none_or(|e| e.line != Some(first_line));
            if first_row_ok {
                let t = timestamps[row0];
                if let Some(p) = prev {
                    if t < p {
                        return Err(ParseError::at(first_line, decrease_message(t, p)));
                    }
                }
            }
        }
        if let Some(e) = &outcome.error {
            return Err(e.clone());
        }
        if rows > 0 {
            prev = Some(timestamps[row0 + rows - 1]);
        }
        row0 += rows;
    }
    Ok(Blendshapes { values, timestamps })
}

// ---------------------------------------------------------------------------------------------
// One line: fast path, then serde_json fallback.
// ---------------------------------------------------------------------------------------------

/// Parse one non-blank line into `out` (52 values); returns the timestamp.
#[inline]
fn parse_line(line: &[u8], out: &mut [f32]) -> Result<f64, String> {
    if let Some(t) = fast::parse_line(line, out) {
        return Ok(t);
    }
    slow::parse_line(line, out)
}

mod fast {
    //! Hand-written parser for the common line shape. Returns `None` for anything it does not
    //! fully recognise; it never accepts input that serde_json would reject.

    use super::N;

    const POW10: [f64; 23] = [
        1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17,
        1e18, 1e19, 1e20, 1e21, 1e22,
    ];

    /// Maximum nesting of ignored values handled here (deeper goes to serde_json).
    const MAX_DEPTH: u32 = 16;

    struct Cur<'a> {
        s: &'a [u8],
        i: usize,
    }

    impl<'a> Cur<'a> {
        #[inline(always)]
        fn peek(&self) -> Option<u8> {
            self.s.get(self.i).copied()
        }

        #[inline(always)]
        fn ws(&mut self) {
            while let Some(&b) = self.s.get(self.i) {
                if matches!(b, b' ' | b'\t' | b'\r' | b'\n') {
                    self.i += 1;
                } else {
                    break;
                }
            }
        }

        #[inline(always)]
        fn eat(&mut self, b: u8) -> Option<()> {
            if self.peek() == Some(b) {
                self.i += 1;
                Some(())
            } else {
                None
            }
        }

        /// A JSON number (strict grammar), returned as f64. `None` on bad syntax or when the
        /// value is not finite (serde_json then produces the error).
        #[inline(always)]
        fn number(&mut self) -> Option<f64> {
            let s = self.s;
            let start = self.i;
            let mut i = start;
            let neg = s.get(i) == Some(&b'-');
            if neg {
                i += 1;
            }
            let mut mant: u64 = 0;
            let mut ndigits = 0usize;
            match s.get(i) {
                Some(b'0') => {
                    i += 1;
                    ndigits = 1;
                }
                Some(b'1'..=b'9') => {
                    while let Some(&c) = s.get(i) {
                        if !c.is_ascii_digit() {
                            break;
                        }
                        mant = mant.wrapping_mul(10).wrapping_add((c - b'0') as u64);
                        ndigits += 1;
                        i += 1;
                    }
                }
                _ => return None,
            }
            let mut frac = 0usize;
            if s.get(i) == Some(&b'.') {
                i += 1;
                let fstart = i;
                while let Some(&c) = s.get(i) {
                    if !c.is_ascii_digit() {
                        break;
                    }
                    mant = mant.wrapping_mul(10).wrapping_add((c - b'0') as u64);
                    i += 1;
                }
                frac = i - fstart;
                if frac == 0 {
                    return None;
                }
                ndigits += frac;
            }
            let mut exp: i64 = 0;
            if let Some(b'e' | b'E') = s.get(i) {
                i += 1;
                let eneg = match s.get(i) {
                    Some(b'-') => {
                        i += 1;
                        true
                    }
                    Some(b'+') => {
                        i += 1;
                        false
                    }
                    _ => false,
                };
                let estart = i;
                while let Some(&c) = s.get(i) {
                    if !c.is_ascii_digit() {
                        break;
                    }
                    if exp < 100_000 {
                        exp = exp * 10 + (c - b'0') as i64;
                    }
                    i += 1;
                }
                if i == estart {
                    return None;
                }
                if eneg {
                    exp = -exp;
                }
            }
            self.i = i;
            // Clinger's fast path: exact mantissa and power of ten -> one correctly rounded op.
            let e10 = exp - frac as i64;
            let v = if ndigits <= 19 && mant <= (1u64 << 53) && (-22..=22).contains(&e10) {
                let m = mant as f64;
                let v = if e10 < 0 {
                    m / POW10[(-e10) as usize]
                } else {
                    m * POW10[e10 as usize]
                };
                if neg {
                    -v
                } else {
                    v
                }
            } else {
                fast_float2::parse::<f64, _>(&s[start..i]).ok()?
            };
            if v.is_finite() {
                Some(v)
            } else {
                None
            }
        }

        /// Skip a string whose content is printable ASCII without escapes; returns its content.
        #[inline(always)]
        fn simple_string(&mut self) -> Option<&'a [u8]> {
            self.eat(b'"')?;
            let start = self.i;
            let s = self.s;
            while let Some(&c) = s.get(self.i) {
                if c == b'"' {
                    let content = &s[start..self.i];
                    self.i += 1;
                    return Some(content);
                }
                if c == b'\\' || !(0x20..0x7f).contains(&c) {
                    return None;
                }
                self.i += 1;
            }
            None
        }

        fn literal(&mut self, lit: &[u8]) -> Option<()> {
            if self.s[self.i..].starts_with(lit) {
                self.i += lit.len();
                Some(())
            } else {
                None
            }
        }

        /// Skip (and validate) an ignored value from the simple subset of JSON.
        fn skip_value(&mut self, depth: u32) -> Option<()> {
            match self.peek()? {
                b'"' => self.simple_string().map(|_| ()),
                b'-' | b'0'..=b'9' => self.skip_number(),
                b't' => self.literal(b"true"),
                b'f' => self.literal(b"false"),
                b'n' => self.literal(b"null"),
                b'[' if depth < MAX_DEPTH => {
                    self.i += 1;
                    self.ws();
                    if self.eat(b']').is_some() {
                        return Some(());
                    }
                    loop {
                        self.skip_value(depth + 1)?;
                        self.ws();
                        match self.peek()? {
                            b',' => {
                                self.i += 1;
                                self.ws();
                            }
                            b']' => {
                                self.i += 1;
                                return Some(());
                            }
                            _ => return None,
                        }
                    }
                }
                b'{' if depth < MAX_DEPTH => {
                    self.i += 1;
                    self.ws();
                    if self.eat(b'}').is_some() {
                        return Some(());
                    }
                    loop {
                        self.simple_string()?;
                        self.ws();
                        self.eat(b':')?;
                        self.ws();
                        self.skip_value(depth + 1)?;
                        self.ws();
                        match self.peek()? {
                            b',' => {
                                self.i += 1;
                                self.ws();
                            }
                            b'}' => {
                                self.i += 1;
                                return Some(());
                            }
                            _ => return None,
                        }
                    }
                }
                _ => None,
            }
        }

        /// Number syntax only (ignored values are not range-checked by serde_json either).
        fn skip_number(&mut self) -> Option<()> {
            let s = self.s;
            let mut i = self.i;
            if s.get(i) == Some(&b'-') {
                i += 1;
            }
            match s.get(i) {
                Some(b'0') => i += 1,
                Some(b'1'..=b'9') => {
                    while s.get(i).is_some_and(|c| c.is_ascii_digit()) {
                        i += 1;
                    }
                }
                _ => return None,
            }
            if s.get(i) == Some(&b'.') {
                i += 1;
                let st = i;
                while s.get(i).is_some_and(|c| c.is_ascii_digit()) {
                    i += 1;
                }
                if i == st {
                    return None;
                }
            }
            if let Some(b'e' | b'E') = s.get(i) {
                i += 1;
                if let Some(b'+' | b'-') = s.get(i) {
                    i += 1;
                }
                let st = i;
                while s.get(i).is_some_and(|c| c.is_ascii_digit()) {
                    i += 1;
                }
                if i == st {
                    return None;
                }
            }
            self.i = i;
            Some(())
        }

        /// `[` n1 `,` ... n52 `]` written straight into `out`; values must be finite as f32.
        #[inline(always)]
        fn values(&mut self, out: &mut [f32]) -> Option<()> {
            self.eat(b'[')?;
            for (k, slot) in out.iter_mut().enumerate() {
                self.ws();
                let v = self.number()? as f32;
                if !v.is_finite() {
                    return None;
                }
                *slot = v;
                self.ws();
                if k + 1 < N {
                    self.eat(b',')?;
                }
            }
            self.eat(b']')
        }
    }

    /// The fast path. `None` means "not recognised": the caller falls back to serde_json.
    pub(super) fn parse_line(line: &[u8], out: &mut [f32]) -> Option<f64> {
        let mut c = Cur { s: line, i: 0 };
        c.ws();
        c.eat(b'{')?;
        let mut ts: Option<f64> = None;
        let mut have_values = false;
        c.ws();
        if c.peek()? != b'}' {
            loop {
                let key = c.simple_string()?;
                c.ws();
                c.eat(b':')?;
                c.ws();
                match key {
                    b"timestamp" => {
                        if ts.is_some() {
                            return None;
                        }
                        ts = Some(c.number()?);
                    }
                    b"blendshapes" => {
                        if have_values {
                            return None;
                        }
                        c.values(out)?;
                        have_values = true;
                    }
                    _ => c.skip_value(0)?,
                }
                c.ws();
                match c.peek()? {
                    b',' => {
                        c.i += 1;
                        c.ws();
                    }
                    b'}' => break,
                    _ => return None,
                }
            }
        }
        c.i += 1; // the '}'
        c.ws();
        if c.i != line.len() || !have_values {
            return None;
        }
        ts
    }
}

mod slow {
    //! serde_json fallback for one line: the reference semantics and the error messages.

    use super::*;

    pub(super) fn parse_line(line: &[u8], out: &mut [f32]) -> Result<f64, String> {
        let mut de = serde_json::Deserializer::from_slice(line);
        let res = LineSeed { out }
            .deserialize(&mut de)
            .and_then(|t| de.end().map(|_| t));
        res.map_err(|e| describe(&e, line))
    }

    /// Turn a serde_json error (for a single line) into a message without serde's "line 1".
    fn describe(e: &serde_json::Error, line: &[u8]) -> String {
        use serde_json::error::Category;
        let full = e.to_string();
        let msg = match full.rfind(" at line ") {
            Some(pos) => &full[..pos],
            None => &full[..],
        };
        match e.classify() {
            Category::Data => msg.to_string(),
            Category::Eof => format!("invalid JSON (truncated line?): {msg}"),
            Category::Syntax | Category::Io => {
                let col = e.column();
                let at = col.saturating_sub(1).min(line.len());
                let rest = &line[at..];
                let back = &line[at.saturating_sub(1)..];
                let nonfinite = [&b"NaN"[..], b"Infinity", b"-Infinity"]
                    .iter()
                    .any(|tok| rest.starts_with(tok) || back.starts_with(tok));
                if nonfinite {
                    format!("invalid JSON: NaN/Infinity are not allowed (column {col})")
                } else if msg == "number out of range" {
                    format!("invalid JSON: number out of range, not finite (column {col})")
                } else {
                    format!("invalid JSON: {msg} (column {col})")
                }
            }
        }
    }

    struct LineSeed<'a> {
        out: &'a mut [f32],
    }

    impl<'de, 'a> DeserializeSeed<'de> for LineSeed<'a> {
        type Value = f64;
        fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<f64, D::Error> {
            d.deserialize_map(self)
        }
    }

    impl<'de, 'a> Visitor<'de> for LineSeed<'a> {
        type Value = f64;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str(r#"a JSON object with "timestamp" and "blendshapes""#)
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<f64, A::Error> {
            let mut ts: Option<f64> = None;
            let mut have_values = false;
            while let Some(key) = map.next_key_seed(KeySeed)? {
                match key {
                    Key::Timestamp => {
                        if ts.is_some() {
                            return Err(de::Error::custom(r#"duplicate key "timestamp""#));
                        }
                        let t = map.next_value_seed(NumberSeed { what: "timestamp" })?;
                        if !t.is_finite() {
                            return Err(de::Error::custom(format!("non-finite timestamp {t}")));
                        }
                        ts = Some(t);
                    }
                    Key::Blendshapes => {
                        if have_values {
                            return Err(de::Error::custom(r#"duplicate key "blendshapes""#));
                        }
                        map.next_value_seed(ValuesSeed { out: &mut *self.out })?;
                        have_values = true;
                    }
                    Key::Other => {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
            }
            let ts = ts.ok_or_else(|| de::Error::custom(r#"missing "timestamp""#))?;
            if !have_values {
                return Err(de::Error::custom(r#"missing "blendshapes""#));
            }
            Ok(ts)
        }
    }

    enum Key {
        Timestamp,
        Blendshapes,
        Other,
    }

    struct KeySeed;

    impl<'de> DeserializeSeed<'de> for KeySeed {
        type Value = Key;
        fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Key, D::Error> {
            d.deserialize_identifier(self)
        }
    }

    impl<'de> Visitor<'de> for KeySeed {
        type Value = Key;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a key")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Key, E> {
            Ok(match v {
                "timestamp" => Key::Timestamp,
                "blendshapes" => Key::Blendshapes,
                _ => Key::Other,
            })
        }
    }

    /// Any JSON number as f64 (integers included); `what` names it in type errors.
    struct NumberSeed {
        what: &'static str,
    }

    impl<'de> DeserializeSeed<'de> for NumberSeed {
        type Value = f64;
        fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<f64, D::Error> {
            d.deserialize_f64(self)
        }
    }

    impl<'de> Visitor<'de> for NumberSeed {
        type Value = f64;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            write!(f, "a number for {}", self.what)
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<f64, E> {
            Ok(v)
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<f64, E> {
            Ok(v as f64)
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<f64, E> {
            Ok(v as f64)
        }
    }

    fn value_f32<E: de::Error>(v: f64, index: usize) -> Result<f32, E> {
        let f = v as f32;
        if f.is_finite() {
            Ok(f)
        } else {
            Err(E::custom(format!(
                "non-finite blendshape value {v} ({}, index {index}): not representable as float32",
                arkit::ARKIT_BLENDSHAPES[index]
            )))
        }
    }

    struct ValuesSeed<'a> {
        out: &'a mut [f32],
    }

    impl<'de, 'a> DeserializeSeed<'de> for ValuesSeed<'a> {
        type Value = ();
        fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_any(self)
        }
    }

    impl<'de, 'a> Visitor<'de> for ValuesSeed<'a> {
        type Value = ();

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str(
                "\"blendshapes\" as an array of 52 numbers or an object keyed by ARKit blendshape name",
            )
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            let mut n = 0usize;
            loop {
                if n < N {
                    let what = "a blendshape value";
                    match seq.next_element_seed(NumberSeed { what })? {
                        Some(v) => self.out[n] = value_f32(v, n)?,
                        None => break,
                    }
                } else if seq.next_element::<IgnoredAny>()?.is_none() {
                    break;
                }
                n += 1;
            }
            if n != N {
                return Err(de::Error::custom(format!(
                    "expected {N} blendshape values, got {n}"
                )));
            }
            Ok(())
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            self.out.fill(0.0);
            let mut seen = [false; N];
            while let Some(idx) = map.next_key_seed(NameSeed)? {
                if seen[idx] {
                    return Err(de::Error::custom(format!(
                        "duplicate blendshape name \"{}\"",
                        arkit::ARKIT_BLENDSHAPES[idx]
                    )));
                }
                seen[idx] = true;
                let v = map.next_value_seed(NumberSeed {
                    what: "a blendshape value",
                })?;
                self.out[idx] = value_f32(v, idx)?;
            }
            Ok(())
        }
    }

    /// An ARKit blendshape name (case-insensitive) -> its index.
    struct NameSeed;

    impl<'de> DeserializeSeed<'de> for NameSeed {
        type Value = usize;
        fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<usize, D::Error> {
            d.deserialize_str(self)
        }
    }

    impl<'de> Visitor<'de> for NameSeed {
        type Value = usize;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an ARKit blendshape name")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<usize, E> {
            arkit::index_of(v).ok_or_else(|| E::custom(format!("unknown blendshape name \"{v}\"")))
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn row(ts: f64, vals: &[f32]) -> String {
        let v: Vec<String> = vals.iter().map(|x| format!("{x}")).collect();
        format!("{{\"timestamp\": {ts}, \"blendshapes\": [{}]}}", v.join(", "))
    }

    fn vals(seed: usize) -> Vec<f32> {
        (0..N)
            .map(|k| ((seed * 31 + k * 7) % 1000) as f32 / 1000.0)
            .collect()
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
        let e = bad_line(&format!(
            "{{\"timestamp\": 2, \"blendshapes\": [{}]}}",
            numbers(51)
        ));
        assert_eq!(e.to_string(), "line 4: expected 52 blendshape values, got 51");
        let e = bad_line(&format!(
            "{{\"timestamp\": 2, \"blendshapes\": [{}]}}",
            numbers(53)
        ));
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
            let e = bad_line(&format!(
                "{{\"timestamp\": {bad_value}, \"blendshapes\": [{good}]}}"
            ));
            assert!(e.message.contains("invalid type"), "{e}");
        }
        bad_line("{\"timestamp\": 2, \"blendshapes\": null}");
        bad_line("{\"timestamp\": 2, \"blendshapes\": \"abc\"}");
        // Invalid numbers (serde_json grammar).
        for bad_num in [
            "01", "1.", ".5", "-", "+1", "1e", "1e+", "0x10", "1.5.2", "--1", "- 1",
        ] {
            bad_line(&format!(
                "{{\"timestamp\": 2, \"blendshapes\": [{bad_num}, {}]}}",
                numbers(51)
            ));
            bad_line(&format!(
                "{{\"timestamp\": {bad_num}, \"blendshapes\": [{good}]}}"
            ));
        }
        // NaN / Infinity / overflow.
        for bad_num in ["NaN", "Infinity", "-Infinity", "nan", "inf"] {
            let e = bad_line(&format!(
                "{{\"timestamp\": 2, \"blendshapes\": [{}, {bad_num}]}}",
                numbers(51)
            ));
            assert!(e.message.contains("invalid JSON"), "{e}");
            bad_line(&format!(
                "{{\"timestamp\": {bad_num}, \"blendshapes\": [{good}]}}"
            ));
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
        let text = format!(
            "{}\n{}\n{}",
            row(0.5, &vals(0)),
            row(0.5, &vals(1)),
            row(0.5, &vals(2))
        );
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
                (0..N)
                    .map(|k| format!("{k}.5e-{k}"))
                    .collect::<Vec<_>>()
                    .join(",")
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
            let mut a = vec![0f32; N];
            let mut b = vec![0f32; N];
            let ta = fast::parse_line(case.as_bytes(), &mut a).expect(&case);
            let tb = slow::parse_line(case.as_bytes(), &mut b).unwrap();
            assert_eq!(ta, tb, "{case}");
            assert_eq!(a, b, "{case}");
        }
    }

    fn big_input(rows: usize) -> String {
        let mut s = String::with_capacity(rows * 480);
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for r in 0..rows {
            if r % 997 == 5 {
                s.push_str("\r\n");
            }
            s.push_str(&format!(
                "{{\"timestamp\": {:.4}, \"blendshapes\": [",
                r as f64 / 60.0
            ));
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
        )
            .prop_map(
                |(_, vals, (ts_first, object_form, extra, blank_after, crlf), ws, step)| {
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
                        },
                    )
                },
            )
    }

    fn render(frames: &[Frame], bom: bool, final_newline: bool) -> String {
        let mut s = String::new();
        if bom {
            s.push('\u{FEFF}');
        }
        for (i, f) in frames.iter().enumerate() {
            let w = &f.ws;
            let body = if f.object_form {
                let items: Vec<String> = f
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
                format!("{{{}{}}}", w[5], items.join(","))
            } else {
                let items: Vec<String> = f.vals.iter().map(|v| format!("{}{v}{}", w[6], w[7])).collect();
                format!("[{}{}]", w[5], items.join(","))
            };
            let ts = format!("\"timestamp\"{}:{}{:?}", w[1], w[2], f.ts);
            let bs = format!("\"blendshapes\"{}:{}{body}", w[3], w[4]);
            let mut parts = if f.ts_first { vec![ts, bs] } else { vec![bs, ts] };
            if f.extra {
                parts.insert(1, "\"frame\": 12".to_string());
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

    fn valid_file() -> impl Strategy<Value = (Vec<Frame>, String)> {
        (
            proptest::collection::vec(frame_strategy(), 1..8),
            0f64..100.0,
            any::<bool>(),
            any::<bool>(),
        )
            .prop_map(|(steps, t0, bom, final_newline)| {
                let mut t = t0;
                let frames: Vec<Frame> = steps
                    .into_iter()
                    .map(|(step, mut f)| {
                        t += step;
                        f.ts = t;
                        f
                    })
                    .collect();
                let text = render(&frames, bom, final_newline);
                (frames, text)
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
        fn valid_files_round_trip((frames, text) in valid_file()) {
            let bs = parse_jsonl_with_threads(text.as_bytes(), 1)
                .map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
            prop_assert_eq!(bs.rows(), frames.len());
            for (r, f) in frames.iter().enumerate() {
                prop_assert_eq!(bs.timestamps[r], f.ts);
                for k in 0..N {
                    let got = bs.values[r * N + k];
                    prop_assert!(got == f.vals[k], "row {} col {}: {} vs {}", r, k, got, f.vals[k]);
                }
            }
            // Every non-blank line through the serde_json fallback gives the same result.
            let body = text.strip_prefix('\u{FEFF}').unwrap_or(&text);
            for (r, line) in body.split('\n').filter(|l| !l.trim().is_empty()).enumerate() {
                let mut out = vec![0f32; N];
                let t = slow::parse_line(line.as_bytes(), &mut out).unwrap();
                prop_assert_eq!(t, bs.timestamps[r]);
                prop_assert_eq!(&out[..], &bs.values[r * N..(r + 1) * N]);
            }
        }

        #[test]
        fn corrupted_files_never_panic(
            (_frames, text) in valid_file(),
            pos in any::<proptest::sample::Index>(),
            byte in prop_oneof![any::<u8>(), proptest::sample::select(b"{}[]\",:.-+eE0 \n\r\tNx".to_vec())],
        ) {
            let mut bytes = text.into_bytes();
            let at = pos.index(bytes.len());
            bytes[at] = byte;
            let nlines = bytes.iter().filter(|&&b| b == b'\n').count() + 1;
            match parse_jsonl_with_threads(&bytes, 1) {
                Ok(bs) => prop_assert_eq!(bs.values.len(), bs.rows() * N),
                Err(e) => match e.line {
                    Some(line) => prop_assert!(line >= 1 && line <= nlines, "{} of {}", line, nlines),
                    None => prop_assert_eq!(e.message, "no frames"),
                },
            }
            // Per line, the fast path never accepts what serde_json rejects, and agrees when both accept.
            let body = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&bytes);
            for line in body.split(|&b| b == b'\n') {
                let mut a = vec![0f32; N];
                let mut b = vec![0f32; N];
                if let Some(ta) = fast::parse_line(line, &mut a) {
                    let tb = slow::parse_line(line, &mut b);
                    prop_assert_eq!(Ok(ta), tb);
                    prop_assert_eq!(a, b);
                }
            }
        }
    }
}
