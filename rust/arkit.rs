//! The 52 ARKit blendshape names in Live Link Face's order, Live Link's 9 pose columns, and
//! the positional orders other tools write ("column orders") mapped onto Live Link's.

use std::fmt;

/// Number of ARKit blendshapes.
pub const NUM_BLENDSHAPES: usize = 52;

/// ARKit blendshape names in Live Link Face's CSV column order (`jawOpen` is index 17; note
/// `jawRight` before `jawLeft` and `mouthRight` before `mouthLeft`). Every parsed track is in
/// this order.
pub const ARKIT_BLENDSHAPES: [&str; NUM_BLENDSHAPES] = [
    "eyeBlinkLeft",
    "eyeLookDownLeft",
    "eyeLookInLeft",
    "eyeLookOutLeft",
    "eyeLookUpLeft",
    "eyeSquintLeft",
    "eyeWideLeft",
    "eyeBlinkRight",
    "eyeLookDownRight",
    "eyeLookInRight",
    "eyeLookOutRight",
    "eyeLookUpRight",
    "eyeSquintRight",
    "eyeWideRight",
    "jawForward",
    "jawRight",
    "jawLeft",
    "jawOpen",
    "mouthClose",
    "mouthFunnel",
    "mouthPucker",
    "mouthRight",
    "mouthLeft",
    "mouthSmileLeft",
    "mouthSmileRight",
    "mouthFrownLeft",
    "mouthFrownRight",
    "mouthDimpleLeft",
    "mouthDimpleRight",
    "mouthStretchLeft",
    "mouthStretchRight",
    "mouthRollLower",
    "mouthRollUpper",
    "mouthShrugLower",
    "mouthShrugUpper",
    "mouthPressLeft",
    "mouthPressRight",
    "mouthLowerDownLeft",
    "mouthLowerDownRight",
    "mouthUpperUpLeft",
    "mouthUpperUpRight",
    "browDownLeft",
    "browDownRight",
    "browInnerUp",
    "browOuterUpLeft",
    "browOuterUpRight",
    "cheekPuff",
    "cheekSquintLeft",
    "cheekSquintRight",
    "noseSneerLeft",
    "noseSneerRight",
    "tongueOut",
];

/// KoeMorph's positional order: Live Link's, but with the left/right pairs of the jaw and the
/// mouth alphabetical (`jawLeft`, `jawRight` at 15, 16 and `mouthLeft`, `mouthRight` at 21, 22).
pub const KOEMORPH_BLENDSHAPES: [&str; NUM_BLENDSHAPES] = {
    let mut names = ARKIT_BLENDSHAPES;
    names.swap(15, 16);
    names.swap(21, 22);
    names
};

/// Number of head and eye pose values per frame.
pub const NUM_POSE: usize = 9;

/// Live Link Face's pose columns (after the 52 blendshapes), in its order: head, left eye,
/// right eye, each yaw / pitch / roll.
pub const POSE_NAMES: [&str; NUM_POSE] = [
    "headYaw",
    "headPitch",
    "headRoll",
    "leftEyeYaw",
    "leftEyePitch",
    "leftEyeRoll",
    "rightEyeYaw",
    "rightEyePitch",
    "rightEyeRoll",
];

/// Index of a pose name, case-insensitively (Live Link writes `HeadYaw`).
pub fn pose_index_of(name: &str) -> Option<usize> {
    POSE_NAMES.iter().position(|cand| cand.eq_ignore_ascii_case(name))
}

/// The names of the column order presets `BlendshapeOrder::named` accepts.
pub const ORDER_PRESETS: [&str; 2] = ["live_link", "koemorph"];

/// How the 52 positional values of a row map onto `ARKIT_BLENDSHAPES`: file column `j` is
/// blendshape `permutation()[j]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlendshapeOrder {
    permutation: [usize; NUM_BLENDSHAPES],
}

impl Default for BlendshapeOrder {
    fn default() -> Self {
        Self::live_link()
    }
}

impl BlendshapeOrder {
    /// Live Link Face's order: the identity.
    pub fn live_link() -> Self {
        BlendshapeOrder {
            permutation: std::array::from_fn(|j| j),
        }
    }

