//! `[scanner]` into [`ScannerSettings`]: every pattern compiled (a bad one is a problem naming
//! `scanner.FIELD`), the defaults when the section is absent, and a `scanned` profile's section
//! required to say what its serial labels look like.

use super::super::raw::RawProfile;
use super::super::scanner::{DEFAULT_SLOT_PATTERN, ScanPattern, ScannerSettings, SlotPattern};
use super::Checker;

pub(super) fn check_scanner(raw: &RawProfile, checker: &mut Checker) -> ScannerSettings {
    let serials_are_scanned = raw.serial.scheme == "scanned";
    let Some(section) = &raw.scanner else {
        return ScannerSettings::defaults(serials_are_scanned);
    };
    let mut pattern = |field: &str, source: &Option<String>| {
        source.as_deref().and_then(|source| match ScanPattern::new(source) {
            Ok(pattern) => Some(pattern),
            Err(reason) => {
                checker.problem(&format!("scanner.{field}"), reason);
                None
            }
        })
    };
    let settings = ScannerSettings {
        serial: pattern("serial", &section.serial),
        work_order: pattern("work_order", &section.work_order),
        operator: pattern("operator", &section.operator),
        slot: None,
    };
    let slot = match SlotPattern::new(section.slot.as_deref().unwrap_or(DEFAULT_SLOT_PATTERN)) {
        Ok(slot) => Some(slot),
        Err(reason) => {
            checker.problem("scanner.slot", reason);
            None
        }
    };
    if serials_are_scanned && section.serial.is_none() {
        checker.problem(
            "scanner.serial",
            "expected the pattern of the units' serial labels (serial.scheme is \"scanned\")",
        );
    }
    ScannerSettings { slot, ..settings }
}
