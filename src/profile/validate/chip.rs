//! The profile's `[chip]` and `[lock]` settings checked into [`crate::chip`] types: the
//! identification register, declared register recipes, the lock recipe. The target description
//! file is only read here; the probe-rs backend judges it when a probe-rs slot opens.

use std::path::Path;

use super::super::ChipTargetDescription;
use super::super::raw::{RawFirmwareSections, RawProfile, RawRegisterStep};
use super::{Checker, resolve};
use crate::chip::{ChipIdCheck, LockRecipe, LockStateCheck, RegisterStep, UnlockMethod};

pub(super) fn check_target_description(
    raw: &RawFirmwareSections,
    base: &Path,
    checker: &mut Checker,
) -> Option<ChipTargetDescription> {
    let relative = raw.chip.target_description.as_ref()?;
    let path = resolve(base, relative);
    let yaml = match std::fs::read_to_string(&path) {
        Ok(yaml) => yaml,
        Err(error) => {
            checker.problem_in(
                &path,
                "chip.target_description",
                format!("cannot read the target description: {error}"),
            );
            return None;
        }
    };
    // Whether the description parses and defines `chip.name` is the probe-rs backend's to judge,
    // when a probe-rs slot opens (`ProbeRsFixture::open`): the profile layer knows no backend.
    Some(ChipTargetDescription { path, yaml })
}

fn check_register_address(checker: &mut Checker, field: &str, address: u64) -> bool {
    if !address.is_multiple_of(4) || address > u64::from(u32::MAX) {
        checker
            .problem(field, format!("expected a 4-byte aligned 32-bit register address, found {address:#x}"));
        return false;
    }
    true
}

fn check_masked_value(checker: &mut Checker, field: &str, mask: u32, value: u32) -> bool {
    if value & !mask != 0 {
        checker.problem(field, format!("value {value:#x} has bits outside the mask {mask:#x}"));
        return false;
    }
    true
}

pub(super) fn check_id_register(raw: &RawFirmwareSections, checker: &mut Checker) -> Option<ChipIdCheck> {
    let id = raw.chip.id_register.as_ref()?;
    let mask = id.mask.unwrap_or(u32::MAX);
    let address_ok = check_register_address(checker, "chip.id_register.address", id.address);
    let value_ok = check_masked_value(checker, "chip.id_register.value", mask, id.value);
    (address_ok && value_ok).then_some(ChipIdCheck { address: id.address, mask, value: id.value })
}

/// The longest wait or delay a declared recipe step may ask for.
const MAX_REGISTER_STEP_TIMEOUT_MS: u64 = 120_000;

fn check_register_steps(
    checker: &mut Checker,
    field: &str,
    raw_steps: &[RawRegisterStep],
) -> Option<Vec<RegisterStep>> {
    let problems_before = checker.problems.len();
    let mut steps = Vec::new();
    if raw_steps.is_empty() {
        checker.problem(field, "expected at least one step");
    }
    for (index, raw) in raw_steps.iter().enumerate() {
        let here = format!("{field}[{index}]");
        let op = raw.op.as_deref().unwrap_or("write");
        let allowed: &[&str] = match op {
            "write" => &["address", "value", "link_may_drop"],
            "modify" => &["address", "mask", "value", "link_may_drop"],
            "wait" => &["address", "mask", "value", "timeout_ms"],
            "reset" => &[],
            "delay" => &["duration_ms"],
            other => {
                checker.problem(
                    &format!("{here}.op"),
                    format!(
                        "expected \"write\", \"modify\", \"wait\", \"reset\" or \"delay\", found \"{other}\""
                    ),
                );
                continue;
            }
        };
        let given = [
            ("address", raw.address.is_some()),
            ("value", raw.value.is_some()),
            ("mask", raw.mask.is_some()),
            ("timeout_ms", raw.timeout_ms.is_some()),
            ("duration_ms", raw.duration_ms.is_some()),
            ("link_may_drop", raw.link_may_drop.is_some()),
        ];
        for (name, present) in given {
            if present && !allowed.contains(&name) {
                checker.problem(&format!("{here}.{name}"), format!("not used by op = \"{op}\""));
            }
        }
        let mut required = |name: &str, present: bool| {
            if !present
                && allowed.contains(&name)
                && name != "link_may_drop"
                && !(name == "mask" && op == "wait")
            {
                checker.problem(&format!("{here}.{name}"), format!("required for op = \"{op}\""));
            }
        };
        required("address", raw.address.is_some());
        required("value", raw.value.is_some());
        required("mask", raw.mask.is_some());
        required("timeout_ms", raw.timeout_ms.is_some());
        required("duration_ms", raw.duration_ms.is_some());
        if let Some(address) = raw.address {
            check_register_address(checker, &format!("{here}.address"), address);
        }
        let mask = raw.mask.unwrap_or(u32::MAX);
        if let Some(value) = raw.value
            && matches!(op, "modify" | "wait")
        {
            check_masked_value(checker, &format!("{here}.value"), mask, value);
        }
        for (name, bound) in [("timeout_ms", raw.timeout_ms), ("duration_ms", raw.duration_ms)] {
            if let Some(bound) = bound
                && !(1..=MAX_REGISTER_STEP_TIMEOUT_MS).contains(&bound)
            {
                checker.problem(
                    &format!("{here}.{name}"),
                    format!("expected 1 to {MAX_REGISTER_STEP_TIMEOUT_MS} ms, found {bound}"),
                );
            }
        }
        let (address, value) = (raw.address.unwrap_or(0), raw.value.unwrap_or(0));
        let link_may_drop = raw.link_may_drop.unwrap_or(false);
        steps.push(match op {
            "write" => RegisterStep::Write { address, value, link_may_drop },
            "modify" => RegisterStep::Modify { address, mask, value, link_may_drop },
            "wait" => RegisterStep::WaitFor { address, mask, value, timeout_ms: raw.timeout_ms.unwrap_or(1) },
            "reset" => RegisterStep::Reset,
            _ => RegisterStep::Delay { duration_ms: raw.duration_ms.unwrap_or(0) },
        });
    }
    (checker.problems.len() == problems_before).then_some(steps)
}

