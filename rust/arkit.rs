//! The 52 ARKit blendshape names, in ARKit / Live Link Face order.

/// Number of ARKit blendshapes.
pub const NUM_BLENDSHAPES: usize = 52;

/// ARKit blendshape names in canonical ARKit / Live Link Face order (`jawOpen` is index 17).
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
    "mouthLeft",
    "mouthRight",
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
        assert_eq!(index_of("MouthSmileLeft"), Some(23));
        assert_eq!(index_of("browInnerUp"), Some(43));
        assert_eq!(index_of("jawOpen "), None);
        assert_eq!(index_of(""), None);
        assert_eq!(index_of("nope"), None);
    }
}
