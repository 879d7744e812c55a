//! serde_json fallback for one line: the reference semantics and the error messages.

use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::{Columns, LineRow, RowSlots, N};
use crate::arkit::{self, NUM_POSE};

pub(super) fn parse_line(line: &[u8], slots: &mut RowSlots<'_>, columns: Columns<'_>) -> Result<LineRow, String> {
    // The fast path may have written part of this row before giving up.
    slots.pose.fill(0.0);
    let mut de = serde_json::Deserializer::from_slice(line);
    let res = LineSeed { slots, columns }
        .deserialize(&mut de)
        .and_then(|row| de.end().map(|_| row));
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

struct LineSeed<'s, 'a> {
    slots: &'s mut RowSlots<'a>,
    columns: Columns<'s>,
}

impl<'de> DeserializeSeed<'de> for LineSeed<'_, '_> {
    type Value = LineRow;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<LineRow, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for LineSeed<'_, '_> {
    type Value = LineRow;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(r#"a JSON object with "timestamp" and "blendshapes""#)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<LineRow, A::Error> {
        let mut ts: Option<f64> = None;
        let mut have_values = false;
        let mut pose_key = false;
        let mut pose_names = false;
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
                    pose_names = map.next_value_seed(ValuesSeed {
                        out: &mut *self.slots.values,
                        pose: &mut *self.slots.pose,
                        columns: self.columns,
                    })?;
                    have_values = true;
                }
                Key::Pose => {
                    if pose_key {
                        return Err(de::Error::custom(r#"duplicate key "pose""#));
                    }
                    map.next_value_seed(PoseSeed {
                        out: &mut *self.slots.pose,
                    })?;
                    pose_key = true;
                }
                Key::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        let timestamp = ts.ok_or_else(|| de::Error::custom(r#"missing "timestamp""#))?;
        if !have_values {
            return Err(de::Error::custom(r#"missing "blendshapes""#));
        }
        if pose_key && pose_names {
            return Err(de::Error::custom(
                r#"pose given twice: as "pose" and as head/eye names in "blendshapes""#,
            ));
        }
        Ok(LineRow {
            timestamp,
            has_pose: pose_key || pose_names,
        })
    }
}

enum Key {
    Timestamp,
    Blendshapes,
    Pose,
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
            "pose" => Key::Pose,
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

/// `v` as f32, which must be finite; `kind`, `name` and `index` say which value it is.
fn value_f32<E: de::Error>(v: f64, kind: &str, name: &str, index: usize) -> Result<f32, E> {
    let f = v as f32;
    if f.is_finite() {
        Ok(f)
    } else {
        Err(E::custom(format!(
            "non-finite {kind} value {v} ({name}, index {index}): not representable as float32"
        )))
    }
}

/// `"blendshapes"`: writes the 52 values; returns whether it carried pose names.
struct ValuesSeed<'a> {
    out: &'a mut [f32],
    pose: &'a mut [f32],
    columns: Columns<'a>,
}

impl<'de> DeserializeSeed<'de> for ValuesSeed<'_> {
    type Value = bool;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValuesSeed<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("\"blendshapes\" as an array of 52 numbers or an object keyed by ARKit blendshape name")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<bool, A::Error> {
        let mut n = 0usize;
        loop {
            if n < N {
                let what = "a blendshape value";
                match seq.next_element_seed(NumberSeed { what })? {
                    Some(v) => {
                        // File column n holds blendshape `slot` (identity unless an order was given).
                        let slot = self.columns.map_or(n, |perm| perm[n]);
                        self.out[slot] = value_f32(v, "blendshape", arkit::ARKIT_BLENDSHAPES[slot], n)?;
                    }
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
        Ok(false)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
        self.out.fill(0.0);
        let mut seen = [false; N];
        let mut seen_pose = [false; NUM_POSE];
        while let Some(name) = map.next_key_seed(NameSeed)? {
            let (seen, kind, label, slot) = match name {
                Name::Blendshape(i) => (
                    &mut seen[i],
                    "blendshape",
                    arkit::ARKIT_BLENDSHAPES[i],
                    &mut self.out[i],
                ),
                Name::Pose(k) => (&mut seen_pose[k], "pose", arkit::POSE_NAMES[k], &mut self.pose[k]),
            };
            if *seen {
                return Err(de::Error::custom(format!("duplicate {kind} name \"{label}\"")));
            }
            *seen = true;
            let what = if kind == "pose" {
                "a pose value"
            } else {
                "a blendshape value"
            };
            let v = map.next_value_seed(NumberSeed { what })?;
            let index = match name {
                Name::Blendshape(i) | Name::Pose(i) => i,
            };
            *slot = value_f32(v, kind, label, index)?;
        }
        Ok(seen_pose.iter().any(|&s| s))
    }
}

/// `"pose"`: exactly 9 numbers in `POSE_NAMES` order.
struct PoseSeed<'a> {
    out: &'a mut [f32],
}

impl<'de> DeserializeSeed<'de> for PoseSeed<'_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for PoseSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "\"pose\" as an array of {NUM_POSE} numbers")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut n = 0usize;
        loop {
            if n < NUM_POSE {
                match seq.next_element_seed(NumberSeed { what: "a pose value" })? {
                    Some(v) => self.out[n] = value_f32(v, "pose", arkit::POSE_NAMES[n], n)?,
                    None => break,
                }
            } else if seq.next_element::<IgnoredAny>()?.is_none() {
                break;
            }
            n += 1;
        }
        if n != NUM_POSE {
            return Err(de::Error::custom(format!("expected {NUM_POSE} pose values, got {n}")));
        }
        Ok(())
    }
}

/// A key of a `"blendshapes"` object: an ARKit blendshape name or a pose name (case-insensitive).
#[derive(Clone, Copy)]
enum Name {
    Blendshape(usize),
    Pose(usize),
}

struct NameSeed;

impl<'de> DeserializeSeed<'de> for NameSeed {
    type Value = Name;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Name, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for NameSeed {
    type Value = Name;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an ARKit blendshape or pose name")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Name, E> {
        arkit::index_of(v)
            .map(Name::Blendshape)
            .or_else(|| arkit::pose_index_of(v).map(Name::Pose))
            .ok_or_else(|| E::custom(format!("unknown blendshape name \"{v}\"")))
    }
}
