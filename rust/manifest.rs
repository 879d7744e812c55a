//! Reading a take manifest's lines into columns.
//!
//! `koemorph_data.manifest` writes one JSON object per take (after a header line the Python side
//! reads); a dataset of 100,000 takes starts from these lines, so they are parsed here, into one
//! vector per field, rather than into a Python object per take. Fields a line leaves out take
//! the writer's defaults (0, absent, false); an unknown field, a wrong type or a missing path,
//! size or version field is an error naming the line.

use serde::Deserialize;

/// An object's version as the manifest records it: a local file's mtime in ns or an object
/// store's ETag (or other text).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum Version {
    Int(i64),
    Text(String),
}

/// The validation error recorded for a take: which of its files (`"jsonl"` or `"wav"`), the
/// line (JSONL only) and the reason.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TakeError {
    pub file: String,
    pub line: Option<u64>,
    pub reason: String,
}

/// Present with any value (null included): versions are written even when the store has none.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Version>, D::Error> {
    Option::<Version>::deserialize(d)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    wav: String,
    jsonl: String,
    wav_size: u64,
    #[serde(deserialize_with = "present")]
    wav_version: Option<Version>,
    jsonl_size: u64,
    #[serde(deserialize_with = "present")]
    jsonl_version: Option<Version>,
    #[serde(default)]
    rate: u64,
    #[serde(default)]
    channels: u64,
    #[serde(default)]
    frames: u64,
    #[serde(default)]
    rows: u64,
    #[serde(default)]
    source_fps: Option<f64>,
    #[serde(default)]
    first_s: Option<f64>,
    #[serde(default)]
    last_s: Option<f64>,
    #[serde(default)]
    max_step_s: Option<f64>,
    #[serde(default)]
    pose: bool,
    #[serde(default)]
    error: Option<TakeError>,
}

/// Every take line's fields, one vector each, in file order. Absent floats are NaN.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ManifestColumns {
    pub wav: Vec<String>,
    pub jsonl: Vec<String>,
    pub wav_size: Vec<u64>,
    pub wav_version: Vec<Option<Version>>,
    pub jsonl_size: Vec<u64>,
    pub jsonl_version: Vec<Option<Version>>,
    pub rate: Vec<u64>,
    pub channels: Vec<u64>,
    pub frames: Vec<u64>,
    pub rows: Vec<u64>,
    pub source_fps: Vec<f64>,
    pub first_s: Vec<f64>,
    pub last_s: Vec<f64>,
    pub max_step_s: Vec<f64>,
    pub pose: Vec<bool>,
    /// (take index, error) of the takes that failed validation.
    pub errors: Vec<(usize, TakeError)>,
}

impl ManifestColumns {
    fn push(&mut self, line: Line) {
        if let Some(error) = line.error {
            self.errors.push((self.wav.len(), error));
        }
        self.wav.push(line.wav);
        self.jsonl.push(line.jsonl);
        self.wav_size.push(line.wav_size);
        self.wav_version.push(line.wav_version);
        self.jsonl_size.push(line.jsonl_size);
        self.jsonl_version.push(line.jsonl_version);
        self.rate.push(line.rate);
        self.channels.push(line.channels);
        self.frames.push(line.frames);
        self.rows.push(line.rows);
        for (column, value) in [
            (&mut self.source_fps, line.source_fps),
            (&mut self.first_s, line.first_s),
            (&mut self.last_s, line.last_s),
            (&mut self.max_step_s, line.max_step_s),
        ] {
            column.push(value.unwrap_or(f64::NAN));
        }
        self.pose.push(line.pose);
    }
}

/// A line that is not a take line: its number in the file and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    pub line: usize,
    pub message: String,
}

