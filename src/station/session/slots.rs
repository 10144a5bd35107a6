//! The one slot rule: which fixture each slot of a line runs, from the `--probe` selectors,
//! the slot count (`--sim N`, the window's Slots field) and the profile's `[fixture] default`.
//!
//! 1. `--probe` selectors given: one slot each, in order; then `--sim N` simulated slots after
//!    them (none without `--sim`).
//! 2. No `--probe`: the profile's `[fixture] default` (else `sim`). A fixture that makes a fresh
//!    unit per slot (`sim`, `qemu`) gets N slots (N = the slot count, 1 when not given); one
//!    that names a single device (`gdb:...`, `probe-rs:...`, `fcc:...`, `sim,console=...`) gets one slot. A list
//!    of selectors gives one slot each, as the same `--probe` selectors would.
//!
//! A line has 1 to [`SLOTS_MAX`] slots.

use crate::device::factory::FixtureSelector;
use crate::profile::Profile;

use super::SessionError;

/// The most slots a line runs.
pub const SLOTS_MAX: usize = 64;

/// The slots as a front end chose them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SlotChoice {
    /// `--probe` selectors, one slot each.
    pub probes: Vec<String>,
    /// The slot count: `--sim N` (after the probes), else the number of slots of the
    /// profile's default fixture; `None` when the front end was given none.
    pub slot_count: Option<usize>,
}

/// Applies the slot rule (module documentation) for `profile`.
pub fn resolve_slots(choice: &SlotChoice, profile: &Profile) -> Result<Vec<FixtureSelector>, SessionError> {
    let mut selectors =
        choice.probes.iter().map(|text| FixtureSelector::parse(text)).collect::<Result<Vec<_>, _>>()?;
    if !selectors.is_empty() {
        selectors.extend(std::iter::repeat_n(FixtureSelector::Sim, choice.slot_count.unwrap_or(0)));
    } else {
        let count = choice.slot_count.unwrap_or(1);
        if count == 0 {
            return Err(SessionError::Plan { reason: "slots: expected at least 1, found 0".to_string() });
        }
        let parse = |text: &String| {
            FixtureSelector::parse(text).map_err(|error| SessionError::Plan {
                reason: format!("{}: fixture.default: {error}", profile.path.display()),
            })
        };
        selectors = match profile.default_fixtures.as_slice() {
            [] => vec![FixtureSelector::Sim; count],
            [one] => match parse(one)? {
                kind @ (FixtureSelector::Sim | FixtureSelector::Qemu) => vec![kind; count],
                kind @ (FixtureSelector::Gdb { .. }
                | FixtureSelector::SimWithConsole { .. }
                | FixtureSelector::ProbeRs { .. }
                | FixtureSelector::Fcc { .. }) => vec![kind],
            },
            list => list.iter().map(parse).collect::<Result<Vec<_>, _>>()?,
        };
    }
    if selectors.len() > SLOTS_MAX {
        return Err(SessionError::Plan {
            reason: format!("slots: at most {SLOTS_MAX}, found {}", selectors.len()),
        });
    }
    Ok(selectors)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(default_fixtures: &[&str], probes: &[&str], slot_count: Option<usize>, expected: Option<&str>) {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("profiles/demo.toml");
        let mut profile = Profile::load(&path).expect("the demo profile loads");
        profile.default_fixtures = default_fixtures.iter().map(|selector| selector.to_string()).collect();
        let choice =
            SlotChoice { probes: probes.iter().map(|probe| probe.to_string()).collect(), slot_count };
        let found = resolve_slots(&choice, &profile).ok().map(|selectors| {
            let names: Vec<String> = selectors
                .iter()
                .map(|selector| match selector {
                    FixtureSelector::Sim => "sim".to_string(),
                    other @ FixtureSelector::SimWithConsole { .. } => other.to_string(),
                    FixtureSelector::Qemu => "qemu".to_string(),
                    FixtureSelector::Gdb { address } => format!("gdb:{address}"),
                    FixtureSelector::ProbeRs { selector } => format!("probe-rs:{selector}"),
                    FixtureSelector::Fcc { endpoint } => format!("fcc:{endpoint}"),
                })
                .collect();
            names.join(" ")
        });
        assert_eq!(found.as_deref(), expected, "{default_fixtures:?} {probes:?} {slot_count:?}");
    }

    #[test]
    fn one_slot_rule() {
        check(&[], &[], None, Some("sim"));
        check(&[], &[], Some(3), Some("sim sim sim"));
        check(&[], &[], Some(0), None);
        check(&["qemu"], &[], None, Some("qemu"));
        check(&["qemu"], &[], Some(2), Some("qemu qemu"));
        check(&["gdb:127.0.0.1:3333"], &[], Some(4), Some("gdb:127.0.0.1:3333"));
        check(&["qemu"], &["gdb:127.0.0.1:3333"], None, Some("gdb:127.0.0.1:3333"));
        check(&[], &["qemu"], Some(2), Some("qemu sim sim"));
        check(&[], &["qemu", "qemu"], None, Some("qemu qemu"));
        check(&[], &["carrier-pigeon"], None, None);
        check(&[], &[], Some(SLOTS_MAX + 1), None);
        check(&["fcc:127.0.0.1:7000"], &[], Some(3), Some("fcc:127.0.0.1:7000"));
        check(
            &["fcc:10.0.0.7:7000", "fcc:10.0.0.8:7000"],
            &[],
            None,
            Some("fcc:10.0.0.7:7000 fcc:10.0.0.8:7000"),
        );
        check(&["fcc:10.0.0.7:7000", "qemu"], &[], Some(3), Some("fcc:10.0.0.7:7000 qemu"));
        check(&["fcc:10.0.0.7:7000", "fcc:10.0.0.8:7000"], &["sim"], None, Some("sim"));
    }
}
