//! serde_json fallback for one line: the reference semantics and the error messages.

use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::N;
use crate::arkit;

pub(super) fn parse_line(line: &[u8], out: &mut [f32]) -> Result<f64, String> {
    let mut de = serde_json::Deserializer::from_slice(line);
    let res = LineSeed { out }.deserialize(&mut de).and_then(|t| de.end().map(|_| t));
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
        f.write_str("\"blendshapes\" as an array of 52 numbers or an object keyed by ARKit blendshape name")
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
            return Err(de::Error::custom(format!("expected {N} blendshape values, got {n}")));
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