    /// KoeMorph's order (`KOEMORPH_BLENDSHAPES`).
    pub fn koemorph() -> Self {
        Self::from_names(&KOEMORPH_BLENDSHAPES).expect("KOEMORPH_BLENDSHAPES is a permutation")
    }

    /// A preset by name: "live_link" or "koemorph".
    pub fn named(name: &str) -> Result<Self, OrderError> {
        match name {
            "live_link" => Ok(Self::live_link()),
            "koemorph" => Ok(Self::koemorph()),
            _ => Err(OrderError::UnknownPreset(name.to_string())),
        }
    }

    /// The order of a file's columns given as names (case-insensitive), each of the 52
    /// exactly once.
    pub fn from_names<S: AsRef<str>>(names: &[S]) -> Result<Self, OrderError> {
        let mut permutation = [0usize; NUM_BLENDSHAPES];
        let mut seen = [false; NUM_BLENDSHAPES];
        let mut repeated = Vec::new();
        let mut unknown = Vec::new();
        for (column, name) in names.iter().map(AsRef::as_ref).enumerate() {
            match index_of(name) {
                Some(i) if seen[i] => {
                    if !repeated.contains(&ARKIT_BLENDSHAPES[i]) {
                        repeated.push(ARKIT_BLENDSHAPES[i]);
                    }
                }
                Some(i) => {
                    seen[i] = true;
                    if column < NUM_BLENDSHAPES {
                        permutation[column] = i;
                    }
                }
                None => unknown.push(name.to_string()),
            }
        }
        let missing: Vec<&'static str> = (0..NUM_BLENDSHAPES)
            .filter(|&i| !seen[i])
            .map(|i| ARKIT_BLENDSHAPES[i])
            .collect();
        if missing.is_empty() && repeated.is_empty() && unknown.is_empty() {
            // 52 distinct known names: exactly 52 columns.
            Ok(BlendshapeOrder { permutation })
        } else {
            Err(OrderError::NotAPermutation {
                columns: names.len(),
                missing,
                repeated,
                unknown,
            })
        }
    }

    /// File column `j` holds blendshape `permutation()[j]` of `ARKIT_BLENDSHAPES`.
    pub fn permutation(&self) -> &[usize; NUM_BLENDSHAPES] {
        &self.permutation
    }

    /// Whether columns are already in `ARKIT_BLENDSHAPES` order (the parser's fast case).
    pub fn is_identity(&self) -> bool {
        self.permutation.iter().enumerate().all(|(j, &i)| i == j)
    }
}

/// Why a column order could not be resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrderError {
    /// A name that is not one of `ORDER_PRESETS`.
    UnknownPreset(String),
    /// A list of names that is not the 52 ARKit names, each once.
    NotAPermutation {
        columns: usize,
        missing: Vec<&'static str>,
        repeated: Vec<&'static str>,
        unknown: Vec<String>,
    },
}

