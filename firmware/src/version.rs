//! Payload versions `MAJOR.MINOR.PATCH`, parsed by exactly the rule of the station's
//! `manifest::SemanticVersion` (manifest-tool 2.6.2's): each component 0..=999 without leading
//! zeros, and not 0.0.0. A manifest or a `imprint.FactoryAppVersion` the station would refuse
//! must be refused here too, or the verdicts would differ.

/// A version; ordering compares major, then minor, then patch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version {
    /// Incompatible changes.
    pub major: u32,
    /// Compatible additions.
    pub minor: u32,
    /// Fixes.
    pub patch: u32,
}

/// The largest value of one component.
const COMPONENT_MAX: u32 = 999;

impl Version {
    /// The "unknown" version the report carries when none can be found.
    pub const UNKNOWN: Version = Version { major: 0, minor: 0, patch: 0 };

    /// Parses `text`; `None` for anything manifest-tool would not write.
    pub fn parse(text: &[u8]) -> Option<Version> {
        let mut components = [0u32; 3];
        let mut parts = text.split(|byte| *byte == b'.');
        for component in &mut components {
            let part = parts.next()?;
            let is_decimal = !part.is_empty()
                && part.len() <= 3
                && part.iter().all(u8::is_ascii_digit)
                && (part == b"0" || part[0] != b'0');
            if !is_decimal {
                return None;
            }
            *component = part.iter().fold(0u32, |value, digit| value * 10 + u32::from(digit - b'0'));
        }
        if parts.next().is_some() {
            return None;
        }
        let version = Version { major: components[0], minor: components[1], patch: components[2] };
        let in_range = components.iter().all(|component| *component <= COMPONENT_MAX);
        (in_range && version != Version::UNKNOWN).then_some(version)
    }
}