/// `chip_name` is `None` in an FCC-only profile (no `[chip]`: no built-in recipe applies).
pub(super) fn check_lock_recipe(
    raw: &RawProfile,
    chip_name: Option<&str>,
    checker: &mut Checker,
) -> Option<LockRecipe> {
    let lock = &raw.lock;
    match (&lock.recipe, &lock.writes) {
        (Some(_), Some(_)) => {
            checker.problem("lock", "give either recipe or [[lock.writes]], not both");
            None
        }
        (Some(name), None) => {
            if lock.unlocked_when.is_some() || lock.unlock_writes.is_some() {
                checker.problem(
                    "lock",
                    "unlocked_when and unlock_writes belong to a declared recipe ([[lock.writes]]), not to a built-in one",
                );
            }
            let recipe = LockRecipe::builtin(name);
            if recipe.is_none() {
                checker.problem(
                    "lock.recipe",
                    format!(
                        "expected one of {}, found \"{name}\"",
                        crate::chip::lock::BUILTIN_RECIPE_NAMES.join(", ")
                    ),
                );
            }
            recipe
        }
        (None, Some(writes)) => {
            let lock_steps = check_register_steps(checker, "lock.writes", writes);
            let lock_state = match &lock.unlocked_when {
                Some(unlocked_when) => {
                    let mask = unlocked_when.mask.unwrap_or(u32::MAX);
                    let address_ok =
                        check_register_address(checker, "lock.unlocked_when.address", unlocked_when.address);
                    let value_ok =
                        check_masked_value(checker, "lock.unlocked_when.value", mask, unlocked_when.value);
                    (address_ok && value_ok).then_some(LockStateCheck::Register {
                        address: unlocked_when.address,
                        mask,
                        unlocked_value: unlocked_when.value,
                    })
                }
                None => {
                    checker.problem(
                        "lock.unlocked_when",
                        "a declared recipe needs { address, mask, value }: the register state that means unlocked (the lock is proven by it)",
                    );
                    None
                }
            };
            let unlock = match &lock.unlock_writes {
                Some(unlock_writes) => check_register_steps(checker, "lock.unlock_writes", unlock_writes)
                    .map(UnlockMethod::Steps),
                None => Some(UnlockMethod::ProbeRsEraseAll),
            };
            Some(LockRecipe {
                name: "profile".to_string(),
                lock_steps: lock_steps?,
                lock_state: lock_state?,
                unlock: unlock?,
            })
        }
        (None, None) => {
            if lock.unlocked_when.is_some() || lock.unlock_writes.is_some() {
                checker.problem("lock", "unlocked_when and unlock_writes need [[lock.writes]]");
            }
            chip_name.and_then(LockRecipe::default_for_chip)
        }
    }
}