impl fmt::Display for OrderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OrderError::UnknownPreset(name) => write!(
                f,
                "unknown blendshape order {name:?}: expected \"live_link\", \"koemorph\" or a list of the {NUM_BLENDSHAPES} ARKit names"
            ),
            OrderError::NotAPermutation {
                columns,
                missing,
                repeated,
                unknown,
            } => {
                write!(
                    f,
                    "a blendshape order must name each of the {NUM_BLENDSHAPES} ARKit blendshapes exactly once; the list has {columns}"
                )?;
                if !missing.is_empty() {
                    write!(f, "; missing: {}", missing.join(", "))?;
                }
                if !repeated.is_empty() {
                    write!(f, "; repeated: {}", repeated.join(", "))?;
                }
                if !unknown.is_empty() {
                    let quoted: Vec<String> = unknown.iter().map(|n| format!("{n:?}")).collect();
                    write!(f, "; unknown: {}", quoted.join(", "))?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for OrderError {}

/// Index of an ARKit blendshape name, case-insensitively (so Live Link's `"JawOpen"` works).
///
/// No allocation: compares with `eq_ignore_ascii_case`, after a cheap length filter.
pub fn index_of(name: &str) -> Option<usize> {
    let n = name.len();
    // Names are 7..=19 bytes long; anything else cannot match.
    if !(7..=19).contains(&n) {
        return None;
    }
    ARKIT_BLENDSHAPES
        .iter()
        .position(|cand| cand.len() == n && cand.as_bytes().eq_ignore_ascii_case(name.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_count_is_52() {
        assert_eq!(ARKIT_BLENDSHAPES.len(), NUM_BLENDSHAPES);
        for (i, a) in ARKIT_BLENDSHAPES.iter().enumerate() {
            assert_eq!(index_of(a), Some(i), "{a}");
            for b in &ARKIT_BLENDSHAPES[i + 1..] {
                assert!(!a.eq_ignore_ascii_case(b));
            }
        }
        let min = ARKIT_BLENDSHAPES.iter().map(|s| s.len()).min().unwrap();
        let max = ARKIT_BLENDSHAPES.iter().map(|s| s.len()).max().unwrap();
        assert_eq!((min, max), (7, 19));
    }

    #[test]
    fn known_indices_and_case_insensitivity() {
        assert_eq!(index_of("jawOpen"), Some(17));
        assert_eq!(index_of("JawOpen"), Some(17));
        assert_eq!(index_of("JAWOPEN"), Some(17));
        assert_eq!(index_of("eyeBlinkLeft"), Some(0));
        assert_eq!(index_of("EyeBlinkLeft"), Some(0));
        assert_eq!(index_of("tongueOut"), Some(51));
        assert_eq!(index_of("mouthRight"), Some(21));
        assert_eq!(index_of("mouthLeft"), Some(22));
        assert_eq!(index_of("jawRight"), Some(15));
        assert_eq!(index_of("jawLeft"), Some(16));
        assert_eq!(index_of("MouthSmileLeft"), Some(23));
        assert_eq!(index_of("browInnerUp"), Some(43));
        assert_eq!(index_of("jawOpen "), None);
        assert_eq!(index_of(""), None);
        assert_eq!(index_of("nope"), None);
    }

    /// Live Link Face's CSV header (after Timecode and BlendShapeCount), written out here
    /// independently of ARKIT_BLENDSHAPES.
    const LIVE_LINK_HEADER: &str = "EyeBlinkLeft,EyeLookDownLeft,EyeLookInLeft,EyeLookOutLeft,EyeLookUpLeft,\
        EyeSquintLeft,EyeWideLeft,EyeBlinkRight,EyeLookDownRight,EyeLookInRight,EyeLookOutRight,EyeLookUpRight,\
        EyeSquintRight,EyeWideRight,JawForward,JawRight,JawLeft,JawOpen,MouthClose,MouthFunnel,MouthPucker,\
        MouthRight,MouthLeft,MouthSmileLeft,MouthSmileRight,MouthFrownLeft,MouthFrownRight,MouthDimpleLeft,\
        MouthDimpleRight,MouthStretchLeft,MouthStretchRight,MouthRollLower,MouthRollUpper,MouthShrugLower,\
        MouthShrugUpper,MouthPressLeft,MouthPressRight,MouthLowerDownLeft,MouthLowerDownRight,MouthUpperUpLeft,\
        MouthUpperUpRight,BrowDownLeft,BrowDownRight,BrowInnerUp,BrowOuterUpLeft,BrowOuterUpRight,CheekPuff,\
        CheekSquintLeft,CheekSquintRight,NoseSneerLeft,NoseSneerRight,TongueOut,HeadYaw,HeadPitch,HeadRoll,\
        LeftEyeYaw,LeftEyePitch,LeftEyeRoll,RightEyeYaw,RightEyePitch,RightEyeRoll";

    #[test]
    fn order_is_live_link_faces() {
        let header: Vec<&str> = LIVE_LINK_HEADER.split(',').collect();
        assert_eq!(header.len(), NUM_BLENDSHAPES + NUM_POSE);
        for (j, name) in header[..NUM_BLENDSHAPES].iter().enumerate() {
            // Live Link capitalises the first letter; otherwise the names are ARKit's.
            let mut upper = ARKIT_BLENDSHAPES[j].to_string();
            upper[..1].make_ascii_uppercase();
            assert_eq!(*name, upper, "column {j}");
        }
        for (k, name) in header[NUM_BLENDSHAPES..].iter().enumerate() {
            assert_eq!(pose_index_of(name), Some(k), "{name}");
            assert!(name.eq_ignore_ascii_case(POSE_NAMES[k]));
        }
        assert_eq!(pose_index_of("headyaw"), Some(0));
        assert_eq!(pose_index_of("rightEyeRoll"), Some(8));
        assert_eq!(pose_index_of("jawOpen"), None);
        // No pose name is also a blendshape name.
        assert!(POSE_NAMES.iter().all(|p| index_of(p).is_none()));
    }

    #[test]
    fn koemorph_order_swaps_the_jaw_and_mouth_pairs() {
        for (j, name) in KOEMORPH_BLENDSHAPES.iter().enumerate() {
            let expected = match j {
                15 => "jawLeft",
                16 => "jawRight",
                21 => "mouthLeft",
                22 => "mouthRight",
                _ => ARKIT_BLENDSHAPES[j],
            };
            assert_eq!(*name, expected, "position {j}");
        }
        let perm = *BlendshapeOrder::koemorph().permutation();
        let mut expected: [usize; NUM_BLENDSHAPES] = std::array::from_fn(|j| j);
        expected.swap(15, 16);
        expected.swap(21, 22);
        assert_eq!(perm, expected);
        assert!(!BlendshapeOrder::koemorph().is_identity());
        assert!(BlendshapeOrder::live_link().is_identity());
        assert_eq!(BlendshapeOrder::named("live_link"), Ok(BlendshapeOrder::default()));
        assert_eq!(BlendshapeOrder::named("koemorph"), Ok(BlendshapeOrder::koemorph()));
    }

    #[test]
    fn custom_orders_resolve_case_insensitively() {
        let reversed: Vec<String> = ARKIT_BLENDSHAPES.iter().rev().map(|n| n.to_ascii_uppercase()).collect();
        let order = BlendshapeOrder::from_names(&reversed).unwrap();
        let expected: [usize; NUM_BLENDSHAPES] = std::array::from_fn(|j| 51 - j);
        assert_eq!(order.permutation(), &expected);
        assert_eq!(
            BlendshapeOrder::from_names(&ARKIT_BLENDSHAPES).unwrap(),
            BlendshapeOrder::live_link()
        );
    }

    #[test]
    fn order_errors_name_what_is_wrong() {
        let e = BlendshapeOrder::named("foo").unwrap_err();
        assert_eq!(e, OrderError::UnknownPreset("foo".into()));
        let text = e.to_string();
        assert!(
            text.contains("\"live_link\"") && text.contains("\"koemorph\"") && text.contains("\"foo\""),
            "{text}"
        );

        // jawOpen replaced by a second eyeBlinkLeft and an unknown name appended.
        let mut names: Vec<&str> = ARKIT_BLENDSHAPES.to_vec();
        names[17] = "EyeBlinkLeft";
        names.push("smile");
        let e = BlendshapeOrder::from_names(&names).unwrap_err();
        assert_eq!(
            e,
            OrderError::NotAPermutation {
                columns: 53,
                missing: vec!["jawOpen"],
                repeated: vec!["eyeBlinkLeft"],
                unknown: vec!["smile".to_string()],
            }
        );
        assert_eq!(
            e.to_string(),
            "a blendshape order must name each of the 52 ARKit blendshapes exactly once; the list has 53; \
             missing: jawOpen; repeated: eyeBlinkLeft; unknown: \"smile\""
        );
        // Too short.
        let e = BlendshapeOrder::from_names(&ARKIT_BLENDSHAPES[..50]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "a blendshape order must name each of the 52 ARKit blendshapes exactly once; the list has 50; \
             missing: noseSneerRight, tongueOut"
        );
    }
}
