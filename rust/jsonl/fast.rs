//! Hand-written parser for the common line shape. Returns `None` for anything it does not
//! fully recognise; it never accepts input that serde_json would reject.

use super::{Columns, LineRow, RowSlots, N};
use crate::arkit::NUM_POSE;

const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20,
    1e21, 1e22,
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

    /// `[` n1 `,` ... nW `]` written straight into `out`; values must be
    /// finite as f32.
    #[inline(always)]
    fn values<const W: usize>(&mut self, out: &mut [f32; W]) -> Option<()> {
        self.eat(b'[')?;
        for (k, slot) in out.iter_mut().enumerate() {
            self.ws();
            let v = self.number()? as f32;
            if !v.is_finite() {
                return None;
            }
            *slot = v;
            self.ws();
            if k + 1 < W {
                self.eat(b',')?;
            }
        }
        self.eat(b']')
    }

    /// `[` n1 `,` ... n52 `]` with file column `j` written to `out[perm[j]]`. Not inlined, like
    /// `pose`: the identity order's loop in `parse_line` stays as lean as it was without them.
    #[inline(never)]
    fn permuted_values(&mut self, out: &mut [f32; N], perm: &[usize; N]) -> Option<()> {
        self.eat(b'[')?;
        for (k, &slot) in perm.iter().enumerate() {
            self.ws();
            let v = self.number()? as f32;
            if !v.is_finite() {
                return None;
            }
            out[slot] = v;
            self.ws();
            if k + 1 < N {
                self.eat(b',')?;
            }
        }
        self.eat(b']')
    }

    /// `"pose"`'s 9 numbers.
    #[inline(never)]
    fn pose(&mut self, out: &mut [f32; NUM_POSE]) -> Option<()> {
        self.values(out)
    }
}

/// The fast path. `None` means "not recognised": the caller falls back to serde_json.
/// Handles array-valued `"blendshapes"` and `"pose"`; object-valued ones go to serde_json.
/// Not inlined into the driver's loop: its number loop keeps the registers to itself.
#[inline(never)]
pub(super) fn parse_line(line: &[u8], slots: &mut RowSlots<'_>, columns: Columns<'_>) -> Option<LineRow> {
    let mut c = Cur { s: line, i: 0 };
    c.ws();
    c.eat(b'{')?;
    let mut ts: Option<f64> = None;
    let mut have_values = false;
    let mut have_pose = false;
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
                    match columns {
                        None => c.values(slots.values)?,
                        Some(perm) => c.permuted_values(slots.values, perm)?,
                    }
                    have_values = true;
                }
                b"pose" => {
                    if have_pose {
                        return None;
                    }
                    c.pose(slots.pose)?;
                    have_pose = true;
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
    Some(LineRow {
        timestamp: ts?,
        has_pose: have_pose,
    })
}