/// The take lines of `text`, whose first line is line `first_line` of the file (blank lines,
/// and a `\r` before a newline, are skipped).
pub fn parse_lines(text: &[u8], first_line: usize) -> Result<ManifestColumns, LineError> {
    let mut columns = ManifestColumns::default();
    for (i, raw) in text.split(|&b| b == b'\n').enumerate() {
        let line = raw.strip_suffix(b"\r").unwrap_or(raw);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let parsed: Line = serde_json::from_slice(line).map_err(|e| LineError {
            line: first_line + i,
            message: e.to_string(),
        })?;
        columns.push(parsed);
    }
    Ok(columns)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{"wav":"a/t.wav","jsonl":"a/t.jsonl","wav_size":44,"wav_version":1795557860556912593,"jsonl_size":90,"jsonl_version":"9b2cf535f27731c974343645a3985328","rate":48000,"channels":2,"frames":158400,"rows":99,"source_fps":30.00030000299978,"first_s":0.5,"last_s":3.7666666666666666,"max_step_s":0.03333333333333333,"pose":true}"#;
    const BROKEN: &str = r#"{"wav":"d/b.wav","jsonl":"d/b.jsonl","wav_size":1,"wav_version":null,"jsonl_size":2,"jsonl_version":null,"error":{"file":"jsonl","line":3,"reason":"expected value"}}"#;

    #[test]
    fn lines_become_columns() {
        let text = format!("{GOOD}\r\n\n{BROKEN}\n");
        let c = parse_lines(text.as_bytes(), 2).unwrap();
        assert_eq!(c.wav, ["a/t.wav", "d/b.wav"]);
        assert_eq!(c.jsonl, ["a/t.jsonl", "d/b.jsonl"]);
        assert_eq!((c.wav_size.clone(), c.jsonl_size.clone()), (vec![44, 1], vec![90, 2]));
        assert_eq!(c.wav_version, [Some(Version::Int(1795557860556912593)), None]);
        assert_eq!(
            c.jsonl_version,
            [Some(Version::Text("9b2cf535f27731c974343645a3985328".into())), None]
        );
        assert_eq!((c.rate.clone(), c.channels.clone()), (vec![48000, 0], vec![2, 0]));
        assert_eq!((c.frames.clone(), c.rows.clone()), (vec![158400, 0], vec![99, 0]));
        // Floats exactly as Python's float() reads them (correctly rounded).
        assert_eq!(c.source_fps[0].to_bits(), 30.00030000299978f64.to_bits());
        assert_eq!(c.last_s[0].to_bits(), 3.7666666666666666f64.to_bits());
        assert_eq!((c.first_s[0], c.max_step_s[0]), (0.5, 0.03333333333333333));
        assert!(c.source_fps[1].is_nan() && c.first_s[1].is_nan() && c.max_step_s[1].is_nan());
        assert_eq!(c.pose, [true, false]);
        let error = TakeError {
            file: "jsonl".into(),
            line: Some(3),
            reason: "expected value".into(),
        };
        assert_eq!(c.errors, [(1, error)]);
        assert_eq!(parse_lines(b"", 2).unwrap(), ManifestColumns::default());
    }

    #[test]
    fn bad_lines_are_named() {
        let cases = [
            (r#"{"wav":"a.wav"}"#.to_string(), "missing field `jsonl`"),
            (
                GOOD.replace("\"pose\":true", "\"pose\":true,\"colour\":1"),
                "unknown field `colour`",
            ),
            (GOOD.replace("\"rate\":48000", "\"rate\":4.8e4"), "invalid type"),
            (
                GOOD.replace(",\"wav_version\":1795557860556912593", ""),
                "missing field `wav_version`",
            ),
            ("{\"wav\": ".to_string(), "EOF"),
        ];
        for (line, expected) in cases {
            let text = format!("{GOOD}\n{line}\n");
            let err = parse_lines(text.as_bytes(), 2).unwrap_err();
            assert_eq!(err.line, 3, "{line}");
            assert!(err.message.contains(expected), "{line}: {}", err.message);
        }
    }
}
